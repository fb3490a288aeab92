//! The credentials of a write-back: Argo CD's repository Secrets or the Secret the method
//! names, and the SSH host keys Argo CD trusts.

use k8s_openapi::api::core::v1::Secret;
use keel_git::GitAuth;
use kube::api::ListParams;
use kube::{Api, Client};

use super::GitProblem;
use crate::annotations::WRITE_BACK_METHOD;

/// Whether `url` is reached over SSH (`ssh://`, or `user@host:path`).
fn is_ssh(url: &str) -> bool {
    url.starts_with("ssh://")
        || url.starts_with("git+ssh://")
        || (url.contains('@') && !url.contains("://"))
}

/// The ConfigMap and key where Argo CD keeps the SSH host keys of repository servers.
pub const KNOWN_HOSTS_CONFIGMAP: (&str, &str) = ("argocd-ssh-known-hosts-cm", "ssh_known_hosts");

/// The Secret label Argo CD marks repository credentials with.
const SECRET_TYPE: &str = "argocd.argoproj.io/secret-type";

/// The credentials for `url` that `credentials` (what follows `git:` in the method) names:
/// empty or `repocreds`, Argo CD's repository Secrets in `argocd_namespace`
/// (`secret-type: repository` whose `url` is `url`, else the `repo-creds` whose `url` is
/// the longest prefix of it); `secret:<ns>/<name>`, that Secret. `Err` names the Secret and
/// what is wrong, never a credential.
pub(crate) async fn auth(
    client: &Client,
    argocd_namespace: &str,
    credentials: &str,
    url: &str,
) -> Result<GitAuth, GitProblem> {
    let value = if credentials.is_empty() {
        "git".to_owned()
    } else {
        format!("git:{credentials}")
    };
    let problem = |reason: String| GitProblem::new(WRITE_BACK_METHOD, value.clone(), reason);
    let secret = match credentials {
        "" | "repocreds" => {
            let api: Api<Secret> = Api::namespaced(client.clone(), argocd_namespace);
            let request = |e| {
                keel_k8s::error::from_kube(
                    e,
                    &keel_k8s::error::Request {
                        verb: "list",
                        resource: "secrets",
                        namespace: Some(argocd_namespace),
                        name: None,
                    },
                )
                .to_string()
            };
            let list = api
                .list(
                    &ListParams::default()
                        .labels(&format!("{SECRET_TYPE} in (repository,repo-creds)")),
                )
                .await
                .map_err(|e| problem(request(e)))?;
            let field = |s: &Secret, k: &str| -> Option<String> {
                s.data
                    .as_ref()
                    .and_then(|d| d.get(k))
                    .and_then(|v| String::from_utf8(v.0.clone()).ok())
            };
            let kind = |s: &Secret| {
                s.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(SECRET_TYPE))
                    .cloned()
                    .unwrap_or_default()
            };
            let exact = list.items.iter().find(|s| {
                kind(s) == "repository" && field(s, "url").is_some_and(|u| same_url(&u, url))
            });
            let prefix = || {
                list.items
                    .iter()
                    .filter(|s| kind(s) == "repo-creds")
                    .filter_map(|s| field(s, "url").map(|u| (u, s)))
                    .filter(|(u, _)| !u.trim().is_empty() && url.starts_with(u.trim()))
                    .max_by_key(|(u, _)| u.trim().len())
                    .map(|(_, s)| s)
            };
            match exact.or_else(prefix) {
                Some(s) => s.clone(),
                None if is_ssh(url) => return Err(no_ssh_key(url)),
                None => return Ok(GitAuth::None),
            }
        }
        other => {
            let Some(rest) = other.strip_prefix("secret:") else {
                return Err(problem(
                    "expected `git`, `git:repocreds` or `git:secret:<namespace>/<name>`".into(),
                ));
            };
            let Some((ns, name)) = rest
                .split_once('/')
                .filter(|(n, m)| !n.is_empty() && !m.is_empty() && !m.contains('/'))
            else {
                return Err(problem(format!(
                    "`{rest}` is not `<namespace>/<name>` of a Secret"
                )));
            };
            crate::credentials::get_secret(client, ns, name)
                .await
                .map_err(problem)?
        }
    };
    let shown = format!(
        "secret {}/{}",
        secret.metadata.namespace.as_deref().unwrap_or(""),
        secret.metadata.name.as_deref().unwrap_or("")
    );
    let data = secret.data.unwrap_or_default();
    let text = |k: &str| {
        data.get(k)
            .map(|v| {
                String::from_utf8(v.0.clone())
                    .map_err(|_| problem(format!("field `{k}` of {shown} is not UTF-8")))
            })
            .transpose()
    };
    if is_ssh(url) {
        let Some(key) = text("sshPrivateKey")? else {
            return Err(no_ssh_key(url));
        };
        let known_hosts = known_hosts(client, argocd_namespace)
            .await
            .map_err(problem)?;
        return Ok(GitAuth::SshKeyInMemory {
            username: "git".into(),
            private_key: key.into(),
            passphrase: None,
            known_hosts,
        });
    }
    if data.contains_key("sshPrivateKey") && !data.contains_key("password") {
        return Err(problem(format!(
            "{shown} holds an SSH key, and the repository {} is not an SSH URL",
            keel_core::redact_urls(url)
        )));
    }
    match (text("username")?, text("password")?) {
        (Some(username), Some(password)) if !password.is_empty() => Ok(GitAuth::UserPassword {
            username: if username.is_empty() {
                "git".into()
            } else {
                username
            },
            password: password.into(),
        }),
        _ => Err(problem(format!(
            "{shown} has no `username` and `password` (Argo CD's repository credential fields)"
        ))),
    }
}

fn no_ssh_key(url: &str) -> GitProblem {
    GitProblem::new(
        "spec.source.repoURL",
        keel_core::redact_urls(url),
        "an SSH repository needs a private key: Argo CD's repository credentials or the \
         Secret of git:secret:<ns>/<name> with `sshPrivateKey`",
    )
}

/// The SSH host keys Argo CD trusts (ConfigMap `argocd-ssh-known-hosts-cm`, key
/// `ssh_known_hosts`, in its namespace): an SSH server must show one of them before any key
/// is offered to it.
async fn known_hosts(
    client: &Client,
    namespace: &str,
) -> Result<keel_git::known_hosts::KnownHosts, String> {
    let (name, key) = KNOWN_HOSTS_CONFIGMAP;
    let api: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), namespace);
    let map = api.get(name).await.map_err(|e| {
        keel_k8s::error::from_kube(
            e,
            &keel_k8s::error::Request {
                verb: "get",
                resource: "configmaps",
                namespace: Some(namespace),
                name: Some(name),
            },
        )
        .to_string()
            + " (SSH needs the server's host key pinned there)"
    })?;
    let text = map.data.as_ref().and_then(|d| d.get(key)).ok_or_else(|| {
        format!(
            "ConfigMap {namespace}/{name} has no `{key}`: SSH needs the server's host key pinned"
        )
    })?;
    keel_git::known_hosts::KnownHosts::parse(text)
        .map_err(|e| format!("`{key}` of ConfigMap {namespace}/{name}: {e}"))
}

/// Whether two repository URLs name the same repository (a trailing `/` or `.git` aside).
pub(super) fn same_url(a: &str, b: &str) -> bool {
    let norm = |u: &str| {
        let u = u.trim().trim_end_matches('/');
        u.strip_suffix(".git").unwrap_or(u).to_ascii_lowercase()
    };
    norm(a) == norm(b)
}
