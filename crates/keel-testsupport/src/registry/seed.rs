//! Seeding a registry over the distribution API, with the test support's own HTTP calls
//! (monolithic blob uploads, manifest PUTs), so the code under test is not used to set up its
//! own fixtures.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use futures::StreamExt as _;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::json;

use super::blob::{Layer, PlatformParts, image_config};
use super::sha256_digest;

/// The kind of manifest list [`Seeder::push_list`] pushes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListFormat {
    /// An OCI image index over OCI images.
    Oci,
    /// A Docker manifest list over Docker schema 2 images.
    Docker,
}

/// The media type of one image: Docker schema 2 when `docker`, else OCI.
fn image_type(docker: bool) -> &'static str {
    if docker {
        media_type::DOCKER_MANIFEST
    } else {
        media_type::OCI_MANIFEST
    }
}

/// Media types of the manifests and blobs the seeder pushes.
pub mod media_type {
    /// OCI image manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image index.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// OCI image config.
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// OCI gzip'd layer.
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    /// Docker schema 2 manifest.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker manifest list.
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    /// Docker image config.
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    /// Docker gzip'd layer.
    pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
}

/// A creation time for an image config: an RFC 3339 string or a chrono date-time.
pub trait Created {
    /// The time as RFC 3339.
    fn rfc3339(&self) -> String;
}

impl Created for &str {
    fn rfc3339(&self) -> String {
        (*self).to_owned()
    }
}

impl Created for String {
    fn rfc3339(&self) -> String {
        self.clone()
    }
}

impl<Tz: chrono::TimeZone> Created for chrono::DateTime<Tz> {
    fn rfc3339(&self) -> String {
        self.with_timezone(&chrono::Utc)
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    }
}

/// The creation time [`Seeder::push_tags`] gives its images.
pub const DEFAULT_CREATED: &str = "2024-01-01T00:00:00Z";

/// How the seeder authenticates.
#[derive(Clone, Debug)]
pub enum SeederAuth {
    /// Anonymous.
    None,
    /// `Authorization: Basic` on every request.
    Basic {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
    /// Bearer tokens from `realm` (fetched with basic credentials, one per repository, with
    /// scope `repository:<repo>:pull,push,delete`).
    Token {
        /// The token endpoint.
        realm: String,
        /// The `service` parameter.
        service: String,
        /// User name for the token endpoint.
        user: String,
        /// Password for the token endpoint.
        password: String,
    },
}

/// The digests of an index and of its per-platform manifests (in the given order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexDigests {
    /// The index (or manifest list).
    pub index: String,
    /// One manifest per platform.
    pub manifests: Vec<String>,
}

/// Pushes content into one registry. Methods panic with a description on any failure.
pub struct Seeder {
    client: reqwest::Client,
    base: String,
    auth: SeederAuth,
    /// Bearer token per repository.
    tokens: Mutex<HashMap<String, String>>,
    /// (repository, digest) of blobs known to be present.
    blobs: Mutex<HashSet<(String, String)>>,
}

/// How many manifest PUTs [`Seeder::push_tags`] runs at once.
const CONCURRENCY: usize = 16;

impl Seeder {
    /// A seeder for the registry at `addr` (`127.0.0.1:PORT`).
    pub fn new(addr: &str, auth: SeederAuth) -> Seeder {
        Seeder {
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(std::time::Duration::from_secs(60))
                .build()
                .expect("HTTP client"),
            base: format!("http://{addr}"),
            auth,
            tokens: Mutex::new(HashMap::new()),
            blobs: Mutex::new(HashSet::new()),
        }
    }

    /// An OCI image for one platform (`linux/amd64`, `linux/arm64/v8`) created at `created`;
    /// returns the manifest digest.
    pub async fn push_image(
        &self,
        repo: &str,
        tag: &str,
        created: impl Created,
        platform: &str,
    ) -> String {
        self.push_single(repo, tag, &created.rfc3339(), platform, false)
            .await
    }

