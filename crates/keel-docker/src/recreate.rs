//! The configuration of a recreated container: everything the old container was given,
//! with the parts that came from its old image following the new image, as Watchtower does.
//!
//! Pure functions of what the Engine API reported; the target sends what they return.

use std::collections::{HashMap, HashSet};

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, EndpointSettings, HostConfig, ImageConfig,
    Mount, MountType, NetworkingConfig,
};

/// The create request of a container like `old`, running `image` (the reference to write in
/// its configuration), where `old_image` is the configuration of the image `old` ran (its
/// defaults are dropped from the copy, so that the new image's defaults apply) and
/// `network_mode` overrides the old network mode (a `container:<name>` whose container was
/// recreated).
///
/// Returns the request and the networks to connect after creating it (the Engine API takes
/// one network at creation).
pub(crate) fn create_body(
    old: &ContainerInspectResponse,
    old_image: Option<&ImageConfig>,
    image: &str,
    network_mode: Option<String>,
) -> (ContainerCreateBody, Vec<(String, EndpointSettings)>) {
    let config = old.config.clone().unwrap_or_default();
    let defaults = old_image.cloned().unwrap_or_default();
    let mut host_config = old.host_config.clone().unwrap_or_default();
    if let Some(mode) = network_mode {
        host_config.network_mode = Some(mode);
    }
    keep_anonymous_volumes(old, &mut host_config);
    let shares_network = host_config
        .network_mode
        .as_deref()
        .is_some_and(|m| m.starts_with("container:"));

    let short_id: String = old
        .id
        .as_deref()
        .unwrap_or_default()
        .chars()
        .take(12)
        .collect();
    let hostname = config
        .hostname
        .filter(|h| !(shares_network || h.is_empty() || *h == short_id));
    let (entrypoint, cmd) = if config.entrypoint == defaults.entrypoint {
        let cmd = if config.cmd == defaults.cmd {
            None
        } else {
            config.cmd
        };
        (None, cmd)
    } else {
        (config.entrypoint, config.cmd)
    };
    let (networking, extra) = if shares_network {
        (None, Vec::new())
    } else {
        networks(old, &short_id)
    };

    let body = ContainerCreateBody {
        hostname,
        domainname: config.domainname,
        user: differs(config.user, defaults.user),
        attach_stdin: config.attach_stdin,
        attach_stdout: config.attach_stdout,
        attach_stderr: config.attach_stderr,
        exposed_ports: subtract(config.exposed_ports, defaults.exposed_ports.as_deref()),
        tty: config.tty,
        open_stdin: config.open_stdin,
        stdin_once: config.stdin_once,
        env: subtract(config.env, defaults.env.as_deref()),
        cmd,
        healthcheck: differs(config.healthcheck, defaults.healthcheck),
        args_escaped: None,
        image: Some(image.to_owned()),
        volumes: subtract(config.volumes, defaults.volumes.as_deref()),
        working_dir: differs(config.working_dir, defaults.working_dir),
        entrypoint,
        network_disabled: config.network_disabled,
        on_build: None,
        labels: subtract_map(config.labels, defaults.labels.as_ref()),
        stop_signal: differs(config.stop_signal, defaults.stop_signal),
        stop_timeout: config.stop_timeout,
        shell: differs(config.shell, defaults.shell),
        host_config: Some(host_config),
        networking_config: networking,
    };
    (body, extra)
}

/// `value`, unless it is the image's default.
fn differs<T: PartialEq>(value: Option<T>, default: Option<T>) -> Option<T> {
    if value == default { None } else { value }
}

/// `values` without the image's defaults; `None` when nothing is left.
fn subtract(values: Option<Vec<String>>, defaults: Option<&[String]>) -> Option<Vec<String>> {
    let defaults: HashSet<&String> = defaults.unwrap_or_default().iter().collect();
    let kept: Vec<String> = values
        .unwrap_or_default()
        .into_iter()
        .filter(|v| !defaults.contains(v))
        .collect();
    (!kept.is_empty()).then_some(kept)
}

/// `labels` without the ones the image sets to the same value; `None` when nothing is left.
fn subtract_map(
    labels: Option<HashMap<String, String>>,
    defaults: Option<&HashMap<String, String>>,
) -> Option<HashMap<String, String>> {
    let kept: HashMap<String, String> = labels
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, v)| defaults.and_then(|d| d.get(k)) != Some(v))
        .collect();
    (!kept.is_empty()).then_some(kept)
}

