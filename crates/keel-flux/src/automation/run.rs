//! One run of an automation: from its spec and `GitRepository` to the pushed commit.

use std::collections::BTreeMap;
use std::sync::Arc;

use keel_core::target::{ApplyOutcome, UpdatePlan};
use keel_core::{ImageRef, PolicySpec, Target as _};
use keel_git::manifest::{MarkerPolicy, Part, Reference, ReferenceKind, RepoConfig};
use keel_git::{Checkout, GitAuth, GitTarget};
use kube::api::{Api, ListParams};
use kube::core::DynamicObject;
use serde_json::Value;
use tracing::info;

use super::spec::{CheckoutRef, PolicySelector, highest_tag_in_range, update_path};
use super::status::{Ready, Success, apply_failure, git_failure};
use super::template::{self, Change, TemplateData};
use super::{Automation, DEFAULT_MESSAGE, git_repository_resource, str_at};
use crate::reflector::objects::{LatestRef, Meta};
impl Automation {
    /// One run of one automation, up to the push.
    pub(super) async fn update(&self, meta: &Meta, spec: Option<&Value>) -> Result<Success, Ready> {
        let config = |message: String| Ready::no("InvalidSourceConfiguration", message);
        let kind = str_at(spec, &["sourceRef", "kind"]).unwrap_or("GitRepository");
        if kind != "GitRepository" {
            return Err(config(format!(
                "source kind '{kind}' not supported: spec.sourceRef.kind must be GitRepository"
            )));
        }
        let source_name = str_at(spec, &["sourceRef", "name"])
            .ok_or_else(|| config("spec.sourceRef.name is required".into()))?;
        let source_namespace = str_at(spec, &["sourceRef", "namespace"]).unwrap_or(&meta.namespace);
        if let Some(strategy) = str_at(spec, &["update", "strategy"])
            && strategy != "Setters"
        {
            return Err(config(format!(
                "update strategy '{strategy}' not supported: spec.update.strategy must be Setters"
            )));
        }
        let path =
            update_path(str_at(spec, &["update", "path"]).unwrap_or("./")).map_err(config)?;
        let author_email = str_at(spec, &["git", "commit", "author", "email"])
            .ok_or_else(|| config("spec.git.commit.author.email is required".into()))?;
        let author_name =
            str_at(spec, &["git", "commit", "author", "name"]).unwrap_or(author_email);
        // What keel-flux cannot do is refused rather than silently left out.
        for (path, what) in [
            ("/git/push/refspec", "push refspecs (spec.git.push.refspec)"),
            ("/git/push/options", "push options (spec.git.push.options)"),
        ] {
            if spec
                .and_then(|s| s.pointer(path))
                .is_some_and(|v| !v.is_null())
            {
                return Err(config(format!("{what} is not supported by keel-flux")));
            }
        }
        if let Some(kind) = str_at(spec, &["git", "commit", "signingKey", "type"])
            && kind != "gpg"
        {
            return Err(config(format!(
                "spec.git.commit.signingKey.type '{kind}' is not supported by keel-flux: only \
                 gpg (OpenPGP) keys sign commits"
            )));
        }
        let signing_secret = match spec.and_then(|s| s.pointer("/git/commit/signingKey")) {
            Some(key) if !key.is_null() => {
                Some(str_at(Some(key), &["secretRef", "name"]).ok_or_else(|| {
                    config("spec.git.commit.signingKey.secretRef.name is required".into())
                })?)
            }
            _ => None,
        };
        let selector = PolicySelector::read(spec.and_then(|s| s.get("policySelector")))
            .map_err(|e| Ready::no("InvalidPolicySelector", e))?;

        // The GitRepository and its credentials.
        let repositories: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            source_namespace,
            &git_repository_resource(),
        );
        let source_key = format!("{source_namespace}/{source_name}");
        let repository = match repositories.get_opt(source_name).await {
            Ok(Some(repository)) => repository,
            Ok(None) => {
                return Err(Ready::no(
                    "GitRepositoryNotFound",
                    format!("referenced GitRepository '{source_key}' does not exist"),
                ));
            }
            Err(error) => {
                return Err(Ready::no(
                    "GitRepositoryNotFound",
                    format!("failed to get GitRepository '{source_key}': {error}"),
                ));
            }
        };
        let repository_spec = repository.data.get("spec");
        let url = str_at(repository_spec, &["url"])
            .ok_or_else(|| config(format!("GitRepository '{source_key}' has no spec.url")))?;
        let auth = match str_at(repository_spec, &["secretRef", "name"]) {
            None => GitAuth::None,
            Some(secret) => self.auth(source_namespace, secret, url).await?,
        };
        // The automation's checkout reference replaces the GitRepository's as a whole.
        let (reference, field) = match spec.and_then(|s| s.pointer("/git/checkout/ref")) {
            Some(reference) if !reference.is_null() => (Some(reference), "spec.git.checkout.ref"),
            _ => (
                repository_spec.and_then(|s| s.get("ref")),
                "the GitRepository's spec.ref",
            ),
        };
        let checkout = CheckoutRef::read(reference);
        let push = match (str_at(spec, &["git", "push", "branch"]), &checkout) {
            (Some(push), _) => push.to_owned(),
            (None, CheckoutRef::Branch(branch)) => branch.clone(),
            (None, other) => {
                return Err(config(format!(
                    "spec.git.push.branch is required: {field} checks out {other}, not a \
                     branch, and commits are pushed to a branch"
                )));
            }
        };

