//! The `ImagePolicy` half of the reflector: each policy evaluated over its repository's
//! scanned tags, with the digest reflected as `spec.digestReflectionPolicy` asks.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use keel_core::{Error, ImageRef, Tag};
use kube::api::Api;
use serde_json::{Value, json};
use tracing::{debug, info, warn};

use super::status::ref_patch;
use super::*;

impl Reflector {
    pub(super) async fn reconcile_policy(
        &self,
        policy: &Policy,
        repositories: &HashMap<String, &Repository>,
        now: DateTime<Utc>,
        report: &mut ReflectorReport,
    ) -> Outcome {
        let meta = &policy.meta;
        if meta.is_suspended() {
            debug!(policy = %meta.key(), "suspended");
            return Outcome::Suspended;
        }
        let (latest_ref, ready) = match self.evaluate(policy, repositories, now).await {
            Ok(latest) => {
                let message = ready_message(&latest, policy.latest_ref.as_ref());
                (Some(latest), Ready::yes(message))
            }
            Err(ready) => (None, ready),
        };

        let mut status = serde_json::Map::new();
        if let Some(latest) = &latest_ref
            && policy.latest_ref.as_ref() != Some(latest)
        {
            status.insert("latestRef".into(), ref_patch(latest));
            if let Some(current) = &policy.latest_ref {
                status.insert("observedPreviousRef".into(), ref_patch(current));
            }
        }
        let generation_changed =
            meta.generation.is_some() && meta.generation != meta.observed_generation;
        if let Some(generation) = meta.generation {
            status.insert("observedGeneration".into(), json!(generation));
        }
        let same_ready = same_ready(meta, &ready);
        let request_pending = meta.reconcile_request.is_some()
            && meta.reconcile_request != meta.last_handled_reconcile;
        if same_ready
            && !generation_changed
            && !request_pending
            && !status.contains_key("latestRef")
        {
            return Outcome::Unchanged;
        }
        if ready.ok {
            info!(policy = %meta.key(), "{}", ready.message);
        } else {
            warn!(policy = %meta.key(), reason = %ready.reason, "{}", ready.message);
        }
        self.write_status(&policy_resource(), meta, status, &ready, now, report)
            .await;
        ready.outcome()
    }

