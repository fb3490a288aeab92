//! The OCI Distribution operations: tag listing with pagination, digests (HEAD first),
//! manifests and image configs, and the [`Registry`] implementation over them.

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keel_core::registry::{ImageMetadata, Registry, TagList};
use keel_core::{Digest, Error, ImageRef, Platform, Tag};
use reqwest::header::{self, HeaderMap};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::{Kind, RegistryClient, parse_json, registry_failure};

#[derive(Deserialize)]
struct TagPage {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    digest: String,
    #[serde(default)]
    platform: Option<PlatformField>,
}

#[derive(Deserialize)]
struct PlatformField {
    os: String,
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

#[derive(Deserialize)]
struct ImageConfig {
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    architecture: Option<String>,
    #[serde(default)]
    variant: Option<String>,
}

/// What an image config says: its creation time and, when it names them, its platform.
struct ConfigFacts {
    created: Option<DateTime<Utc>>,
    platform: Option<Platform>,
}

impl RegistryClient {
    /// The key of `image:tag`'s digest in the cache, under the identity of the credentials
    /// sent for it.
    async fn digest_key(
        &self,
        image: &ImageRef,
        tag: &Tag,
    ) -> Result<(String, String, String), Error> {
        let identity = self.identity_for(image).await?;
        Ok((identity, image.name(), tag.as_str().to_owned()))
    }

    /// The URL of `path` (`tags/list`, `manifests/REF`, `blobs/DIGEST`) under the
    /// repository of `image` in its registry's API.
    fn api_url(&self, image: &ImageRef, path: &str) -> String {
        format!(
            "{}/v2/{}/{path}",
            self.base(image.registry()),
            image.repository()
        )
    }

    /// Lists tags like [`Registry::list_tags`], reporting progress (tags so far) after each
    /// page, and bypassing the cache.
    pub async fn list_tags_with_progress(
        &self,
        image: &ImageRef,
        progress: &(dyn Fn(usize) + Send + Sync),
    ) -> Result<TagList, Error> {
        self.fetch_tags(image, progress).await
    }

    pub(super) async fn fetch_tags(
        &self,
        image: &ImageRef,
        progress: &(dyn Fn(usize) + Send + Sync),
    ) -> Result<TagList, Error> {
        let settings = &self.inner.settings;
        let action = format!("list tags of {}", image.name());
        let mut url = self.api_url(image, &format!("tags/list?n={}", settings.page_size));
        let mut seen = HashSet::new();
        let mut tags = Vec::new();
        let mut pages = 0;
        loop {
            if !seen.insert(url.clone()) {
                return Err(Error::Backend {
                    backend: format!("registry {}", image.registry()),
                    action,
                    message: format!("pagination loops: the registry sent the link {url} twice"),
                    retryable: false,
                    source: None,
                });
            }
            let page = self.send(image, Kind::TagPage, &url, &action).await?;
            pages += 1;
            let parsed: TagPage =
                parse_json(&page.body, image.registry(), &action, "the tag list")?;
            tags.extend(parsed.tags.unwrap_or_default());
            progress(tags.len());
            let next = next_link(&page.headers, &page.url);
            if let Some(next) = &next
                && let Err(e) = self.check_origin(image.registry(), next, &action)
            {
                let message = match e {
                    Error::Backend { message, .. } => message,
                    other => other.to_string(),
                };
                return Err(registry_failure(
                    image.registry(),
                    &action,
                    format!("the tag list links its next page to another origin: {message}"),
                    false,
                ));
            }
            if tags.len() > settings.max_tags {
                tags.truncate(settings.max_tags);
                return Ok(TagList {
                    tags,
                    truncated: true,
                });
            }
            // At exactly the budget a next page may still be empty: it is fetched (one page
            // over, bounded by the page size) so that "complete" is never guessed.
            match next {
                None => {
                    return Ok(TagList {
                        tags,
                        truncated: false,
                    });
                }
                Some(_) if pages >= settings.max_pages => {
                    return Ok(TagList {
                        tags,
                        truncated: true,
                    });
                }
                Some(next) => url = next,
            }
        }
    }

    pub(super) async fn fetch_digest(
        &self,
        image: &ImageRef,
        reference: &str,
    ) -> Result<Digest, Error> {
        let url = self.api_url(image, &format!("manifests/{reference}"));
        let action = format!("resolve {}:{reference}", image.name());
        let head = self.send(image, Kind::ManifestHead, &url, &action).await?;
        if let Some(digest) = head
            .headers
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok())
        {
            return Ok(digest);
        }
        // No digest header: hash the manifest as served.
        let got = self.send(image, Kind::ManifestGet, &url, &action).await?;
        Ok(sha256_digest(&got.body))
    }

