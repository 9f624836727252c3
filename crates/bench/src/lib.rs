//! Whole-system benchmarks (see README.md). The library holds what the binaries share and what
//! can be tested without a cluster: the statistics ([`stats`]) and reading processes' memory and
//! pod membership from `/proc` ([`procs`]).

pub mod procs;
pub mod stats;