        // The ready policies of the automation's namespace.
        let observed = self.ready_policies(&meta.namespace, &selector).await?;
        let mut repo_config = RepoConfig::default();
        for (name, latest) in &observed {
            // A policy only so that keel-git reports the marker, with the repository a
            // tag-only marker belongs to; the plans below are the policies' choices.
            repo_config = repo_config.with_policy(
                format!("{}:{name}", meta.namespace),
                MarkerPolicy::new(PolicySpec::Never).with_image(latest.name.clone()),
            );
        }

        let signer = match signing_secret {
            Some(name) => Some(self.signer(&meta.namespace, name).await?),
            None => None,
        };
        let mut builder = GitTarget::builder(url)
            .with_push_branch(push.clone())
            .with_author(author_name, author_email)
            .with_auth(auth)
            .with_config(repo_config)
            .with_max_push_attempts(3)
            .with_all_or_nothing(true);
        if let Some(path) = &path {
            builder = builder.with_paths([path.clone()]);
        }
        if let Some(signer) = signer {
            builder = builder.with_commit_signer(Arc::new(signer));
        }
        if let Some(dir) = &self.workdir {
            builder = builder.with_workdir(dir.join(&meta.namespace).join(&meta.name));
        }
        if let Some(timeout) = self.server_timeout {
            builder = builder.with_server_timeout(timeout);
        }
        let checkout = match checkout {
            CheckoutRef::SemVer(range) => {
                let tags = builder
                    .clone()
                    .build()
                    .remote_tags()
                    .await
                    .map_err(|e| git_failure("failed to list the tags", &e))?;
                let tag = highest_tag_in_range(&range, &tags)
                    .map_err(|e| config(format!("{field}.semver '{range}': {e}")))?
                    .ok_or_else(|| {
                        Ready::no(
                            "GitOperationFailed",
                            format!("no tag of '{source_key}' is in the semver range '{range}'"),
                        )
                    })?;
                Checkout::Tag(tag)
            }
            CheckoutRef::Branch(branch) => Checkout::Branch(branch),
            CheckoutRef::Tag(tag) => Checkout::Tag(tag),
            CheckoutRef::Name(name) => Checkout::Reference(name),
            CheckoutRef::Commit(id) => Checkout::Commit(id),
        };
        // A push branch other than the checkout is made anew from the checkout on each push,
        // as Flux does by default (its GitForcePushBranch feature).
        let reset = checkout != Checkout::Branch(push.clone());
        builder = builder
            .with_checkout(checkout)
            .with_push_branch_reset(reset);
        let values: BTreeMap<String, String> = spec
            .and_then(|s| s.pointer("/git/commit/messageTemplateValues"))
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        let template = str_at(spec, &["git", "commit", "messageTemplate"]);
        // Refuse a template keel-flux cannot render before touching the repository.
        if let Some(template) = template {
            template::render(template, &TemplateData::default()).map_err(|e| {
                Ready::no("InvalidMessageTemplate", format!("invalid template: {e}"))
            })?;
        }

