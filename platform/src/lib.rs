//! Platform backends for modload: they set page permissions and keep the
//! instruction cache coherent when modules are finalized.
//!
//! - [`cache`]: instruction-cache maintenance by address (AArch64 `dc cvau`,
//!   `ic ivau` and barriers; nothing on x86-64).
//! - `host` (feature `host`): Linux user space, through `mmap`/`mprotect`. Host
//!   tests use it to run loaded code for real, with real W^X.
//! - `aarch64` (feature `aarch64`): a kernel's EL1 page tables (4 KiB pages,
//!   39-bit VA) through `aarch64-cpu`, `AP`/`PXN`/`UXN` per page, TLB
//!   invalidation by page, icache maintenance only where mapped.
//! - `x86_64` (feature `x86_64`): a kernel's 4 KiB page tables through the
//!   `x86_64` crate, `NO_EXECUTE` and `WRITABLE` per page.
//! - `gdb_jit` (feature `gdb-jit`): GDB's JIT interface, which tells an
//!   attached GDB where loaded modules' symbols and source lines are.
#![cfg_attr(not(feature = "std"), no_std)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(
    unsafe_op_in_unsafe_fn,
    missing_docs,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

#[cfg(feature = "gdb-jit")]
extern crate alloc;

#[cfg(feature = "aarch64")]
#[cfg_attr(docsrs, doc(cfg(feature = "aarch64")))]
pub mod aarch64;
pub mod cache;
#[cfg(feature = "gdb-jit")]
#[cfg_attr(docsrs, doc(cfg(feature = "gdb-jit")))]
pub mod gdb_jit;
#[cfg(feature = "host")]
#[cfg_attr(docsrs, doc(cfg(feature = "host")))]
pub mod host;
#[cfg(feature = "x86_64")]
#[cfg_attr(docsrs, doc(cfg(feature = "x86_64")))]
pub mod x86_64;
