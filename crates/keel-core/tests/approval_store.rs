//! The approval store contract, on every store of keel-core.

use std::sync::Arc;

use keel_core::approval::MemoryApprovalStore;
use keel_core::testkit;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_passes_the_conformance_suite() {
    testkit::approval_store_conformance(Arc::new(MemoryApprovalStore::new())).await;
}

#[tokio::test]
async fn memory_store_passes_on_one_thread_too() {
    testkit::approval_store_conformance(Arc::new(MemoryApprovalStore::named("one thread"))).await;
}

#[cfg(feature = "redb")]
mod redb {
    use std::sync::Arc;

    use keel_core::approval::RedbApprovalStore;
    use keel_core::testkit;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn redb_store_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbApprovalStore::open(dir.path().join("approvals.redb")).unwrap();
        testkit::approval_store_conformance(Arc::new(store)).await;
    }

    #[test]
    fn a_second_open_of_the_same_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("approvals.redb");
        let _first = RedbApprovalStore::open(&path).unwrap();
        let second = RedbApprovalStore::open(&path).unwrap_err();
        let msg = second.to_string();
        assert!(msg.contains("approvals.redb"), "{msg}");
        assert!(msg.contains("open the database"), "{msg}");
    }

    #[test]
    fn a_missing_directory_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let e = RedbApprovalStore::open(dir.path().join("no/such/dir/a.redb")).unwrap_err();
        assert!(matches!(e, keel_core::Error::Backend { .. }), "{e:?}");
    }
}