/// Anonymous volumes (an image's `VOLUME`, `docker run -v /data`) belong to the old
/// container only by name: mount them into the new one by that name, so their data stays.
fn keep_anonymous_volumes(old: &ContainerInspectResponse, host_config: &mut HostConfig) {
    let configured: HashSet<String> = host_config
        .binds
        .iter()
        .flatten()
        .filter_map(|b| b.split(':').nth(1).map(str::to_owned))
        .chain(
            host_config
                .mounts
                .iter()
                .flatten()
                .filter_map(|m| m.target.clone()),
        )
        .collect();
    let mut added = Vec::new();
    for mount in old.mounts.iter().flatten() {
        let (Some(kind), Some(name), Some(destination)) =
            (&mount.typ, &mount.name, &mount.destination)
        else {
            continue;
        };
        if kind == "volume" && !configured.contains(destination) {
            added.push(Mount {
                target: Some(destination.clone()),
                source: Some(name.clone()),
                typ: Some(MountType::VOLUME),
                read_only: mount.rw.map(|rw| !rw),
                ..Mount::default()
            });
        }
    }
    if !added.is_empty() {
        host_config
            .mounts
            .get_or_insert_with(Vec::new)
            .extend(added);
    }
}

/// The old container's networks: the first (in name order) for the create request, the
/// rest to connect afterwards. Only what was configured is copied (aliases without the
/// engine's own short-id alias, static addresses, links, driver options); addresses the
/// engine assigned are assigned again.
fn networks(
    old: &ContainerInspectResponse,
    short_id: &str,
) -> (Option<NetworkingConfig>, Vec<(String, EndpointSettings)>) {
    let mut networks: Vec<(String, EndpointSettings)> = old
        .network_settings
        .as_ref()
        .and_then(|s| s.networks.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|(name, endpoint)| {
            let aliases: Vec<String> = endpoint
                .aliases
                .unwrap_or_default()
                .into_iter()
                .filter(|a| a != short_id)
                .collect();
            let settings = EndpointSettings {
                ipam_config: endpoint.ipam_config,
                links: endpoint.links,
                aliases: (!aliases.is_empty()).then_some(aliases),
                driver_opts: endpoint.driver_opts,
                gw_priority: endpoint.gw_priority,
                ..EndpointSettings::default()
            };
            (name, settings)
        })
        .collect();
    networks.sort_by(|a, b| a.0.cmp(&b.0));
    // The network of the network mode goes first: the engine requires it at creation.
    let mode = old
        .host_config
        .as_ref()
        .and_then(|h| h.network_mode.clone())
        .unwrap_or_default();
    if let Some(i) = networks.iter().position(|(name, _)| *name == mode) {
        let first = networks.remove(i);
        networks.insert(0, first);
    }
    let mut rest = networks.into_iter();
    let first = rest.next().map(|(name, settings)| NetworkingConfig {
        endpoints_config: Some(HashMap::from([(name, settings)])),
    });
    (first, rest.collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ContainerConfig, HealthConfig, MountPoint, NetworkSettings};

    fn strings(values: &[&str]) -> Option<Vec<String>> {
        Some(values.iter().map(|v| (*v).to_owned()).collect())
    }

    /// A container of [`old_image`], which the engine reports with the image's user,
    /// command, entrypoint, healthcheck and volumes, and with the image's `PATH` and
    /// version label beside its own.
    fn old_container() -> ContainerInspectResponse {
        let image = old_image();
        ContainerInspectResponse {
            id: Some("0123456789abcdef0123".into()),
            config: Some(ContainerConfig {
                hostname: Some("0123456789ab".into()),
                user: image.user,
                env: strings(&["PATH=/bin", "MODE=prod"]),
                cmd: image.cmd,
                entrypoint: image.entrypoint,
                image: Some("registry.local/app:1.0".into()),
                labels: Some(HashMap::from([
                    ("com.docker.compose.service".into(), "web".into()),
                    ("org.opencontainers.image.version".into(), "1.0".into()),
                ])),
                healthcheck: image.healthcheck,
                volumes: image.volumes,
                working_dir: Some("/srv".into()),
                ..ContainerConfig::default()
            }),
            host_config: Some(HostConfig {
                network_mode: Some("front".into()),
                binds: strings(&["/etc/app:/etc/app:ro"]),
                ..HostConfig::default()
            }),
            mounts: Some(vec![
                MountPoint {
                    typ: Some("bind".into()),
                    source: Some("/etc/app".into()),
                    destination: Some("/etc/app".into()),
                    ..MountPoint::default()
                },
                MountPoint {
                    typ: Some("volume".into()),
                    name: Some("f00d".into()),
                    destination: Some("/data".into()),
                    rw: Some(true),
                    ..MountPoint::default()
                },
            ]),
            network_settings: Some(NetworkSettings {
                networks: Some(HashMap::from([
                    (
                        "back".into(),
                        EndpointSettings {
                            aliases: strings(&["api", "0123456789ab"]),
                            ip_address: Some("10.0.0.7".into()),
                            ..EndpointSettings::default()
                        },
                    ),
                    ("front".into(), EndpointSettings::default()),
                ])),
                ..NetworkSettings::default()
            }),
            ..ContainerInspectResponse::default()
        }
    }

    fn old_image() -> ImageConfig {
        ImageConfig {
            user: Some("nobody".into()),
            env: strings(&["PATH=/bin"]),
            cmd: strings(&["serve"]),
            entrypoint: strings(&["/bin/app"]),
            labels: Some(HashMap::from([(
                "org.opencontainers.image.version".into(),
                "1.0".into(),
            )])),
            healthcheck: Some(HealthConfig {
                test: strings(&["CMD", "true"]),
                ..HealthConfig::default()
            }),
            volumes: strings(&["/data"]),
            working_dir: Some("/".into()),
            ..ImageConfig::default()
        }
    }

    #[test]
    fn what_came_from_the_old_image_follows_the_new_one() {
        let (body, _) = create_body(
            &old_container(),
            Some(&old_image()),
            "registry.local/app:1.1",
            None,
        );
        assert_eq!(body.image.as_deref(), Some("registry.local/app:1.1"));
        assert_eq!(body.env, strings(&["MODE=prod"]));
        assert_eq!((body.entrypoint, body.cmd), (None, None));
        assert_eq!(body.user, None);
        assert_eq!(body.healthcheck, None);
        assert_eq!(body.volumes, None);
        assert_eq!(
            body.hostname, None,
            "the engine's own hostname is not pinned"
        );
        assert_eq!(body.working_dir.as_deref(), Some("/srv"));
        let labels = body.labels.unwrap();
        assert_eq!(labels.len(), 1);
        assert_eq!(labels["com.docker.compose.service"], "web");
    }

    #[test]
    fn a_command_given_on_the_command_line_is_kept() {
        let mut old = old_container();
        old.config.as_mut().unwrap().cmd = strings(&["serve", "--verbose"]);
        let (body, _) = create_body(&old, Some(&old_image()), "app:2", None);
        assert_eq!(body.entrypoint, None);
        assert_eq!(body.cmd, strings(&["serve", "--verbose"]));
        old.config.as_mut().unwrap().entrypoint = strings(&["/bin/other"]);
        let (body, _) = create_body(&old, Some(&old_image()), "app:2", None);
        assert_eq!(body.entrypoint, strings(&["/bin/other"]));
    }

    #[test]
    fn volumes_binds_and_networks_are_kept() {
        let (body, extra) = create_body(&old_container(), Some(&old_image()), "app:2", None);
        let host = body.host_config.unwrap();
        assert_eq!(host.binds, strings(&["/etc/app:/etc/app:ro"]));
        let mounts = host.mounts.unwrap();
        assert_eq!(mounts.len(), 1, "{mounts:?}");
        assert_eq!(mounts[0].source.as_deref(), Some("f00d"));
        assert_eq!(mounts[0].target.as_deref(), Some("/data"));
        assert_eq!(mounts[0].read_only, Some(false));
        let first = body.networking_config.unwrap().endpoints_config.unwrap();
        assert!(
            first.contains_key("front"),
            "the network mode's network first"
        );
        assert_eq!(extra.len(), 1);
        assert_eq!(extra[0].0, "back");
        assert_eq!(extra[0].1.aliases, strings(&["api"]));
        assert_eq!(
            extra[0].1.ip_address, None,
            "assigned addresses are not copied"
        );
    }

    #[test]
    fn a_shared_network_namespace_is_pointed_at_the_new_container() {
        let mut old = old_container();
        old.host_config.as_mut().unwrap().network_mode = Some("container:0ld1d".into());
        let (body, extra) = create_body(
            &old,
            Some(&old_image()),
            "app:2",
            Some("container:db".into()),
        );
        assert_eq!(
            body.host_config.unwrap().network_mode.as_deref(),
            Some("container:db")
        );
        assert_eq!(body.networking_config, None);
        assert_eq!(body.hostname, None);
        assert!(extra.is_empty());
    }

    #[test]
    fn without_the_old_image_everything_is_copied() {
        let (body, _) = create_body(&old_container(), None, "app:2", None);
        assert_eq!(body.env, strings(&["PATH=/bin", "MODE=prod"]));
        assert_eq!(body.entrypoint, strings(&["/bin/app"]));
        assert_eq!(body.cmd, strings(&["serve"]));
    }
}
