//! Image references in YAML manifests: finding them ([`scan`]) and changing them
//! byte-exactly ([`rewrite`]).
//!
//! [`scan`] finds the references a Flux, Keel or kustomize user already marks, so nobody has
//! to change their files:
//!
//! - **Flux setter markers**: a line comment `# {"$imagepolicy": "NS:NAME"}` after a scalar
//!   holding a whole image reference, or `"NS:NAME:name"`, `"NS:NAME:tag"` and
//!   `"NS:NAME:digest"` after scalars holding one part of it (the parts of one name inside one
//!   mapping form one reference, as Helm values write `image: {repository, tag}`);
//! - **Keel workloads**: `Deployment`, `StatefulSet`, `DaemonSet`, `ReplicaSet`, `Pod`, `Job`
//!   and `CronJob` manifests whose annotations or labels carry `keel.sh/policy`, and a line
//!   comment `# keel.sh/policy: minor` after any `image:` value;
//! - **kustomizations**: `images:` entries (`name`, `newName`, `newTag`, `digest`) of
//!   `kustomization.yaml` files whose image the [`RepoConfig`] names, or whose `newTag` or
//!   `digest` carries a Flux marker.
//!
//! It also finds what nothing marks, as [`ReferenceKind::Unmarked`] references without a
//! policy: the whole value of every other `image:` key (workloads of any kind, containers
//! and init containers, Helm values, block or flow style) and every other kustomization
//! `images:` entry. Discovery does not track them; [`Reference::released`] sets them when a
//! caller names the image, as `keel release` does.
//!
//! Each [`Reference`] carries [`Slot`]s: the byte ranges of the scalars that hold it.
//! [`rewrite`] checks that every slot still holds what discovery saw and then changes only the
//! bytes of the tag, digest or name being updated; comments, quoting, indentation, anchors,
//! line endings and everything else stay as they are.
//!
//! Files come from repositories anyone with push access writes to, so reading one is bounded:
//! a file whose aliases (and merge keys) would stand for more than 100,000 nodes in all, such
//! as a "billion laughs" file, or whose alias refers to a collection containing it, is refused
//! while it is parsed and reported like a file that is not YAML. (The target also skips files
//! larger than its size limit, [`DEFAULT_MAX_FILE_SIZE`](crate::DEFAULT_MAX_FILE_SIZE) unless
//! set otherwise.)
//!
//! ```
//! # use keel_git::manifest::{rewrite, scan, RepoConfig};
//! # use keel_core::ImageRef;
//! let before = "image: ghcr.io/org/app:1.2.3 # {\"$imagepolicy\": \"flux-system:app\"}\n";
//! let found = scan("apps/web.yaml", before, &RepoConfig::default());
//! let reference = found.references[0].clone();
//! assert_eq!(reference.id(), "apps/web.yaml#L1:flux-system:app");
//!
//! let new = ImageRef::parse("ghcr.io/org/app:1.3.0").unwrap();
//! let after = rewrite(before, &[(reference, new)]).unwrap();
//! assert_eq!(after, "image: ghcr.io/org/app:1.3.0 # {\"$imagepolicy\": \"flux-system:app\"}\n");
//! ```

use std::fmt;
use std::ops::Range;

use keel_core::{ImageRef, PolicyOptions, PolicySpec};

pub use keel_core::keel_keys::KeelSettings;

mod config;
pub mod edit;
mod rewrite;
mod scan;
mod yaml;

#[cfg(test)]
mod tests;

pub use self::config::{CONFIG_FILE, ImagePolicy, MarkerPolicy, RepoConfig};
pub use self::rewrite::rewrite;
pub use self::scan::{is_manifest_path, scan};

/// What [`scan`] found in one file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scan {
    /// The image references, in the order they appear in the file.
    pub references: Vec<Reference>,
    /// What could not be used: a file that is not YAML, a marker or annotation that does not
    /// make sense, a value that is not an image reference.
    pub warnings: Vec<Warning>,
}

/// Something [`scan`] skipped, and why. Never fatal: the rest of the file is still scanned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The file, relative to the repository root.
    pub file: String,
    /// The line (1-based), when the problem has one.
    pub line: Option<usize>,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file, line, self.reason),
            None => write!(f, "{}: {}", self.file, self.reason),
        }
    }
}

/// One image reference in a manifest: where it is written, what it is now and how it may be
/// updated.
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    /// The file, relative to the repository root (`/`-separated).
    pub file: String,
    /// The line (1-based) of the first slot.
    pub line: usize,
    /// Which form of marking found it.
    pub kind: ReferenceKind,
    /// The reference as written now; for references split over several scalars, assembled
    /// from the parts.
    pub image: ImageRef,
    /// The policy (`minor`, `semver:^1.2`, ...), parsed, if the manifest or the configuration
    /// gives one. A Flux marker the configuration does not know has none; Keel's
    /// `keel.sh/policy: none` is [`PolicySpec::Never`], which is not tracked.
    pub policy: Option<PolicySpec>,
    /// The options of the policy (tag filters, pre-release and match-tag switches).
    pub options: PolicyOptions,
    /// Keel's other settings (trigger and schedule, approvals, notifications...), read by
    /// keel-core's one reader of the `keel.sh/*` keys; defaults for references not found
    /// through Keel annotations or comments.
    pub settings: KeelSettings,
    /// The scalars holding the reference, in file order.
    pub slots: Vec<Slot>,
}

