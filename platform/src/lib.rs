//! Platform backends for modload: they set page permissions and keep the
//! instruction cache coherent when modules are finalized.
//!
//! - [`cache`]: instruction-cache maintenance by address (AArch64 `dc cvau`,
//!   `ic ivau` and barriers; nothing on x86-64).
//! - `host` (feature `host`): Linux user space, through `mmap`/`mprotect`. Host
//!   tests use it to run loaded code for real, with real W^X.
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(
    unsafe_op_in_unsafe_fn,
    missing_docs,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

pub mod cache;
#[cfg(feature = "host")]
pub mod host;
