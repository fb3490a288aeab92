//! The CustomResourceDefinitions of Flux's `ImageRepository`, `ImagePolicy`,
//! `ImageUpdateAutomation` and `GitRepository`, for clusters (and tests) that do not have
//! Flux's own installed.
//!
//! Their schemas are written from Flux's published API reference (image-reflector-controller
//! and image-automation-controller, `image.toolkit.fluxcd.io/v1`; source-controller,
//! `source.toolkit.fluxcd.io/v1`) for the fields keel-flux reads and writes, with Flux's
//! defaults (`exclusionList: ["^.*\\.sig$"]`, `provider: generic`,
//! `digestReflectionPolicy: Never`, `order: asc`) and validations (duration patterns, enums,
//! the `interval`/`digestReflectionPolicy: Always` rule, `update.strategy: Setters`). The
//! `image.toolkit.fluxcd.io` ones serve `v1`, the storage version, and `v1beta2` with the
//! same schema and no conversion; `GitRepository` serves `v1`. Each has the `status`
//! subresource. Where Flux is installed, its own CRDs serve the same objects.
//!
//! ```
//! for (name, yaml) in keel_flux::crds::ALL {
//!     assert!(yaml.contains(&format!("name: {name}")));
//!     assert!(yaml.contains("name: v1"));
//! }
//! ```

/// The `imagerepositories.image.toolkit.fluxcd.io` CRD, as YAML.
pub const IMAGE_REPOSITORY_CRD: &str =
    include_str!("../crds/imagerepositories.image.toolkit.fluxcd.io.yaml");

/// The `imagepolicies.image.toolkit.fluxcd.io` CRD, as YAML.
pub const IMAGE_POLICY_CRD: &str =
    include_str!("../crds/imagepolicies.image.toolkit.fluxcd.io.yaml");

/// The `imageupdateautomations.image.toolkit.fluxcd.io` CRD, as YAML.
pub const IMAGE_UPDATE_AUTOMATION_CRD: &str =
    include_str!("../crds/imageupdateautomations.image.toolkit.fluxcd.io.yaml");

/// The `gitrepositories.source.toolkit.fluxcd.io` CRD, as YAML.
pub const GIT_REPOSITORY_CRD: &str =
    include_str!("../crds/gitrepositories.source.toolkit.fluxcd.io.yaml");

/// Every CRD with its name, in the order to install them.
pub const ALL: [(&str, &str); 4] = [
    (
        "imagerepositories.image.toolkit.fluxcd.io",
        IMAGE_REPOSITORY_CRD,
    ),
    ("imagepolicies.image.toolkit.fluxcd.io", IMAGE_POLICY_CRD),
    (
        "imageupdateautomations.image.toolkit.fluxcd.io",
        IMAGE_UPDATE_AUTOMATION_CRD,
    ),
    (
        "gitrepositories.source.toolkit.fluxcd.io",
        GIT_REPOSITORY_CRD,
    ),
];
