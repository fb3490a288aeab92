//! A throw-away Kubernetes API server (etcd + kube-apiserver) on 127.0.0.1, following the
//! envtest convention: the binaries come from `KUBE_APISERVER_BIN` and `ETCD_BIN`.
//!
//! Both processes run under one small bash supervisor whose standard input is a pipe from the
//! test process. When the [`ApiServer`] is dropped, or the test process ends in any way (a
//! panic, `process::exit`, a signal), the pipe closes and the supervisor kills both servers
//! and removes their directory. A server that dies on its own makes the supervisor print the
//! tail of its log to the test's stderr.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::hash::{BuildHasher as _, Hasher as _};
use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use kube::config::{AuthInfo, Config};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::counting::RequestLog;
use super::wait_until;
use crate::tls::TestCa;

/// What a test prints when it skips for want of the binaries.
pub const SKIP_MESSAGE: &str = "skipping: no Kubernetes API server for this test; \
    set KUBE_APISERVER_BIN and ETCD_BIN (run `scripts/envtest install`, then \
    `eval \"$(scripts/envtest env)\"`)";

/// The user in `system:masters`.
pub const ADMIN: &str = "admin";

/// Users without any permission beyond what every authenticated user has; tests grant them
/// what they need with [`super::grant`].
pub const LIMITED_USERS: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];

/// The group the limited users are in.
pub const LIMITED_GROUP: &str = "keel-test-users";

/// The kube-apiserver flags that name no port, etcd address or file.
const APISERVER_FLAGS: [&str; 12] = [
    "--bind-address=127.0.0.1",
    "--advertise-address=127.0.0.1",
    "--insecure-port=0",
    "--anonymous-auth=false",
    "--authorization-mode=RBAC",
    "--service-account-issuer=https://kubernetes.default.svc",
    "--service-cluster-ip-range=10.0.0.0/24",
    "--disable-admission-plugins=ServiceAccount",
    "--allow-privileged=true",
    "--enable-priority-and-fairness=false",
    "--profiling=false",
    "--v=1",
];

const SUPERVISOR: &str = r#"
dir=$1
mapfile -t etcd_args <"$dir/etcd.args"
mapfile -t api_args <"$dir/apiserver.args"
exec 3<&0
"${etcd_args[@]}" >"$dir/etcd.log" 2>&1 </dev/null &
etcd=$!
"${api_args[@]}" >"$dir/apiserver.log" 2>&1 </dev/null &
api=$!
cat <&3 >/dev/null &
watch=$!
exec 3<&-
wait -n "$etcd" "$api" "$watch"
if kill -0 "$watch" 2>/dev/null; then
    echo "envtest supervisor: a server exited on its own; last lines of its logs:" >&2
    tail -n 25 "$dir/etcd.log" "$dir/apiserver.log" >&2
fi
exec 2>/dev/null
kill -9 "$api" "$etcd"
kill "$watch"
wait
rm -rf "$dir"
"#;

/// A running etcd + kube-apiserver pair.
pub struct ApiServer {
    url: String,
    ca_der: Vec<u8>,
    tokens: BTreeMap<String, String>,
    dir: PathBuf,
    supervisor: Mutex<Option<(Child, ChildStdin)>>,
    namespaces: AtomicU64,
    /// Per CRD resource, `(group_version, plural)`, whether [`install_crd`] has seen it
    /// served.
    served_crds: Mutex<BTreeMap<(String, String), Served>>,
}

/// Set by the first install of a CRD resource that succeeds; the installs after it wait for
/// that one.
type Served = Arc<tokio::sync::OnceCell<()>>;

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The tokens stay out of Debug output.
        f.debug_struct("ApiServer")
            .field("url", &self.url)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// The binaries, when the environment names both.
fn binaries() -> Option<(PathBuf, PathBuf)> {
    let apiserver = std::env::var_os("KUBE_APISERVER_BIN").filter(|v| !v.is_empty())?;
    let etcd = std::env::var_os("ETCD_BIN").filter(|v| !v.is_empty())?;
    Some((PathBuf::from(apiserver), PathBuf::from(etcd)))
}

fn random_hex() -> String {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    let mut ports = [0u16; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr().expect("local addr").port();
    }
    ports
}

