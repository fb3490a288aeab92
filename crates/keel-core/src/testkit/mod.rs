//! The conformance suite: public async test functions that every
//! [`Registry`](crate::registry::Registry), [`Target`](crate::target::Target) and
//! [`ApprovalStore`](crate::approval::ApprovalStore) implementation's tests call, against the
//! in-memory fakes and against real services.
//!
//! Each function panics with a message naming the broken contract, like an `assert!`.
//!
//! ```
//! use keel_core::memory::InMemoryRegistry;
//! use keel_core::testkit::{self, RegistryFixture};
//!
//! # futures::executor::block_on(async {
//! let fixture = RegistryFixture::standard("localhost:5000/keel/conformance");
//! let registry = InMemoryRegistry::new("in-memory registry");
//! registry.push_tags("localhost:5000/keel/conformance", &fixture.tag_strs());
//! testkit::registry_conformance(&registry, &fixture).await;
//! # });
//! ```

mod approval_store;
mod registry;
mod target;

pub use self::approval_store::*;
pub use self::registry::*;
pub use self::target::*;
