//! keel-api: the HTTP API of keel-rs (approvals and the audit log).
