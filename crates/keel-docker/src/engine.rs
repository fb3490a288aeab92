//! The Engine API calls the target makes, each with its errors mapped onto keel-core's
//! [`Error`] and named after the container or image it concerns.

use std::time::Duration;

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerSummary, EndpointSettings,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, InspectContainerOptions, KillContainerOptions,
    ListContainersOptions, RemoveContainerOptions, RemoveImageOptions, RenameContainerOptions,
    StopContainerOptions, TagImageOptions,
};
use futures::StreamExt;
use keel_core::{Error, ImageRef, Result};

/// An Engine API error as keel-core's: 404 is `NotFound`, 409 `Conflict`, a 5xx or a broken
/// connection is retryable.
fn api_error(backend: &str, action: String, error: bollard::errors::Error) -> Error {
    use bollard::errors::Error as E;
    match error {
        E::DockerResponseServerError {
            status_code: 404,
            message,
        } => Error::not_found(format!("{action}: {message}")),
        E::DockerResponseServerError {
            status_code: 409,
            message,
        } => Error::Conflict {
            action,
            reason: message,
        },
        E::DockerResponseServerError {
            status_code,
            ref message,
        } => Error::Backend {
            backend: backend.to_owned(),
            action,
            message: format!("{message} (HTTP {status_code})"),
            retryable: status_code >= 500,
            source: None,
        },
        other => {
            let retryable = matches!(
                other,
                E::IOError { .. } | E::HyperResponseError { .. } | E::RequestTimeoutError
            );
            Error::Backend {
                backend: backend.to_owned(),
                action,
                message: other.to_string(),
                retryable,
                source: Some(std::sync::Arc::new(other)),
            }
        }
    }
}

/// The engine, as the target talks to it.
#[derive(Clone, Debug)]
pub(crate) struct Engine {
    pub(crate) docker: Docker,
    pub(crate) backend: String,
}

