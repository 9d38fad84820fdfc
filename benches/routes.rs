//! Benchmarks of the compile step and route lookup.

fn main() {}
