//! Benchmarks for modload: the shared parts of the criterion benches
//! (`benches/load.rs`) and of `perf-report`, which writes
//! `docs/PERFORMANCE.md`. Run everything with `scripts/bench.sh`.
//!
//! - [`objects`]: the objects, generated and compiled at bench time.
//! - [`host`]: modload on the host, stage by stage.
//! - [`orc`]: LLVM 22's ORC (JITLink and RuntimeDyld) in the same process.
#![deny(
    unsafe_op_in_unsafe_fn,
    missing_docs,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

pub mod host;
pub mod objects;
pub mod orc;
