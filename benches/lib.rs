//! Shared helpers of the keel-rs benchmarks.