    /// One `linux/amd64` OCI image per `(tag, created)`, pushed in the given order; returns
    /// the manifest digests in that order.
    pub async fn push_images<C: Created>(&self, repo: &str, images: &[(&str, C)]) -> Vec<String> {
        let mut digests = Vec::with_capacity(images.len());
        for (tag, created) in images {
            let digest = self.push_image(repo, tag, created.rfc3339(), "linux/amd64");
            digests.push(digest.await);
        }
        digests
    }

    /// An OCI index over one image per `(platform, created)`; returns the index digest.
    pub async fn push_index<C: Created>(
        &self,
        repo: &str,
        tag: &str,
        platforms: &[(&str, C)],
    ) -> String {
        let list = self.push_list(ListFormat::Oci, repo, tag, platforms);
        list.await.index
    }

    /// A Docker schema 2 image (`linux/amd64`); returns the manifest digest.
    pub async fn push_docker_v2(&self, repo: &str, tag: &str, created: impl Created) -> String {
        self.push_single(repo, tag, &created.rfc3339(), "linux/amd64", true)
            .await
    }

    /// One image (Docker schema 2 when `docker`, else OCI) for `platform`, created at
    /// `created`; returns the manifest digest.
    async fn push_single(
        &self,
        repo: &str,
        tag: &str,
        created: &str,
        platform: &str,
        docker: bool,
    ) -> String {
        let manifest = self
            .image_manifest(repo, created, platform, docker, None)
            .await;
        self.put_manifest(repo, tag, image_type(docker), &manifest)
            .await
    }

    /// One OCI image per tag (`linux/amd64`, created [`DEFAULT_CREATED`]), sharing the layer
    /// and config blobs; each manifest differs by an annotation, so every tag has its own
    /// digest. Returns the digests in the order of `tags`.
    pub async fn push_tags<T: AsRef<str>>(&self, repo: &str, tags: &[T]) -> Vec<String> {
        let platform = PlatformParts::parse("linux/amd64");
        let (config, layer) = self.image_blobs(repo, DEFAULT_CREATED, &platform).await;
        let manifests = tags.iter().map(|tag| {
            let tag = tag.as_ref();
            let manifest = manifest_json(false, &config, &layer, Some(tag));
            async move {
                self.put_manifest(repo, tag, media_type::OCI_MANIFEST, &manifest)
                    .await
            }
        });
        futures::stream::iter(manifests)
            .buffered(CONCURRENCY)
            .collect()
            .await
    }

    /// Points `tag` at the manifest `source` (a tag or digest) refers to; returns its digest.
    pub async fn retag(&self, repo: &str, source: &str, tag: &str) -> String {
        let (media_type, bytes) = self.get_manifest(repo, source).await;
        self.put_manifest(repo, tag, &media_type, &bytes).await
    }

    /// Moves `tag` to a new OCI image (other content, so another digest) created at `created`;
    /// returns the new digest.
    pub async fn move_tag(&self, repo: &str, tag: &str, created: impl Created) -> String {
        self.push_image(repo, tag, created, "linux/amd64").await
    }

    /// The raw manifest `reference` (tag or digest) refers to: (content type, bytes).
    pub async fn get_manifest(&self, repo: &str, reference: &str) -> (String, Vec<u8>) {
        let response = self.manifest_request(Method::GET, repo, reference).await;
        let response = expect_status(response, &[StatusCode::OK], "GET manifest").await;
        let media_type = header(&response, "content-type").unwrap_or_default();
        let bytes = response.bytes().await.expect("manifest body").to_vec();
        (media_type, bytes)
    }

    /// The digest the registry reports for `reference` on `HEAD`, or `None` on 404.
    pub async fn head_digest(&self, repo: &str, reference: &str) -> Option<String> {
        let response = self.manifest_request(Method::HEAD, repo, reference).await;
        if response.status() == StatusCode::NOT_FOUND {
            return None;
        }
        let response = expect_status(response, &[StatusCode::OK], "HEAD manifest").await;
        Some(header(&response, "docker-content-digest").expect("Docker-Content-Digest"))
    }

    /// Deletes the manifest `digest` (and with it every tag pointing at it).
    pub async fn delete_manifest(&self, repo: &str, digest: &str) {
        let url = format!("{}/v2/{repo}/manifests/{digest}", self.base);
        let response = self.send(repo, || self.client.delete(&url)).await;
        expect_status(
            response,
            &[StatusCode::ACCEPTED, StatusCode::OK],
            "DELETE manifest",
        )
        .await;
    }