    /// The `latestRef` `policy` selects now; `Err` is the `Ready` condition saying why none.
    async fn evaluate(
        &self,
        policy: &Policy,
        repositories: &HashMap<String, &Repository>,
        now: DateTime<Utc>,
    ) -> Result<LatestRef, Ready> {
        let meta = &policy.meta;
        let spec = &policy.spec;
        let invalid = |message: String| Ready::no("InvalidPolicy", message);
        let reference = spec.get("imageRepositoryRef");
        let repository_name = reference
            .and_then(|r| r.get("name"))
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                invalid("invalid policy: spec.imageRepositoryRef.name is required".into())
            })?;
        let repository_namespace = reference
            .and_then(|r| r.get("namespace"))
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .unwrap_or(&meta.namespace);
        let choice: ImagePolicyChoice = match spec.get("policy") {
            None | Some(Value::Null) => {
                return Err(invalid("invalid policy: spec.policy is required".into()));
            }
            Some(value) => serde_json::from_value(value.clone())
                .map_err(|e| invalid(format!("invalid policy: spec.policy: {e}")))?,
        };
        let filter: Option<TagFilter> = match spec.get("filterTags") {
            None | Some(Value::Null) => None,
            Some(value) => Some(
                serde_json::from_value(value.clone())
                    .map_err(|e| invalid(format!("invalid policy: spec.filterTags: {e}")))?,
            ),
        };
        let reflection = DigestReflection::parse(spec.get("digestReflectionPolicy"))
            .map_err(|e| invalid(format!("invalid policy: {e}")))?;
        let selection =
            FluxPolicy::new(choice, filter).map_err(|e| invalid(format!("invalid policy: {e}")))?;

        let repository_key = format!("{repository_namespace}/{repository_name}");
        let access_denied = |why: String| {
            Ready::no(
                "AccessDenied",
                format!("failed to get the referred ImageRepository: access denied: {why}"),
            )
        };
        if !self.namespaces.contains(repository_namespace) {
            return Err(access_denied(format!(
                "'ImageRepository/{repository_key}' is in a namespace this reflector does not \
                 read"
            )));
        }
        let Some(repository) = repositories.get(&repository_key) else {
            return Err(Ready::no(
                "DependencyNotReady",
                format!(
                    "failed to get the referred ImageRepository: referenced ImageRepository \
                     {repository_key} does not exist"
                ),
            ));
        };
        if repository_namespace != meta.namespace {
            let labels = self
                .namespace_labels(&meta.namespace)
                .await
                .map_err(|e| access_denied(e.to_string()))?;
            access_allowed(
                repository.access_from.as_ref(),
                &labels,
                &repository_key,
                &meta.namespace,
            )
            .map_err(access_denied)?;
        }
        let image = repository.image.clone().unwrap_or_default();
        let (reference, _) = parse_image(&image).map_err(|e| Ready::no("ImageURLInvalid", e))?;
        let tags = self
            .tags(repository_namespace, repository_name)
            .filter(|tags| !tags.is_empty())
            .ok_or_else(|| {
                Ready::no(
                    "DependencyNotReady",
                    format!(
                        "no tags in the database: ImageRepository {repository_key} has not been \
                         scanned successfully, or has no tags"
                    ),
                )
            })?;
        let tag = match selection.latest(tags.iter().map(String::as_str)) {
            Ok(Some(tag)) => tag,
            Ok(None) => {
                return Err(Ready::no(
                    "Failure",
                    format!(
                        "unable to determine latest version from provided list: none of the {} \
                         tags of ImageRepository {repository_key} qualifies ({selection})",
                        tags.len()
                    ),
                ));
            }
            Err(error) => return Err(Ready::no("Failure", error.to_string())),
        };
        let mut latest = LatestRef {
            name: image,
            tag,
            digest: String::new(),
        };
        // The digest already written for this name and tag, if any.
        let current_digest = policy
            .latest_ref
            .as_ref()
            .filter(|c| c.name == latest.name && c.tag == latest.tag && !c.digest.is_empty())
            .map(|c| c.digest.clone());
        let keep = current_digest.is_some()
            && match reflection {
                DigestReflection::Never => false,
                DigestReflection::IfNotPresent => true,
                // Read again once `spec.interval` has passed, or for a new generation.
                DigestReflection::Always => {
                    meta.generation
                        .is_none_or(|g| Some(g) == meta.observed_generation)
                        && self.digest_fresh(policy, now)
                }
            };
        if keep {
            latest.digest = current_digest.unwrap_or_default();
        } else if reflection != DigestReflection::Never {
            latest.digest = self.digest(repository, &reference, &latest).await?;
            self.digests_read
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(meta.key(), now);
        }
        Ok(latest)
    }

    /// Whether an `Always` policy read its digest less than `spec.interval` (default 10m)
    /// before `now`.
    fn digest_fresh(&self, policy: &Policy, now: DateTime<Utc>) -> bool {
        let interval = policy
            .spec
            .get("interval")
            .and_then(Value::as_str)
            .and_then(parse_duration)
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_secs(600));
        let read = self
            .digests_read
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&policy.meta.key())
            .copied();
        read.zip(chrono::Duration::from_std(interval).ok())
            .and_then(|(read, interval)| read.checked_add_signed(interval))
            .is_some_and(|next| now < next)
    }

    /// The labels of the namespace `name`, for `accessFrom`.
    async fn namespace_labels(&self, name: &str) -> Result<BTreeMap<String, String>, Error> {
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("", "v1", "Namespace"),
            "namespaces",
        );
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &resource);
        let namespace = api.get(name).await.map_err(|e| {
            from_kube(
                e,
                &Request {
                    verb: "get",
                    resource: "namespaces",
                    namespace: None,
                    name: Some(name),
                },
            )
        })?;
        Ok(namespace.metadata.labels.unwrap_or_default())
    }

    /// The digest of `latest` in the registry, read with the repository's credentials.
    async fn digest(
        &self,
        repository: &Repository,
        reference: &ImageRef,
        latest: &LatestRef,
    ) -> Result<String, Ready> {
        let context = format!("failed fetching digest of {}:{}", latest.name, latest.tag);
        let tag = Tag::new(latest.tag.clone())
            .map_err(|e| Ready::no("ReadOperationFailed", format!("{context}: {e}")))?;
        let secret = self.secret_of(repository)?;
        let timeout = repository
            .timeout
            .as_deref()
            .or(repository.interval.as_deref())
            .and_then(parse_duration)
            .unwrap_or(Duration::from_secs(60))
            .max(Duration::from_secs(1));
        let image = reference.with_tag(tag.clone());
        let answer = {
            let _credentials = CredentialScope::new(self.pull_secrets.as_ref(), &image, secret);
            tokio::time::timeout(timeout, self.registry.confirm_digest(&image, &tag)).await
        };
        match answer {
            Err(_) => Err(Ready::no(
                "ReadOperationFailed",
                format!(
                    "{context}: no answer from the registry within {}s",
                    timeout.as_secs_f64()
                ),
            )),
            Ok(Err(error)) => Err(registry_failure(&context, &error)),
            Ok(Ok(digest)) => Ok(digest.as_str().to_owned()),
        }
    }
}

/// Flux's message for a resolved policy.
pub(super) fn ready_message(latest: &LatestRef, current: Option<&LatestRef>) -> String {
    let mut message = format!(
        "Latest image tag for {} resolved to {}",
        latest.name, latest.tag
    );
    if !latest.digest.is_empty() {
        message.push_str(&format!(" with digest {}", latest.digest));
    }
    if let Some(previous) = current
        && previous != latest
    {
        message.push_str(&format!(" (previously {}:{}", previous.name, previous.tag));
        if !previous.digest.is_empty() {
            message.push_str(&format!("@{}", previous.digest));
        }
        message.push(')');
    }
    message
}
