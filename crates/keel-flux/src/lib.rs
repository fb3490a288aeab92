//! Flux image automation, done by keel-rs.
//!
//! keel-flux reads the objects of Flux's image automation (`image.toolkit.fluxcd.io`:
//! `ImageRepository`, `ImagePolicy`, `ImageUpdateAutomation`) and does their job with keel-rs's
//! own engine, so that a cluster set up for Flux's image-reflector and image-automation
//! controllers can run keel-rs instead. It chooses what Flux would choose: where keel-rs's own
//! policies are more lenient than Flux (keel-core's `semver:` takes `1.187`, Flux does not),
//! keel-flux applies Flux's rules.
//!
//! This version holds the version selection of an `ImagePolicy`, [`policy::FluxPolicy`]; the
//! reconcilers that watch the objects come later, beside it.
//!
//! ```
//! use keel_flux::policy::{FluxPolicy, ImagePolicyChoice};
//!
//! let choice = ImagePolicyChoice::semver(">=1.0.0 <2.0.0");
//! let policy = FluxPolicy::new(choice, None).unwrap();
//! let latest = policy.latest(["1.2.3", "v1.4.0", "1.187", "2.0.0", "latest"]).unwrap();
//! assert_eq!(latest.as_deref(), Some("v1.4.0"));
//! ```
//!
//! # From Flux's fields to keel-rs
//!
//! | Flux (`ImagePolicy`, v1beta2 and v1) | keel-rs |
//! |---|---|
//! | `spec.policy.semver.range` | [`policy::SemVerPolicy::range`], parsed as a [`keel_core::version::VersionRange`]; tags admitted only when strict semver (see [`policy`]) |
//! | `spec.policy.alphabetical.order` | [`policy::AlphabeticalPolicy::order`], a [`keel_core::policy::SortOrder`]; byte-wise order |
//! | `spec.policy.numerical.order` | [`policy::NumericalPolicy::order`], a [`keel_core::policy::SortOrder`]; tags read as Go `strconv.ParseFloat` reads them |
//! | `spec.filterTags.pattern` | [`policy::TagFilter::pattern`], a `regex` crate regex (RE2 syntax, unanchored) |
//! | `spec.filterTags.extract` | [`policy::TagFilter::extract`], a template expanded on the match (`$1`, `$name`, `${name}`) |
//! | `status.latestRef.tag` (v1; the tag of `status.latestImage` in v1beta2) | [`policy::FluxPolicy::latest`], or the tag of the [`keel_core::Decision`] that [`keel_core::Policy::select`] returns |
//! | an invalid spec (`Ready=False`, reason `InvalidPolicy`) | [`keel_core::Error::InvalidInput`] from [`policy::FluxPolicy::new`], naming the field |
//!
//! Where keel-flux deliberately differs from Flux (ties between equal versions) and where it
//! cannot match it exactly (a few corners of Masterminds' range grammar) is listed in the
//! [`policy`] module.

pub mod policy;

pub use policy::FluxPolicy;
