//! Benchmarks of version selection.
fn main() {}