    /// Pushes the blobs of an image and returns its manifest bytes (not yet pushed).
    async fn image_manifest(
        &self,
        repo: &str,
        created: &str,
        platform: &str,
        docker: bool,
        annotation: Option<&str>,
    ) -> Vec<u8> {
        let platform = PlatformParts::parse(platform);
        let (config, layer) = self.image_blobs(repo, created, &platform).await;
        manifest_json(docker, &config, &layer, annotation)
    }

    /// Uploads the layer and the config of an image; returns (config, layer) as
    /// (digest, size) pairs.
    async fn image_blobs(
        &self,
        repo: &str,
        created: &str,
        platform: &PlatformParts,
    ) -> ((String, usize), (String, usize)) {
        let layer = Layer::with_file(&format!(
            "keel test layer for {}/{}{}\n",
            platform.os,
            platform.architecture,
            platform
                .variant
                .as_deref()
                .map(|v| format!("/{v}"))
                .unwrap_or_default()
        ));
        let config = image_config(created, platform, &layer.diff_id);
        let layer_digest = self.push_blob(repo, &layer.gzip).await;
        let config_digest = self.push_blob(repo, &config).await;
        (
            (config_digest, config.len()),
            (layer_digest, layer.gzip.len()),
        )
    }

    /// A list in `format` (an OCI index or a Docker manifest list) over one image per
    /// `(platform, created)`; returns the list's and the images' digests.
    pub async fn push_list<C: Created>(
        &self,
        format: ListFormat,
        repo: &str,
        tag: &str,
        platforms: &[(&str, C)],
    ) -> IndexDigests {
        let docker = format == ListFormat::Docker;
        let manifest_type = image_type(docker);
        let mut entries = Vec::new();
        let mut digests = Vec::new();
        for (platform, created) in platforms {
            let manifest = self
                .image_manifest(repo, &created.rfc3339(), platform, docker, None)
                .await;
            let digest = sha256_digest(&manifest);
            let pushed = self
                .put_manifest(repo, &digest, manifest_type, &manifest)
                .await;
            assert_eq!(pushed, digest);
            entries.push(json!({
                "mediaType": manifest_type,
                "digest": digest,
                "size": manifest.len(),
                "platform": PlatformParts::parse(platform).to_json(),
            }));
            digests.push(digest);
        }
        let list_type = if docker {
            media_type::DOCKER_LIST
        } else {
            media_type::OCI_INDEX
        };
        let list = json!({
            "schemaVersion": 2,
            "mediaType": list_type,
            "manifests": entries,
        });
        let bytes = serde_json::to_vec(&list).expect("index serializes");
        IndexDigests {
            index: self.put_manifest(repo, tag, list_type, &bytes).await,
            manifests: digests,
        }
    }

