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
//! module running.
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

/// The README's example runs as a doc test too.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

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
pub mod signature;
mod stage;
#[cfg(test)]
mod testing;
mod unbound;

pub use addr::{Alignment, PageSize, VirtAddr};
pub use arch::{Machine, RelocationProblem, RelocationType};
pub use error::{
    Definer, ErrorKind, LoadError, RelocationFailure, SectionProblem, SectionRef, SignatureProblem,
    SymbolProblem, UnloadError,
};
pub use kinds::{Extent, Permissions, SectionKind, Segment, MAX_ALIGNMENT, MAX_MODULE_SIZE};
pub use limits::{Limit, Limits};
pub use loader::{Loader, SymbolResolver};
pub use memory::protection::{MemoryProtection, NoProtection, PageWriter, ProtectionError};
pub use memory::region::{GroupedUsage, PackedUsage, Region, RegionError, RegionUsage};
pub use module::{Module, Refused};
pub use namespace::{ImportStatus, ModuleId, Namespace, UnboundCall, UnboundHook};
pub use object::Object;
pub use plan::Plan;
pub use stage::{Constructors, Finalized, LoadReport, Placed, PlacedPiece, Planned, Relocated};