impl Reference {
    /// What this reference becomes when `release` (a repository and its new tag, as in
    /// `keel release --update-image ghcr.io/org/app:1.4.2`) is released: `None` when it
    /// references another repository (`ghcr.io/org/app-sidecar`, or `app` under another
    /// registry). The repository stays as written; the tag becomes `release`'s, and the
    /// digest `release`'s or none: a digest pinned now belongs to the old tag, so it is
    /// dropped. The result may equal [`Reference::image`]: already released.
    ///
    /// ```
    /// # use keel_git::manifest::{scan, RepoConfig};
    /// # use keel_core::ImageRef;
    /// let text = "image: ghcr.io/org/app:1.2.3@sha256:0000000000000000000000000000000000000000000000000000000000000000\n";
    /// let found = scan("values.yaml", text, &RepoConfig::default());
    /// let release = ImageRef::parse("ghcr.io/org/app:1.4.2").unwrap();
    /// let to = found.references[0].released(&release).unwrap();
    /// assert_eq!(to.to_string(), "ghcr.io/org/app:1.4.2");
    /// let other = ImageRef::parse("ghcr.io/org/app-sidecar:1.4.2").unwrap();
    /// assert_eq!(found.references[0].released(&other), None);
    /// ```
    pub fn released(&self, release: &ImageRef) -> Option<ImageRef> {
        if self.image.name() != release.name() {
            return None;
        }
        let tag = release.tag()?.clone();
        let to = self.image.with_tag(tag);
        Some(match release.digest() {
            Some(digest) => to.with_digest(digest.clone()),
            None => to,
        })
    }

    /// A stable id, unique within a repository scan: the file, the line of the first slot and
    /// the container, marker or kustomization image name, e.g. `apps/web.yaml#L12:app` (for
    /// [unmarked](ReferenceKind::Unmarked) references, where the value sits:
    /// `apps/web.yaml#L12:spec.template.spec.containers[0].image`).
    pub fn id(&self) -> String {
        let label = match &self.kind {
            ReferenceKind::FluxMarker { policy_name } => policy_name.as_str(),
            ReferenceKind::KeelWorkload { container, .. } => container.as_str(),
            ReferenceKind::KeelComment => "image",
            ReferenceKind::Kustomization { name } => name.as_str(),
            ReferenceKind::Unmarked { path } => path.as_str(),
        };
        format!("{}#L{}:{}", self.file, self.line, label)
    }
}

/// How a [`Reference`] was marked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReferenceKind {
    /// A Flux setter marker, `# {"$imagepolicy": "NS:NAME[:part]"}`.
    FluxMarker {
        /// The marker's `NS:NAME`, e.g. `flux-system:app`.
        policy_name: String,
    },
    /// A container of a workload whose annotations or labels carry `keel.sh/policy`, or whose
    /// image the configuration's `images` list names.
    KeelWorkload {
        /// `kind/namespace/name`, e.g. `Deployment/default/web` (`default` when the manifest
        /// names no namespace).
        workload: String,
        /// The container's name.
        container: String,
    },
    /// A line comment `# keel.sh/policy: <policy>` after an `image:` value.
    KeelComment,
    /// An `images:` entry of a kustomization.
    Kustomization {
        /// The entry's `name` (the image kustomize replaces).
        name: String,
    },
    /// Found although nothing marks it and the configuration does not name it: the whole
    /// value of any other `image:` key, or a kustomization `images:` entry. It never has a
    /// policy, so discovery does not track it; it is there for callers that name the image
    /// to set, as `keel release` does with [`Reference::released`].
    Unmarked {
        /// Where the value sits in its document, e.g.
        /// `spec.template.spec.containers[0].image` or `images[2]`.
        path: String,
    },
}

/// One scalar holding (part of) a reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// The bytes of the scalar's content, inside any quotes.
    pub range: Range<usize>,
    /// Which part of the reference the scalar holds.
    pub part: Part,
    /// How the scalar is quoted.
    pub style: ScalarStyle,
}

/// Which part of an image reference a [`Slot`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The whole reference, `name[:tag][@digest]`.
    Whole,
    /// The image name (repository) only.
    Name,
    /// The tag only.
    Tag,
    /// The digest only.
    Digest,
    /// A kustomization `images:` entry without `newTag`: the slot is the entry's `newName`
    /// (else `name`) scalar, and a new tag goes after it, on a new `newTag:` line of `indent`
    /// spaces below that scalar's line, or, in a flow mapping (`indent` is `None`), as
    /// `, newTag: X` right after the scalar.
    InsertTag {
        /// The indentation of the entry's keys; `None` for a flow mapping.
        indent: Option<usize>,
    },
}

/// How a scalar is quoted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarStyle {
    /// Not quoted: `1.2.3`.
    Plain,
    /// In single quotes: `'1.2.3'`.
    SingleQuoted,
    /// In double quotes: `"1.2.3"`.
    DoubleQuoted,
}
