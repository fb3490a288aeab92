//! A client of no server, for unit tests that build targets and listings without a cluster.

use kube::{Client, Config};

/// The address [`unreachable_client`] talks to: port 1 (tcpmux) is privileged and served by
/// nothing on a test machine, so every connection is refused at once instead of hanging.
const UNREACHABLE_URL: &str = "http://127.0.0.1:1";

/// A [`Client`] of a server that refuses every connection: building a target or a watcher with
/// it reaches no cluster, and any request it sends fails as a connection error, which is
/// retryable. Call it inside a Tokio runtime (e.g. a `#[tokio::test]`), as [`Client`] needs.
pub fn unreachable_client() -> Client {
    let config = Config::new(UNREACHABLE_URL.parse().expect("a URL"));
    Client::try_from(config).expect("a client of 127.0.0.1:1")
}
