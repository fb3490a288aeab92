//! The conformance suite against the in-memory fakes.

use std::sync::Arc;

use keel_core::memory::{InMemoryRegistry, InMemoryTarget};
use keel_core::testkit::{self, RegistryFixture};
use keel_core::{Notifier, Registry, Target};

const REPO: &str = "localhost:5000/keel/conformance";

fn seeded() -> (InMemoryRegistry, RegistryFixture) {
    let fixture = RegistryFixture::standard(REPO);
    let registry = InMemoryRegistry::new("in-memory registry");
    registry.push_tags(REPO, &fixture.tag_strs());
    (registry, fixture)
}

#[tokio::test]
async fn in_memory_registry_conforms() {
    let (registry, fixture) = seeded();
    testkit::registry_conformance(&registry, &fixture).await;
}

#[tokio::test]
async fn in_memory_registry_drives_the_pipeline() {
    let (registry, fixture) = seeded();
    testkit::registry_drives_the_pipeline(Arc::new(registry), &fixture).await;
}

#[tokio::test]
async fn in_memory_target_conforms() {
    let target = InMemoryTarget::new("in-memory target");
    for (id, image, policy) in [
        ("web", "ghcr.io/acme/web:1.2.3", "minor"),
        ("worker", "ghcr.io/acme/worker:2.0.0", "patch"),
    ] {
        target.track(id, image, policy).unwrap();
    }
    testkit::target_conformance(&target).await;
    assert_eq!(
        target.image("web").unwrap().to_string(),
        "ghcr.io/acme/web:1.2.3"
    );
}

#[test]
fn traits_are_dyn_compatible() {
    // Compiles only while every plugin trait can be used as a shared trait object.
    fn shared<T: ?Sized + Send + Sync>(_: Option<Arc<T>>) {}
    shared::<dyn Registry>(None);
    shared::<dyn Target>(None);
    shared::<dyn Notifier>(None);
    shared::<dyn keel_core::Policy>(None);
}
