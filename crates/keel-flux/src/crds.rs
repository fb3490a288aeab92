//! The CustomResourceDefinitions of Flux's `ImageRepository` and `ImagePolicy`, for clusters
//! (and tests) that do not have Flux's own installed.
//!
//! Their schemas are written from Flux's published API reference (image-reflector-controller,
//! `image.toolkit.fluxcd.io/v1`) for the fields keel-flux reads and writes, with Flux's
//! defaults (`exclusionList: ["^.*\\.sig$"]`, `provider: generic`,
//! `digestReflectionPolicy: Never`, `order: asc`) and validations (duration patterns, enums,
//! the `interval`/`digestReflectionPolicy: Always` rule). Each serves `v1`, the storage
//! version, and `v1beta2` with the same schema and no conversion, and has the `status`
//! subresource. Where Flux is installed, its own CRDs serve the same objects.
//!
//! ```
//! for (name, yaml) in keel_flux::crds::ALL {
//!     assert!(yaml.contains(&format!("name: {name}")));
//!     assert!(yaml.contains("name: v1beta2"));
//! }
//! ```

/// The `imagerepositories.image.toolkit.fluxcd.io` CRD, as YAML.
pub const IMAGE_REPOSITORY_CRD: &str =
    include_str!("../crds/imagerepositories.image.toolkit.fluxcd.io.yaml");

/// The `imagepolicies.image.toolkit.fluxcd.io` CRD, as YAML.
pub const IMAGE_POLICY_CRD: &str =
    include_str!("../crds/imagepolicies.image.toolkit.fluxcd.io.yaml");

/// Both CRDs with their names, in the order to install them.
pub const ALL: [(&str, &str); 2] = [
    (
        "imagerepositories.image.toolkit.fluxcd.io",
        IMAGE_REPOSITORY_CRD,
    ),
    ("imagepolicies.image.toolkit.fluxcd.io", IMAGE_POLICY_CRD),
];