    /// Uploads `bytes` as a blob unless the registry has it; returns its digest.
    pub async fn push_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = sha256_digest(bytes);
        let key = (repo.to_owned(), digest.clone());
        if self.blobs.lock().expect("blob cache").contains(&key) {
            return digest;
        }
        let head_url = format!("{}/v2/{repo}/blobs/{digest}", self.base);
        let head = self.send(repo, || self.client.head(&head_url)).await;
        if head.status() != StatusCode::OK {
            let start_url = format!("{}/v2/{repo}/blobs/uploads/", self.base);
            let started = self.send(repo, || self.client.post(&start_url)).await;
            let started = expect_status(started, &[StatusCode::ACCEPTED], "POST blob upload").await;
            let location = header(&started, "location").expect("upload Location");
            let location = if location.starts_with('/') {
                format!("{}{location}", self.base)
            } else {
                location
            };
            let separator = if location.contains('?') { '&' } else { '?' };
            let put_url = format!("{location}{separator}digest={digest}");
            let body = bytes.to_vec();
            let put = self
                .send(repo, || {
                    self.client
                        .put(&put_url)
                        .header("content-type", "application/octet-stream")
                        .body(body.clone())
                })
                .await;
            expect_status(put, &[StatusCode::CREATED], "PUT blob").await;
        }
        self.blobs.lock().expect("blob cache").insert(key);
        digest
    }

    /// PUTs a manifest under `reference` (tag or digest); returns its digest, checked against
    /// the registry's `Docker-Content-Digest`.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> String {
        let digest = sha256_digest(bytes);
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base);
        let response = self
            .send(repo, || {
                self.client
                    .put(&url)
                    .header("content-type", media_type)
                    .body(bytes.to_vec())
            })
            .await;
        let response = expect_status(response, &[StatusCode::CREATED], "PUT manifest").await;
        if let Some(reported) = header(&response, "docker-content-digest") {
            assert_eq!(reported, digest, "registry digest of {repo}:{reference}");
        }
        digest
    }

    /// Sends a request built by `build`, authenticated as configured.
    /// `method` of the manifest `reference`, accepting every manifest type.
    async fn manifest_request(
        &self,
        method: Method,
        repo: &str,
        reference: &str,
    ) -> reqwest::Response {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base);
        self.send(repo, || {
            let request = self.client.request(method.clone(), &url);
            request.header("accept", super::ACCEPT_ALL_MANIFESTS)
        })
        .await
    }

    async fn send(&self, repo: &str, build: impl Fn() -> RequestBuilder) -> reqwest::Response {
        let request = match &self.auth {
            SeederAuth::None => build(),
            SeederAuth::Basic { user, password } => build().basic_auth(user, Some(password)),
            SeederAuth::Token { .. } => build().bearer_auth(self.token(repo).await),
        };
        let request = request.build().expect("valid request");
        let description = format!("{} {}", request.method(), request.url());
        self.client
            .execute(request)
            .await
            .unwrap_or_else(|error| panic!("{description}: {error}"))
    }

    /// A push token for `repo`, fetched once.
    async fn token(&self, repo: &str) -> String {
        if let Some(token) = self.tokens.lock().expect("token cache").get(repo) {
            return token.clone();
        }
        let SeederAuth::Token {
            realm,
            service,
            user,
            password,
        } = &self.auth
        else {
            unreachable!("token() without token auth")
        };
        let response = self
            .client
            .request(Method::GET, realm)
            .query(&[
                ("service", service.as_str()),
                ("scope", &format!("repository:{repo}:pull,push,delete")),
            ])
            .basic_auth(user, Some(password))
            .send()
            .await
            .unwrap_or_else(|error| panic!("token request to {realm}: {error}"));
        let response = expect_status(response, &[StatusCode::OK], "GET token").await;
        let body: serde_json::Value = response.json().await.expect("token JSON");
        let token = body["token"].as_str().expect("token field").to_owned();
        self.tokens
            .lock()
            .expect("token cache")
            .insert(repo.to_owned(), token.clone());
        token
    }
}

/// The manifest of an image with one layer, optionally annotated with `keel.test/tag`.
fn manifest_json(
    docker: bool,
    config: &(String, usize),
    layer: &(String, usize),
    annotation: Option<&str>,
) -> Vec<u8> {
    let (manifest_type, config_type, layer_type) = if docker {
        (
            media_type::DOCKER_MANIFEST,
            media_type::DOCKER_CONFIG,
            media_type::DOCKER_LAYER,
        )
    } else {
        (
            media_type::OCI_MANIFEST,
            media_type::OCI_CONFIG,
            media_type::OCI_LAYER,
        )
    };
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": { "mediaType": config_type, "digest": config.0, "size": config.1 },
        "layers": [{ "mediaType": layer_type, "digest": layer.0, "size": layer.1 }],
    });
    if let Some(value) = annotation {
        manifest["annotations"] = json!({ "keel.test/tag": value });
    }
    serde_json::to_vec(&manifest).expect("manifest serializes")
}

/// A header as a string.
fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// Panics with the status and body unless the response has one of `expected`.
async fn expect_status(
    response: reqwest::Response,
    expected: &[StatusCode],
    what: &str,
) -> reqwest::Response {
    if expected.contains(&response.status()) {
        return response;
    }
    let status = response.status();
    let url = response.url().to_string();
    let body = response.text().await.unwrap_or_default();
    panic!("{what} {url}: expected {expected:?}, got {status}: {body}");
}
