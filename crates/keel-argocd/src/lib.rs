//! Argo CD Image Updater for keel-rs: Argo CD `Application`s (`argoproj.io/v1alpha1`)
//! configured by the annotations of Image Updater 0.x or selected by the `ImageUpdater`
//! objects of Image Updater 1.x, updated by the keel-rs [`Pipeline`](keel_core::Pipeline)
//! with the `argocd` or the `git` write-back method.
//!
//! [`ArgoCdTarget`] is a [`keel_core::Target`]: it lists the Applications that carry
//! `argocd-image-updater.argoproj.io/image-list` or that an ImageUpdater selects, reads what
//! each image runs, and lets the
//! keel-core policy engine choose the next version; an update rewrites the Application's Helm
//! parameters or Kustomize images, or commits them to its Git repository, as Image Updater
//! does, and Argo CD syncs it.
//!
//! # The annotations
//!
//! Keys start with `argocd-image-updater.argoproj.io/`; `<alias>` is the image's alias, with
//! `/` written as `_`. [`annotations`] reads them, in one place, into typed values that every
//! write-back reuses.
//!
//! | key | value | keel-rs reading |
//! |---|---|---|
//! | `image-list` | `[<alias>=]<image>[:<constraint>]`, comma-separated | without `<alias>=`, the alias is the last path component of the image name (`ghcr.io/acme/web` → `web`) |
//! | `<alias>.update-strategy` | `semver` (default), `newest-build` (`latest`), `digest`, `alphabetical` (`name`) | `semver:<constraint>` (`semver:*` without), `newest-build`, `digest` following the tag the constraint names, `alphabetical` |
//! | `<alias>.allow-tags` | `regexp:<re>` or `any` | the policy's filter regex |
//! | `<alias>.ignore-tags` | globs, comma-separated | one anchored exclude regex per glob |
//! | `<alias>.force-update` | `true` / `false` | recorded ([`ImageConfig::force_update`](annotations::ImageConfig)) |
//! | `<alias>.platforms` | `os/arch[/variant]`, comma-separated | only tags whose image is built for one of them ([`TrackedImage::platforms`](keel_core::TrackedImage)); a tag whose platforms the registry does not say is not left out |
//! | `<alias>.pull-secret` | `pullsecret:<ns>/<name>`, `secret:<ns>/<name>#<field>`, `env:<VAR>` | registry credentials for that image's repository only ([`PullCredentials`]) |
//! | `<alias>.helm.image-name`, `<alias>.helm.image-tag` | Helm parameter names (default `image.name`, `image.tag`) | set to the image name and to `tag` (`tag@digest` with `digest`) |
//! | `<alias>.helm.image-spec` | one Helm parameter | set to `<image>:<tag>` instead of the two above |
//! | `<alias>.kustomize.image-name` | the image Kustomize overrides (default: the image) | the override is `<that name>=<image>:<tag>` |
//! | `write-back-method` | `argocd` (default), `git`, `git:repocreds`, `git:secret:<ns>/<name>` | the `argocd` or the [`git` write-back](#the-git-write-back) |
//! | `git-branch` | `<branch>`, `<base>:<push>`, `:<push>` | the branch checked out (default `spec.source.targetRevision`, its default branch for `HEAD`) and the branch pushed to, a template ([`git::BranchTemplate`]) |
//! | `write-back-target` | `kustomization[:<dir>]`, `helmvalues[:<file>]` | the file the `git` write-back edits (default `.argocd-source-<app>.yaml`) |
//! | `git-repository` | a repository URL | the repository of the `git` write-back (default `spec.source.repoURL`) |
//!
//! A bad value skips its Application with a [`Problem`](keel_k8s::Problem) naming the
//! Application, the key and the value ([`ArgoCdTarget::problems`]); the others are tracked.
//!
//! # Image Updater 1.x: `ImageUpdater` objects
//!
//! Image Updater 1.x is configured by `ImageUpdater` objects
//! (`argocd-image-updater.argoproj.io/v1alpha1`, [`IMAGE_UPDATER_CRD`]). [`image_updater`]
//! reads one into the same typed values as the annotations ([`ApplicationConfig`]), by handing
//! every image to [`ImageConfig::parse`]:
//!
//! ```text
//! apiVersion: argocd-image-updater.argoproj.io/v1alpha1
//! kind: ImageUpdater
//! metadata: { name: web, namespace: argocd }
//! spec:
//!   commonUpdateSettings: { updateStrategy: semver, ignoreTags: ["*-rc*"] }
//!   writeBackConfig: { method: argocd }
//!   applicationRefs:
//!     - namePattern: "web-*"
//!       images:
//!         - alias: web
//!           imageName: ghcr.io/acme/web:~1.2
//!           manifestTargets: { helm: { name: app.repository, tag: app.version } }
//!     - namePattern: "*"
//!       labelSelectors: { matchLabels: { team: api } }
//!       commonUpdateSettings: { updateStrategy: alphabetical }
//!       images:
//!         - alias: api
//!           imageName: ghcr.io/acme/api
//!           manifestTargets: { kustomize: { name: acme/api } }
//! ```
//!
//! - **Selection**: Applications in the ImageUpdater's own namespace whose name matches the
//!   glob `namePattern` and whose labels match `labelSelectors` (`matchLabels`,
//!   `matchExpressions`). When several rules match, the most specific applies, as Image
//!   Updater scores them: an exact name first, then more literal characters, a label selector
//!   adding to the score; ties go to the rule written first.
//! - **Settings**: each field of `commonUpdateSettings` (`updateStrategy`, `forceUpdate`,
//!   `allowTags`, `ignoreTags`, `pullSecret`, `platforms`) comes from the image, else from its
//!   applicationRef, else from the ImageUpdater, else the default of the annotation with the
//!   same name; values are read as the annotations read them. `manifestTargets.helm`
//!   (`name`, `tag`, `spec`) and `manifestTargets.kustomize.name` are the `helm.image-*` and
//!   `kustomize.image-name` options; `manifestTargets.plugin` is refused. `writeBackConfig
//!   .method` comes from the applicationRef, else the ImageUpdater (read as the annotation),
//!   and `writeBackConfig.gitConfig` (`repository`, `branch`, `writeBackTarget`; the
//!   applicationRef's whole, else the ImageUpdater's) as the annotations `git-repository`,
//!   `git-branch` and `write-back-target`.
//! - **`useAnnotations: true`**: the rule only selects; the Application's own annotations
//!   configure it.
//! - **Annotations and ImageUpdaters**: as in Image Updater 1.x, an Application an
//!   ImageUpdater selects is configured by the ImageUpdater only, its annotations ignored.
//!   Applications no ImageUpdater selects keep the 0.x behaviour: their annotations count. An
//!   Application two ImageUpdaters select is updated by the first by namespace and name; the
//!   other gets a problem.
//! - **Bad values**: one bad field refuses the whole ImageUpdater, none of its Applications
//!   is updated by it, and a [`Problem`](keel_k8s::Problem) of kind `imageupdater` names the
//!   ImageUpdater, the field path and the value (`spec.applicationRefs[0].images[1]
//!   .commonUpdateSettings.updateStrategy = "fastest": expected ...`).
//! - **Status**: after each discovery `observedGeneration`, `applicationsMatched`,
//!   `imagesManaged` and the `Ready` and `Error` conditions; after each applied update
//!   `lastUpdatedAt` and `recentUpdates` (the updates since the last discovery, counted by
//!   alias and version). Written as a merge patch of the status subresource by the field
//!   manager `keel`, only when something changed; `lastCheckedAt` is not written, as it
//!   would change every object at every pass.
//! - ImageUpdaters are read with [`ArgoCdTarget::with_image_updaters`]`(true)`; where the
//!   resource is not served there are none. They are off by default: reading them needs
//!   `list` on `imageupdaters` and `patch` on `imageupdaters/status` in the
//!   `argocd-image-updater.argoproj.io` group, which an installation granted for 0.x lacks.
//!
//! # What runs, and the write-back
//!
//! - The running image of an alias comes from the Application's own parameters when they set
//!   it (Helm: `spec.source.helm.parameters`; Kustomize: `spec.source.kustomize.images`
//!   entries `name=newName:tag`, `name:tag`, `name@digest`), else from the images Argo CD
//!   reports (`status.summary.images`). With neither, the image is not tracked and a problem
//!   says why.
//! - The source is Helm or Kustomize by `spec.source.helm` / `spec.source.kustomize`, else by
//!   `status.sourceType`.
//! - An update patches only those parameters (with `forceString: true`; other parameters and
//!   their order are kept) or that one Kustomize image, guarded by the `resourceVersion` it
//!   read, as field manager `keel`; a concurrent change is re-read and retried, then
//!   reported as a conflict. A plan whose current image no longer runs is a conflict;
//!   applying a plan twice is [`ApplyOutcome::AlreadyCurrent`](keel_core::ApplyOutcome).
//! - Ids are `application/<namespace>/<name>/<alias>`.
//!
//! # The `git` write-back
//!
//! With `write-back-method: git`, an update is a commit to the Application's repository
//! (`spec.source.repoURL`, or `git-repository`), made through keel-git's
//! [`BranchCommit`](keel_git::BranchCommit); the Application itself is not changed.
//!
//! - **Branch**: `spec.source.targetRevision` (the remote's default branch for `HEAD` or
//!   none), unless `git-branch` names one. `git-branch: <base>:<push>` checks out `<base>`
//!   and pushes to `<push>`; when `<push>` exists on the remote the commit goes on top of
//!   it, so nothing is ever force-pushed. `<push>` may be a template with `{{.SHA256}}` (the
//!   SHA-256 of the commit's change lines: not the same digits as Image Updater's, but the
//!   same changes always give the same branch) and `{{range .Images}}...{{end}}` with
//!   `{{.Name}}`, `{{.Alias}}`, `{{.OldTag}}`, `{{.NewTag}}`; anything else is refused with a
//!   problem naming the annotation.
//! - **The file** (`write-back-target`): by default `.argocd-source-<app>.yaml` in
//!   `spec.source.path`, the file Argo CD merges into the source: Helm parameters
//!   (`helm.parameters` entries `name`, `value`, `forcestring: true`) or Kustomize images
//!   (`kustomize.images`: `<image>:<tag>`, `<name>=<image>:<tag>`); created when missing.
//!   `kustomization[:<dir>]` edits the `images:` entry of `<dir>/kustomization.yaml` whose
//!   `name` is the image (`newTag`, `digest`, `newName` when `kustomize.image-name` is set),
//!   as `kustomize edit set image` does. `helmvalues[:<file>]` (default `values.yaml`) sets
//!   the values at the dotted keys of the `helm.image-*` options. Paths are relative to
//!   `spec.source.path`, or to the repository root when they start with `/`; `..` is
//!   refused. Every edit changes only the bytes of the values it sets (or adds the missing
//!   entries in the file's own indentation): comments, quoting, order and other entries
//!   stay, and writing what is there already makes no commit.
//! - **What runs**: the write-back file at the head of the branch (the push branch when it
//!   is named without template and exists, else the checked-out one) is read at every
//!   discovery and again inside the commit, before anything is written: the values it sets
//!   come before the Application's own parameters, as Argo CD renders them, else the
//!   Application is read as above. So a second pass plans nothing, applying a plan twice is
//!   [`ApplyOutcome::AlreadyCurrent`](keel_core::ApplyOutcome) without an empty commit, and
//!   a plan whose current image is not what the file at the new head says is a conflict.
//! - **Pushing**: a push refused because the branch moved starts again from a fresh fetch
//!   (the other commits stay); an edit that fails pushes nothing.
//! - **Credentials**: `git` and `git:repocreds` use Argo CD's repository Secrets (in the
//!   Application's namespace, or [`ArgoCdTarget::with_argocd_namespace`]): the one labelled
//!   `argocd.argoproj.io/secret-type: repository` whose `url` is the repository, else the
//!   `repo-creds` one whose `url` is the longest prefix of it; none, no credentials.
//!   `git:secret:<ns>/<name>` uses that Secret. Fields `username` and `password` for HTTPS;
//!   for an SSH URL (`ssh://`, `git@host:path`), `sshPrivateKey`, offered only to a server
//!   whose host key Argo CD's ConfigMap `argocd-ssh-known-hosts-cm` (`ssh_known_hosts`, in
//!   the same namespace as the repository Secrets) pins, checked before the key is offered;
//!   without that ConfigMap SSH is refused. Credentials go to that repository URL only and
//!   are never shown.
//! - **Commit**: Image Updater's author `argocd-image-updater <noreply@argoproj.io>` and
//!   message `build: automatic update of <app>` with a line `updates image <name> tag
//!   '<old>' to '<new>'`, changed with [`ArgoCdTarget::with_git_author`] and
//!   [`ArgoCdTarget::with_git_message`]. Clones live under
//!   [`ArgoCdTarget::with_git_workdir`].
//! - Reading the Secrets needs `get` on the named Secret, or `list` on Secrets in Argo CD's
//!   namespace for `git` and `git:repocreds`; SSH needs `get` on the ConfigMap
//!   `argocd-ssh-known-hosts-cm` there.
//!
//! Multi-source Applications (`spec.sources` instead of `spec.source`) are not updated by
//! either write-back: which source holds an image's parameters is not known, and a problem
//! says so ([`source::MULTI_SOURCE`]).
//!
//! As kube's own crates do, keel-argocd leaves the Kubernetes version of the API types (a
//! feature of `k8s-openapi`) and kube's TLS backend to the application.
//!
//! ```no_run
//! use std::sync::Arc;
//! use keel_argocd::ArgoCdTarget;
//! use keel_core::Pipeline;
//! use keel_registry::RegistryClient;
//! # async fn demo() -> Result<(), keel_core::Error> {
//! let client = kube::Client::try_default().await.expect("a kubeconfig or in-cluster config");
//! // Annotated Applications, and those the ImageUpdaters of `argocd` select.
//! let target = ArgoCdTarget::new(client)
//!     .with_namespace("argocd")
//!     .with_image_updaters(true);
//! let registry = RegistryClient::builder()
//!     .with_credential_source(Arc::new(target.credentials()))
//!     .build()?;
//! let report = Pipeline::new(Arc::new(registry)).with_target(Arc::new(target)).run_once().await;
//! println!("{} Application image(s) updated", report.applied.len());
//! # Ok(())
//! # }
//! ```

pub mod annotations;
mod credentials;
pub mod git;
pub mod image_updater;
pub mod source;
mod status;
mod target;

pub use annotations::{ApplicationConfig, ImageConfig, UpdateStrategy, WriteBack};
pub use credentials::PullCredentials;
pub use image_updater::{ImageUpdaterSpec, image_updater_resource};
pub use target::{ArgoCdTarget, PROBLEM_KIND, RESOURCE, application_resource};

/// The `applications.argoproj.io` CustomResourceDefinition, for the fields keel-argocd reads
/// and writes, written from Argo CD's API reference (with the status subresource): for test
/// and development clusters without Argo CD.
pub const APPLICATION_CRD: &str = include_str!("../crds/applications.argoproj.io.yaml");

/// The `imageupdaters.argocd-image-updater.argoproj.io` CustomResourceDefinition of Image
/// Updater 1.x, for the fields keel-argocd reads and writes, written from Image Updater's API
/// reference (with the status subresource): for test and development clusters without Image
/// Updater.
pub const IMAGE_UPDATER_CRD: &str =
    include_str!("../crds/imageupdaters.argocd-image-updater.argoproj.io.yaml");
