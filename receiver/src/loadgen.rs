//! Remote-write load generation for benchmarks.