impl Engine {
    fn error(&self, action: String) -> impl FnOnce(bollard::errors::Error) -> Error + '_ {
        move |e| api_error(&self.backend, action, e)
    }

    /// The containers `options` select: the running ones only, unless
    /// [`all`](ListContainersOptions::all) is set.
    pub(crate) async fn list(
        &self,
        options: ListContainersOptions,
    ) -> Result<Vec<ContainerSummary>> {
        self.docker
            .list_containers(Some(options))
            .await
            .map_err(self.error("list containers".into()))
    }

    pub(crate) async fn inspect(&self, container: &str) -> Result<ContainerInspectResponse> {
        self.docker
            .inspect_container(container, None::<InspectContainerOptions>)
            .await
            .map_err(self.error(format!("inspect container {container}")))
    }

    /// The image's id and configuration.
    pub(crate) async fn inspect_image(&self, image: &str) -> Result<bollard::models::ImageInspect> {
        self.docker
            .inspect_image(image)
            .await
            .map_err(self.error(format!("inspect image {image}")))
    }

    /// Pulls `image` (by digest when it has one, then tagged as its tag) and returns the
    /// pulled image's id. `credentials` go to the engine for this pull only.
    pub(crate) async fn pull(
        &self,
        image: &ImageRef,
        credentials: Option<DockerCredentials>,
    ) -> Result<String> {
        let tagged = image.without_digest();
        let tag = tagged
            .tag()
            .map(|t| t.as_str().to_owned())
            .unwrap_or_default();
        let repository = tagged.familiar_name();
        let from = match image.digest() {
            Some(digest) => format!("{repository}@{digest}"),
            None => format!("{repository}:{tag}"),
        };
        let options = CreateImageOptions {
            from_image: Some(from.clone()),
            ..CreateImageOptions::default()
        };
        let mut progress = self.docker.create_image(Some(options), None, credentials);
        while let Some(step) = progress.next().await {
            step.map_err(self.error(format!("pull {from}")))?;
        }
        let id = self
            .inspect_image(&from)
            .await?
            .id
            .ok_or_else(|| Error::Backend {
                backend: self.backend.clone(),
                action: format!("pull {from}"),
                message: "the engine reported no image id".into(),
                retryable: false,
                source: None,
            })?;
        if image.digest().is_some() {
            let options = TagImageOptions {
                repo: Some(repository),
                tag: Some(tag),
            };
            self.docker
                .tag_image(&id, Some(options))
                .await
                .map_err(self.error(format!("tag {from} as {tagged}")))?;
        }
        Ok(id)
    }

    /// Stops `container` with `signal` (its configured stop signal when `None`), killing it
    /// after `timeout`. A signal of its own is sent with a kill, which every API version
    /// has (the stop endpoint takes a signal from API 1.42 on only).
    pub(crate) async fn stop(
        &self,
        container: &str,
        signal: Option<String>,
        timeout: Duration,
    ) -> Result<()> {
        let action = format!("stop container {container}");
        let mut grace = timeout;
        if let Some(signal) = signal {
            let options = KillContainerOptions { signal };
            match self.docker.kill_container(container, Some(options)).await {
                // 409: it was not running.
                Ok(())
                | Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 409, ..
                }) => {}
                Err(e) => return Err(api_error(&self.backend, action, e)),
            }
            let deadline = tokio::time::Instant::now() + timeout;
            while tokio::time::Instant::now() < deadline {
                let running = self
                    .inspect(container)
                    .await?
                    .state
                    .and_then(|s| s.running)
                    .unwrap_or(false);
                if !running {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // It outlived its grace: killed at once below.
            grace = Duration::ZERO;
        }
        // The configured signal and the grace, then SIGKILL.
        let options = StopContainerOptions {
            signal: None,
            t: Some(i32::try_from(grace.as_secs()).unwrap_or(i32::MAX)),
        };
        match self.docker.stop_container(container, Some(options)).await {
            // 304: it was not running.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            other => other.map_err(|e| api_error(&self.backend, action, e)),
        }
    }

    pub(crate) async fn start(&self, container: &str) -> Result<()> {
        self.docker
            .start_container(container, None)
            .await
            .map_err(self.error(format!("start container {container}")))
    }

    pub(crate) async fn restart(&self, container: &str) -> Result<()> {
        self.docker
            .restart_container(container, None)
            .await
            .map_err(self.error(format!("restart container {container}")))
    }

    pub(crate) async fn rename(&self, container: &str, name: &str) -> Result<()> {
        let options = RenameContainerOptions {
            name: name.to_owned(),
        };
        self.docker
            .rename_container(container, options)
            .await
            .map_err(self.error(format!("rename container {container} to {name}")))
    }

    /// Removes `container`; `force` also stops it. Named volumes and anonymous ones stay.
    pub(crate) async fn remove(&self, container: &str, force: bool) -> Result<()> {
        let options = RemoveContainerOptions {
            force,
            ..RemoveContainerOptions::default()
        };
        self.docker
            .remove_container(container, Some(options))
            .await
            .map_err(self.error(format!("remove container {container}")))
    }

    /// Creates container `name`, connects it to `networks`, and returns its id; a container
    /// that cannot be connected is removed again.
    pub(crate) async fn create(
        &self,
        name: &str,
        body: ContainerCreateBody,
        networks: Vec<(String, EndpointSettings)>,
    ) -> Result<String> {
        let options = CreateContainerOptions {
            name: Some(name.to_owned()),
            ..CreateContainerOptions::default()
        };
        let id = self
            .docker
            .create_container(Some(options), body)
            .await
            .map_err(self.error(format!("create container {name}")))?
            .id;
        for (network, endpoint) in networks {
            let request = bollard::models::NetworkConnectRequest {
                container: id.clone(),
                endpoint_config: Some(endpoint),
            };
            if let Err(e) = self.docker.connect_network(&network, request).await {
                let error = api_error(
                    &self.backend,
                    format!("connect container {name} to network {network}"),
                    e,
                );
                let _ = self.remove(&id, true).await;
                return Err(error);
            }
        }
        Ok(id)
    }

    /// Removes image `id` when nothing uses it any more; an image still in use stays.
    pub(crate) async fn remove_image_if_unused(&self, id: &str) -> Result<()> {
        match self
            .docker
            .remove_image(id, None::<RemoveImageOptions>, None)
            .await
        {
            Ok(_)
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(()),
            Err(e) => Err(api_error(&self.backend, format!("remove image {id}"), e)),
        }
    }

    /// Runs `command` with `sh -c` in `container` and returns its exit code; gives up after
    /// `timeout`.
    pub(crate) async fn exec(
        &self,
        container: &str,
        command: &str,
        timeout: Duration,
    ) -> Result<i64> {
        let action = format!("run {command:?} in container {container}");
        let options = CreateExecOptions {
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(vec!["sh", "-c", command]),
            ..CreateExecOptions::default()
        };
        let exec = self
            .docker
            .create_exec(container, options)
            .await
            .map_err(self.error(action.clone()))?
            .id;
        let run = async {
            if let StartExecResults::Attached { mut output, .. } = self
                .docker
                .start_exec(&exec, None)
                .await
                .map_err(self.error(action.clone()))?
            {
                while let Some(chunk) = output.next().await {
                    if let Ok(chunk) = chunk {
                        tracing::debug!(container, output = %chunk, "lifecycle command");
                    }
                }
            }
            self.docker
                .inspect_exec(&exec)
                .await
                .map_err(self.error(action.clone()))
        };
        let inspected =
            tokio::time::timeout(timeout, run)
                .await
                .map_err(|_| Error::Backend {
                    backend: self.backend.clone(),
                    action: action.clone(),
                    message: format!("still running after {}s", timeout.as_secs()),
                    retryable: false,
                    source: None,
                })??;
        Ok(inspected.exit_code.unwrap_or(-1))
    }
}