fn write(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn args_file(path: &Path, program: &Path, args: &[String]) {
    let mut lines = vec![program.display().to_string()];
    lines.extend(args.iter().cloned());
    write(path, &(lines.join("\n") + "\n"));
}

static SHARED: tokio::sync::OnceCell<Option<ApiServer>> = tokio::sync::OnceCell::const_new();

impl ApiServer {
    /// The server shared by all tests of this test binary, started on first use; `None` (after
    /// printing [`SKIP_MESSAGE`]) when the binaries are not configured. Tests should make a
    /// fresh namespace each with [`ApiServer::namespace`].
    pub async fn shared() -> Option<&'static ApiServer> {
        let server = SHARED
            .get_or_init(|| async {
                binaries()?;
                Some(ApiServer::start_running().await)
            })
            .await
            .as_ref();
        if server.is_none() {
            eprintln!("{SKIP_MESSAGE}");
        }
        server
    }

    /// The shared server, a fresh namespace named after `prefix` and an admin client: what
    /// most tests begin with. `None` as for [`ApiServer::shared`].
    pub async fn shared_namespace(prefix: &str) -> Option<(&'static ApiServer, String, Client)> {
        let server = ApiServer::shared().await?;
        let namespace = server.namespace(prefix).await;
        Some((server, namespace, server.admin_client()))
    }

    /// A server of the test's own, stopped on drop; `None` (after printing
    /// [`SKIP_MESSAGE`]) when the binaries are not configured.
    pub async fn start() -> Option<ApiServer> {
        if binaries().is_none() {
            eprintln!("{SKIP_MESSAGE}");
            return None;
        }
        Some(ApiServer::start_running().await)
    }

    async fn start_running() -> ApiServer {
        let mut last_error = String::new();
        // A free port can be taken between choosing it and the server binding it; try again
        // with new ports then.
        for _attempt in 0..3 {
            match ApiServer::try_start().await {
                Ok(server) => return server,
                Err(error) => last_error = error,
            }
        }
        panic!("could not start the Kubernetes API server: {last_error}");
    }

    async fn try_start() -> Result<ApiServer, String> {
        let (apiserver_bin, etcd_bin) = binaries().expect("binaries are configured");
        let dir = std::env::temp_dir().join(format!("keel-envtest-{}", random_hex()));
        std::fs::create_dir_all(dir.join("etcd")).map_err(|e| format!("temp dir: {e}"))?;
        std::fs::create_dir_all(dir.join("certs")).map_err(|e| format!("temp dir: {e}"))?;

        let ca = TestCa::generate("keel-k8s test CA");
        let serving = ca.serving_leaf("kube-apiserver");
        let sa_key = rcgen::KeyPair::generate().expect("generate the service-account key");
        write(&dir.join("ca.crt"), &ca.pem());
        write(&dir.join("serving.crt"), &serving.cert.pem());
        write(&dir.join("serving.key"), &serving.key.serialize_pem());
        write(&dir.join("sa.key"), &sa_key.serialize_pem());
        write(&dir.join("sa.pub"), &sa_key.public_key_pem());

        let mut tokens = BTreeMap::new();
        let mut token_file = String::new();
        tokens.insert(ADMIN.to_owned(), format!("admin-{}", random_hex()));
        token_file.push_str(&format!(
            "{},{ADMIN},uid-{ADMIN},system:masters\n",
            tokens[ADMIN]
        ));
        for user in LIMITED_USERS {
            let token = format!("{user}-{}", random_hex());
            token_file.push_str(&format!("{token},{user},uid-{user},{LIMITED_GROUP}\n"));
            tokens.insert(user.to_owned(), token);
        }
        write(&dir.join("tokens.csv"), &token_file);

        let [etcd_client, etcd_peer, secure_port] = free_ports::<3>();
        let etcd_url = format!("http://127.0.0.1:{etcd_client}");
        let peer_url = format!("http://127.0.0.1:{etcd_peer}");
        let etcd_args = vec![
            "--name=keel-test".to_owned(),
            format!("--data-dir={}", dir.join("etcd").display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=keel-test={peer_url}"),
            "--log-level=warn".to_owned(),
        ];
        let mut api_args = vec![
            format!("--etcd-servers={etcd_url}"),
            format!("--secure-port={secure_port}"),
        ];
        // Flags naming a file or directory of `dir`, then the fixed ones.
        api_args.extend(
            [
                ("cert-dir", "certs"),
                ("tls-cert-file", "serving.crt"),
                ("tls-private-key-file", "serving.key"),
                ("token-auth-file", "tokens.csv"),
                ("service-account-key-file", "sa.pub"),
                ("service-account-signing-key-file", "sa.key"),
            ]
            .map(|(flag, name)| format!("--{flag}={}", dir.join(name).display())),
        );
        api_args.extend(APISERVER_FLAGS.map(str::to_owned));
        args_file(&dir.join("etcd.args"), &etcd_bin, &etcd_args);
        args_file(&dir.join("apiserver.args"), &apiserver_bin, &api_args);

        let mut child = Command::new("bash")
            .arg("-c")
            .arg(SUPERVISOR)
            .arg("envtest-supervisor")
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("spawn bash: {e}"))?;
        let stdin = child.stdin.take().expect("piped stdin");

        let server = ApiServer {
            url: format!("https://127.0.0.1:{secure_port}"),
            ca_der: ca.der().to_vec(),
            tokens,
            dir,
            supervisor: Mutex::new(Some((child, stdin))),
            namespaces: AtomicU64::new(0),
            served_crds: Mutex::new(BTreeMap::new()),
        };
        server.wait_ready(Duration::from_secs(120)).await?;
        Ok(server)
    }

    async fn wait_ready(&self, timeout: Duration) -> Result<(), String> {
        let started = Instant::now();
        let client = self.admin_client();
        loop {
            let exited = match self.supervisor.lock().expect("supervisor").as_mut() {
                Some((child, _)) => child.try_wait().ok().flatten(),
                None => None,
            };
            if let Some(status) = exited {
                return Err(format!(
                    "the servers exited ({status}) before becoming ready; see the log above"
                ));
            }
            let request = http::Request::get("/readyz")
                .body(Vec::new())
                .expect("readyz request");
            let last = match client.request_text(request).await {
                Ok(body) if body.trim() == "ok" => return Ok(()),
                Ok(body) => body,
                Err(error) => error.to_string(),
            };
            if started.elapsed() > timeout {
                return Err(format!("not ready after {}s: {last}", timeout.as_secs()));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The server's URL, `https://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The CA certificate clients must trust, DER.
    pub fn ca_der(&self) -> &[u8] {
        &self.ca_der
    }

    /// A client configuration for `user` (the admin or one of [`LIMITED_USERS`]).
    pub fn config_for(&self, user: &str) -> Config {
        let token = self
            .tokens
            .get(user)
            .unwrap_or_else(|| panic!("no test user {user:?}"));
        let mut config = Config::new(self.url.parse().expect("server URL"));
        config.root_cert = Some(vec![self.ca_der.clone()]);
        config.default_namespace = "default".to_owned();
        config.connect_timeout = Some(Duration::from_secs(10));
        config.auth_info =
            serde_json::from_value::<AuthInfo>(serde_json::json!({ "token": token }))
                .expect("auth info with a token");
        config
    }

    /// A client for `user`; must be called inside the test's runtime.
    pub fn client_as(&self, user: &str) -> Client {
        Client::try_from(self.config_for(user)).expect("client from config")
    }

    /// A client in `system:masters`.
    pub fn admin_client(&self) -> Client {
        self.client_as(ADMIN)
    }

    /// A client for `user` that records every request it makes into the returned log.
    pub fn counting_client_as(&self, user: &str) -> (Client, RequestLog) {
        let log = RequestLog::default();
        (self.intercepting_client_as(user, log.hook()), log)
    }

    /// A client for `user` that runs `hook` before each request it sends (the hook picks
    /// which requests to delay, and with what).
    pub fn intercepting_client_as(&self, user: &str, hook: super::Hook) -> Client {
        kube::client::ClientBuilder::try_from(self.config_for(user))
            .expect("client builder from config")
            .with_layer(&super::InterceptLayer::new(hook))
            .build()
    }

    /// An admin client that, before each PATCH of `path`, runs what `race` makes of the number
    /// of such PATCHes before it (nothing where `race` gives `None`); and that count, as it
    /// goes. For tests of what someone else's change between a read and a patch does.
    fn racing_client(
        &self,
        path: String,
        race: impl Fn(usize) -> Option<super::HookFuture> + Send + Sync + 'static,
    ) -> (Client, Arc<AtomicUsize>) {
        let patches = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&patches);
        let client = self.intercepting_client_as(
            ADMIN,
            Arc::new(move |request: &super::RecordedRequest| {
                if request.method != "PATCH" || request.path != path {
                    return None;
                }
                race(counted.fetch_add(1, Ordering::SeqCst))
            }),
        );
        (client, patches)
    }

    /// An admin client whose PATCHes of object `name` of `api` each race another writer's
    /// change: before the `n`th of them (from 0) goes out, `change(n)`, unless `None`, is
    /// patched into the object through `api`, and must succeed. The counter counts those
    /// PATCHes as they go.
    pub fn racing_object_client<K>(
        &self,
        api: &Api<K>,
        name: &str,
        change: impl Fn(usize) -> Option<Patch<Value>> + Send + Sync + 'static,
    ) -> (Client, Arc<AtomicUsize>)
    where
        K: kube::Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        let path = format!("{}/{name}", api.resource_url());
        let (api, name) = (api.clone(), name.to_owned());
        self.racing_client(path, move |n| {
            let patch = change(n)?;
            let (api, name) = (api.clone(), name.clone());
            Some(Box::pin(async move {
                api.patch(&name, &PatchParams::default(), &patch)
                    .await
                    .expect("the concurrent change");
            }))
        })
    }

    /// An admin client that records every request it makes into the returned log.
    pub fn counting_admin_client(&self) -> (Client, RequestLog) {
        self.counting_client_as(ADMIN)
    }

    /// Creates a fresh namespace `keel-<prefix>-<n>` and returns its name.
    pub async fn namespace(&self, prefix: &str) -> String {
        use k8s_openapi::api::core::v1::Namespace;
        let n = self.namespaces.fetch_add(1, Ordering::Relaxed);
        let prefix: String = prefix
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .take(40)
            .collect();
        let name = format!("keel-{}-{n}", prefix.trim_matches('-'));
        let api: kube::Api<Namespace> = kube::Api::all(self.admin_client());
        let namespace: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": { "name": name },
        }))
        .expect("namespace object");
        api.create(&kube::api::PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
        name
    }

    /// Whether the server serves `plural` in `group_version` (`batch/v1`, `v1`), by discovery.
    pub async fn serves(&self, group_version: &str, plural: &str) -> bool {
        let client = self.admin_client();
        let resources = if group_version.contains('/') {
            client.list_api_group_resources(group_version).await
        } else {
            client.list_core_api_resources(group_version).await
        };
        match resources {
            Ok(list) => list.resources.iter().any(|r| r.name == plural),
            Err(_) => false,
        }
    }

    /// Stops the servers now and waits for the supervisor (also done on drop).
    pub fn stop(&self) {
        let taken = self.supervisor.lock().map(|mut s| s.take()).unwrap_or(None);
        if let Some((mut child, mut stdin)) = taken {
            let _ = stdin.flush();
            drop(stdin);
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() > deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl ApiServer {
    /// A kubeconfig document for `user`, for programs the tests start (the CLI, the
    /// controller), which find it through `KUBECONFIG`.
    pub fn kubeconfig_for(&self, user: &str) -> String {
        use base64::Engine;
        let token = self
            .tokens
            .get(user)
            .unwrap_or_else(|| panic!("no test user {user:?}"));
        let body = base64::engine::general_purpose::STANDARD.encode(&self.ca_der);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
            .collect();
        let pem = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            lines.join("\n")
        );
        let ca = base64::engine::general_purpose::STANDARD.encode(pem);
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "envtest", "cluster": {
                "server": self.url, "certificate-authority-data": ca}}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "envtest", "context": {
                "cluster": "envtest", "user": user, "namespace": "default"}}],
            "current-context": "envtest",
        })
        .to_string()
    }
}

