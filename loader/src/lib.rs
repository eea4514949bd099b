//! modload: load relocatable ELF modules into a running kernel, one at a time.
//!
//! The pipeline is a chain of types, so it cannot run out of order:
//! [`Object::parse`] → [`Loader::plan`] ([`Planned`], exact sizes, nothing
//! allocated) → [`Planned::allocate`] ([`Placed`], may be mapped to other target
//! addresses) → [`Placed::relocate`] ([`Relocated`]) → [`Relocated::finalize`]
//! ([`Finalized`], W^X permissions) → [`Finalized::start`] ([`Module`]).
//!
//! Memory comes from a [`Region`] and symbols live in a [`Namespace`]; both can
//! be `static`s, apart from any [`Loader`], so dropping a loader leaves every
//! module running. [`Loader::load`] takes all the stages in one call, and
//! [`Module::get`] finds a function to call.
//!
//! Page permissions and cache maintenance come from the platform, through
//! [`MemoryProtection`]. The companion crate
//! [`modload-platform`](https://docs.rs/modload-platform) implements it: for
//! a Linux program (feature `host`: `host::map_region`,
//! `host::HOST_PROTECTION`), and for a kernel's page tables on x86-64
//! (feature `x86_64`) and AArch64 (feature `aarch64`); its
//! `cache::sync_instruction_cache` serves a backend of your own.
//! [`NoProtection`] links modules for another address or machine, as below.
//!
//! The repository's README says how to build modules (compiler flags per
//! architecture and code model), what a `no_std` kernel must provide (an
//! allocator, heap per load, which calls take locks), and has runnable
//! examples: a host program and a minimal kernel per architecture.
//!
//! ```
//! use modload::{Loader, Namespace, NoProtection, Object, Region, VirtAddr};
//!
//! static REGION: Region = Region::new();
//! static NAMESPACE: Namespace = Namespace::new();
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Give the region memory (a kernel would use a linker-script reservation).
//! let memory = Box::leak(vec![0u8; 64 * 4096].into_boxed_slice());
//! let start = memory.as_mut_ptr().wrapping_add(memory.as_ptr().align_offset(4096));
//! // SAFETY: the leaked buffer lives forever and only the region uses it.
//! unsafe { REGION.init(start, 32 * 4096)? };
//! NAMESPACE.add_host_export("kernel_print", VirtAddr::new(0x1000)).ok();
//!
//! let loader = Loader::new(&NAMESPACE, &REGION, &NoProtection);
//! let bytes = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/example.o"));
//! let planned = loader.plan(Object::parse("example.o", bytes)?)?;
//! // The plan is exact and known before anything is allocated.
//! assert_eq!(planned.plan().kind(modload::SectionKind::Text).size, 11);
//! assert_eq!(planned.plan().got_slots(), 0);
//!
//! let mut placed = planned.allocate()?;
//! // Link for another address: the bytes stay here, the code will run there.
//! placed.map_module(VirtAddr::new(0xffff_ffff_c000_0000))?;
//! let relocated = placed.relocate()?;
//! // movabs $kernel_print, %rax: the immediate now holds the export's address.
//! assert_eq!(relocated.bytes()[2..10], 0x1000u64.to_le_bytes());
//! assert_eq!(relocated.report().relocations_applied, 1);
//! # Ok(())
//! # }
//! ```
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(unsafe_op_in_unsafe_fn, missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic,
        clippy::arithmetic_side_effects
    )
)]

extern crate alloc;

mod addr;
mod arch;
mod call;
mod error;
mod kinds;
mod limits;
mod link;
mod loader;
mod memory;
mod module;
mod names;
mod namespace;
mod object;
mod plan;
#[cfg(feature = "signature")]
#[cfg_attr(docsrs, doc(cfg(feature = "signature")))]
pub mod signature;
mod stage;
#[cfg(test)]
mod testing;
mod unbound;

pub use addr::{Alignment, PageSize, VirtAddr};
pub use arch::{Machine, RelocationProblem, RelocationType};
pub use error::{
    DebugObjectError, Definer, DuplicateExport, ErrorKind, LoadError, RelocationFailure,
    SectionProblem, SectionRef, SignatureProblem, SymbolProblem, UnloadError,
};
pub use kinds::{Extent, Permissions, SectionKind, Segment, MAX_ALIGNMENT, MAX_MODULE_SIZE};
pub use limits::{Limit, Limits};
pub use loader::{Loader, SymbolResolver};
pub use memory::protection::{MemoryProtection, NoProtection, PageWriter, ProtectionError};
pub use memory::region::Region;
pub use memory::usage::{GroupedUsage, PackedUsage, RegionError, RegionUsage};
pub use module::{Module, Refused, Symbol};
pub use namespace::{
    ImportStatus, LocatedSymbol, Location, ModuleId, ModuleSymbol, Namespace, UnboundCall,
    UnboundHook, UnloadHook,
};
pub use object::Object;
pub use plan::Plan;
pub use stage::{Constructors, Finalized, LoadReport, Placed, PlacedPiece, Planned, Relocated};