        let scan = builder
            .clone()
            .build()
            .scan()
            .await
            .map_err(|e| git_failure("failed to check out the repository", &e))?;
        let mut plans = Vec::new();
        let mut changes = Vec::new();
        let mut images = Vec::new();
        for reference in &scan.references {
            let ReferenceKind::FluxMarker { policy_name } = &reference.kind else {
                continue;
            };
            let Some(name) = policy_name
                .strip_prefix(&meta.namespace)
                .and_then(|n| n.strip_prefix(':'))
            else {
                continue;
            };
            let Some(latest) = observed.get(name) else {
                continue;
            };
            let new = target_image(reference, latest).map_err(|e| {
                Ready::no(
                    "UpdateFailed",
                    format!(
                        "cannot set {} to the choice of {policy_name}: {e}",
                        reference.id()
                    ),
                )
            })?;
            if new == reference.image {
                continue;
            }
            changes.extend(describe(reference, &new, latest, policy_name));
            let shown = latest_image(latest);
            if !images.contains(&shown) {
                images.push(shown);
            }
            plans.push(UpdatePlan {
                target: String::new(),
                id: reference.id(),
                current: reference.image.clone(),
                new,
            });
        }
        if plans.is_empty() {
            return Ok(Success {
                message: "repository up-to-date".into(),
                observed,
                pushed: None,
            });
        }
        let data = TemplateData {
            automation_object: meta.key(),
            values,
            changes,
            images,
        };
        let message = match template {
            Some(template) => template::render(template, &data).map_err(|e| {
                Ready::no("InvalidMessageTemplate", format!("invalid template: {e}"))
            })?,
            None => DEFAULT_MESSAGE.to_owned(),
        };
        let target = builder.with_message(message).build();
        for plan in &mut plans {
            plan.target = target.name().to_owned();
        }
        let results = target.apply_all(&plans).await;
        let mut applied = false;
        for result in results {
            match result {
                Ok(ApplyOutcome::Applied) => applied = true,
                Ok(ApplyOutcome::AlreadyCurrent) => {}
                // All or nothing: every plan carries the same error, and nothing was pushed.
                Err(error) => return Err(apply_failure(&error)),
            }
        }
        let pushed = if applied {
            target.last_pushed_commit()
        } else {
            None
        };
        let message = match &pushed {
            Some(commit) => {
                info!(automation = %meta.key(), %commit, branch = push, "pushed");
                format!("pushed commit '{}' to branch '{push}'", short(commit))
            }
            None => "repository up-to-date".into(),
        };
        Ok(Success {
            message,
            observed,
            pushed,
        })
    }

    /// The `ImagePolicy` objects of `namespace` that are ready with a `latestRef`, by name.
    pub(super) async fn ready_policies(
        &self,
        namespace: &str,
        selector: &PolicySelector,
    ) -> Result<BTreeMap<String, LatestRef>, Ready> {
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            namespace,
            &crate::reflector::policy_resource(),
        );
        let list = api.list(&ListParams::default()).await.map_err(|e| {
            Ready::no(
                "ReconciliationFailed",
                format!("failed to list the ImagePolicies of '{namespace}': {e}"),
            )
        })?;
        let mut ready = BTreeMap::new();
        for object in &list.items {
            let Some(meta) = Meta::read(object) else {
                continue;
            };
            let is_ready = meta.ready().is_some_and(|c| c.status == "True");
            let labels = object.metadata.labels.clone().unwrap_or_default();
            if !is_ready || !selector.matches(&labels) {
                continue;
            }
            let latest = object
                .data
                .pointer("/status/latestRef")
                .and_then(|r| serde_json::from_value::<LatestRef>(r.clone()).ok())
                .filter(|l| !l.name.is_empty() && !l.tag.is_empty());
            if let Some(latest) = latest {
                ready.insert(meta.name, latest);
            }
        }
        Ok(ready)
    }
}

