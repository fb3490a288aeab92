//! What the reflector and automation tests share: a namespace with Flux's CRDs and the
//! times of the passes.

use chrono::{DateTime, Utc};
use keel_testsupport::kube::flux::flux_namespace;
use kube::Client;

/// A fresh namespace with Flux's CRDs installed, and an admin client.
pub(crate) async fn namespace(prefix: &str) -> Option<(String, Client)> {
    let (_, namespace, client) = flux_namespace(prefix, &keel_flux::crds::ALL).await?;
    Some((namespace, client))
}

/// A time of a pass, in RFC 3339.
pub(crate) fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("a test time")
        .with_timezone(&Utc)
}