/// Installs the CRD `yaml` into `server` (one already there, e.g. from another test binary, is
/// left as it is) and waits until the server serves `plural` in `group_version`, once per
/// server and resource: later calls for the same resource return at once, and concurrent
/// ones for the same resource wait for the first, while those for other resources go ahead
/// in parallel. An install that panicked is tried again by the next call. Panics, naming the
/// resource, when the server refuses the CRD or does not serve it within 30 s.
pub async fn install_crd(server: &ApiServer, yaml: &str, group_version: &str, plural: &str) {
    server
        .served_crd(group_version, plural)
        .get_or_init(|| create_crd(server, yaml, group_version, plural))
        .await;
}

impl ApiServer {
    /// The cell [`install_crd`] sets once `plural` in `group_version` is served. The map lock
    /// is held only to find it, never across an install.
    fn served_crd(&self, group_version: &str, plural: &str) -> Served {
        let mut cells = self
            .served_crds
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let cell = cells.entry((group_version.to_owned(), plural.to_owned()));
        Arc::clone(cell.or_default())
    }
}

/// What [`install_crd`] does the first time for a resource: creates the CRD, accepting one
/// already there, and waits until it is served.
async fn create_crd(server: &ApiServer, yaml: &str, group_version: &str, plural: &str) {
    let client = server.admin_client();
    let request = http::Request::post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions")
        .header(http::header::CONTENT_TYPE, "application/yaml")
        .body(yaml.as_bytes().to_vec())
        .expect("a valid request");
    match client.request_text(request).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(e) => panic!("create the CRD of {plural} in {group_version}: {e}"),
    }
    wait_until(
        &format!("{plural} served in {group_version}"),
        (Duration::from_secs(30), Duration::from_millis(100)),
        async || {
            if server.serves(group_version, plural).await {
                Ok(())
            } else {
                Err("not in discovery yet")
            }
        },
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    const GROUP_VERSION: &str = "selftest.keel.sh/v1";

    /// A CRD of kind `kind` in [`GROUP_VERSION`]; without a scope, which the server refuses,
    /// when `scope` is `None`.
    fn crd(kind: &str, scope: Option<&str>) -> String {
        let plural = format!("{}s", kind.to_lowercase());
        let mut crd = serde_json::json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": { "name": format!("{plural}.selftest.keel.sh") },
            "spec": {
                "group": "selftest.keel.sh",
                "names": { "kind": kind, "plural": plural },
                "versions": [{
                    "name": "v1",
                    "served": true,
                    "storage": true,
                    "schema": { "openAPIV3Schema": { "type": "object" } },
                }],
            },
        });
        if let Some(scope) = scope {
            crd["spec"]["scope"] = serde_json::json!(scope);
        }
        // JSON is YAML.
        crd.to_string()
    }

    #[tokio::test]
    async fn an_install_waits_only_for_its_own_resource_and_a_failed_one_is_tried_again() {
        let Some(server) = ApiServer::shared().await else {
            return;
        };

        // An install of widgets that never ends holds no other resource up.
        let stuck = tokio::spawn(async move {
            server
                .served_crd(GROUP_VERSION, "widgets")
                .get_or_init(std::future::pending)
                .await;
        });
        tokio::task::yield_now().await;
        let gadgets = crd("Gadget", Some("Namespaced"));
        let other = install_crd(server, &gadgets, GROUP_VERSION, "gadgets");
        tokio::time::timeout(Duration::from_secs(40), other)
            .await
            .expect("gadgets installed while an install of widgets is under way");

        // Neither a cancelled install nor a refused one counts as done.
        stuck.abort();
        assert!(stuck.await.expect_err("aborted").is_cancelled());
        // On a runtime of its own, since `install_crd`'s future is not `Send` for every
        // lifetime, as `tokio::spawn` would want.
        let refused = tokio::task::spawn_blocking(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            let widgets = crd("Widget", None);
            runtime.block_on(install_crd(server, &widgets, GROUP_VERSION, "widgets"));
        });
        let panic = refused.await.expect_err("a CRD without a scope is refused");
        assert!(panic.is_panic(), "{panic}");
        assert!(!server.serves(GROUP_VERSION, "widgets").await);
        let widgets = crd("Widget", Some("Namespaced"));
        install_crd(server, &widgets, GROUP_VERSION, "widgets").await;
        assert!(server.serves(GROUP_VERSION, "widgets").await);
    }
}