    async fn fetch_manifest(
        &self,
        image: &ImageRef,
        reference: &str,
        action: &str,
    ) -> Result<(Manifest, String, Digest), Error> {
        let url = self.api_url(image, &format!("manifests/{reference}"));
        let got = self.send(image, Kind::ManifestGet, &url, action).await?;
        let content_type = got
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let manifest: Manifest = parse_json(&got.body, image.registry(), action, "the manifest")?;
        let media_type = manifest.media_type.clone().unwrap_or(content_type);
        // The digest of the manifest as served: what the tag points at.
        let digest = sha256_digest(&got.body);
        Ok((manifest, media_type, digest))
    }

    async fn read_config(
        &self,
        image: &ImageRef,
        config_digest: &str,
        action: &str,
    ) -> Result<ConfigFacts, Error> {
        let url = self.api_url(image, &format!("blobs/{config_digest}"));
        let got = self.send(image, Kind::BlobGet, &url, action).await?;
        let config: ImageConfig =
            parse_json(&got.body, image.registry(), action, "the image config")?;
        let created = config
            .created
            .and_then(|c| DateTime::parse_from_rfc3339(&c).ok())
            .map(|c| c.with_timezone(&Utc));
        // A config without a valid os and architecture says nothing of its platform.
        let platform = match (config.os, config.architecture) {
            (Some(os), Some(arch)) => Platform::new(&os, &arch, config.variant.as_deref()).ok(),
            _ => None,
        };
        Ok(ConfigFacts { created, platform })
    }
}

#[async_trait]
impl Registry for RegistryClient {
    fn name(&self) -> &str {
        "OCI registry client"
    }

    async fn list_tags(&self, image: &ImageRef) -> Result<TagList, Error> {
        let key = (self.identity_for(image).await?, image.name());
        self.inner
            .tags
            .get_or_fetch(&key, || self.fetch_tags(image, &|_| {}))
            .await
    }

    async fn resolve_digest(&self, image: &ImageRef, tag: &Tag) -> Result<Digest, Error> {
        let key = self.digest_key(image, tag).await?;
        self.inner
            .digests
            .get_or_fetch(&key, || self.fetch_digest(image, tag.as_str()))
            .await
    }

    async fn confirm_digest(&self, image: &ImageRef, tag: &Tag) -> Result<Digest, Error> {
        let digest = self.fetch_digest(image, tag.as_str()).await?;
        let key = self.digest_key(image, tag).await?;
        self.inner.digests.put(&key, digest.clone()).await;
        Ok(digest)
    }

    async fn metadata(&self, image: &ImageRef, tag: &Tag) -> Result<ImageMetadata, Error> {
        let action = format!("read metadata of {}:{tag}", image.name());
        let (manifest, media_type, digest) =
            self.fetch_manifest(image, tag.as_str(), &action).await?;
        if let Some(entries) = manifest
            .manifests
            .filter(|_| media_type.contains("index") || media_type.contains("list"))
        {
            let mut platforms = Vec::new();
            let mut created: Option<DateTime<Utc>> = None;
            for entry in entries {
                let Some(p) = entry.platform else { continue };
                if p.os == "unknown" || p.architecture == "unknown" {
                    continue; // attestation manifests
                }
                let Ok(platform) = Platform::new(&p.os, &p.architecture, p.variant.as_deref())
                else {
                    continue;
                };
                if platform.matches(&self.inner.settings.platform) {
                    let (inner, ..) = self.fetch_manifest(image, &entry.digest, &action).await?;
                    if let Some(config) = inner.config {
                        let c = self.read_config(image, &config.digest, &action).await?;
                        created = created.max(c.created);
                    }
                }
                platforms.push(platform);
            }
            return Ok(ImageMetadata {
                created,
                platforms,
                digest: Some(digest),
            });
        }
        let facts = match manifest.config {
            Some(config) => self.read_config(image, &config.digest, &action).await?,
            None => ConfigFacts {
                created: None,
                platform: None,
            },
        };
        Ok(ImageMetadata {
            created: facts.created,
            platforms: facts.platform.into_iter().collect(),
            digest: Some(digest),
        })
    }
}

pub(super) fn sha256_digest(bytes: &[u8]) -> Digest {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
        .parse()
        .expect("a sha256 digest is valid")
}

/// The `rel="next"` target of a `Link` header, resolved against the page's URL.
pub(crate) fn next_link(headers: &HeaderMap, page: &reqwest::Url) -> Option<String> {
    for value in headers.get_all(header::LINK) {
        let Ok(value) = value.to_str() else { continue };
        for link in value.split(',') {
            let Some((target, params)) = link.split_once(';') else {
                continue;
            };
            let is_next = params.split(';').any(|p| {
                p.trim()
                    .replace(' ', "")
                    .eq_ignore_ascii_case("rel=\"next\"")
                    || p.trim().eq_ignore_ascii_case("rel=next")
            });
            if !is_next {
                continue;
            }
            let target = target.trim().trim_start_matches('<').trim_end_matches('>');
            return page.join(target).ok().map(String::from);
        }
    }
    None
}