/// `latestRef` as Flux writes it into a whole-image marker: `name:tag[@digest]`.
pub(super) fn latest_image(latest: &LatestRef) -> String {
    if latest.digest.is_empty() {
        format!("{}:{}", latest.name, latest.tag)
    } else {
        format!("{}:{}@{}", latest.name, latest.tag, latest.digest)
    }
}

/// What `reference` holds once the parts its markers mark are set to `latest`.
pub(super) fn target_image(reference: &Reference, latest: &LatestRef) -> Result<ImageRef, String> {
    let has = |part: Part| reference.slots.iter().any(|s| s.part == part);
    let whole = has(Part::Whole);
    let name = if whole || has(Part::Name) {
        latest.name.clone()
    } else {
        // The repository as written (or as the tag-only marker's policy names it).
        reference.image.name()
    };
    let tag = if whole || has(Part::Tag) {
        Some(latest.tag.clone())
    } else {
        reference.image.tag().map(ToString::to_string)
    };
    let digest = if whole {
        Some(latest.digest.clone()).filter(|d| !d.is_empty())
    } else if has(Part::Digest) && !latest.digest.is_empty() {
        Some(latest.digest.clone())
    } else {
        reference.image.digest().map(ToString::to_string)
    };
    let mut text = name;
    if let Some(tag) = tag {
        text.push(':');
        text.push_str(&tag);
    }
    if let Some(digest) = digest {
        text.push('@');
        text.push_str(&digest);
    }
    ImageRef::parse(&text).map_err(|e| e.to_string())
}

/// The changes of one reference, one per marked value, as Flux's `.Changed.Changes` lists
/// them.
pub(super) fn describe(
    reference: &Reference,
    new: &ImageRef,
    latest: &LatestRef,
    marker: &str,
) -> Vec<Change> {
    let old = &reference.image;
    // Written with the policy's spelling of the name when it is the same repository.
    let shown_name = |image: &ImageRef| {
        let same = ImageRef::parse(&latest.name).is_ok_and(|l| l.name() == image.name());
        if same {
            latest.name.clone()
        } else {
            image.name()
        }
    };
    let show = |image: &ImageRef| {
        let mut text = shown_name(image);
        if let Some(tag) = image.tag() {
            text.push_str(&format!(":{tag}"));
        }
        if let Some(digest) = image.digest() {
            text.push_str(&format!("@{digest}"));
        }
        text
    };
    let mut changes = Vec::new();
    let mut push = |part: &str, old_value: String, new_value: String| {
        if old_value != new_value {
            changes.push(Change {
                file: reference.file.clone(),
                setter: if part.is_empty() {
                    marker.to_owned()
                } else {
                    format!("{marker}:{part}")
                },
                old_value,
                new_value,
            });
        }
    };
    let text = |v: Option<String>| v.unwrap_or_default();
    for slot in &reference.slots {
        match slot.part {
            Part::Whole | Part::InsertTag { .. } => push("", show(old), show(new)),
            Part::Name => push("name", shown_name(old), latest.name.clone()),
            Part::Tag => push(
                "tag",
                text(old.tag().map(ToString::to_string)),
                text(new.tag().map(ToString::to_string)),
            ),
            Part::Digest => push(
                "digest",
                text(old.digest().map(ToString::to_string)),
                text(new.digest().map(ToString::to_string)),
            ),
        }
    }
    changes
}

/// The short form of a commit id, as `git log --oneline` shows it.
pub(super) fn short(commit: &str) -> &str {
    commit.get(..7).unwrap_or(commit)
}
