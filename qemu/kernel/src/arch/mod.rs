//! The architecture layer: console, exit, paging, faults. Each architecture
//! provides the same free functions; the shared kernel calls only those.

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "aarch64")]
pub use aarch64::*;

#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub use self::x86_64::*;

/// What a probe does at its address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Load one byte.
    Read,
    /// Load one byte and store it back.
    Write,
    /// Call the address (`call` on x86-64, `blr` on AArch64).
    Execute,
}

/// A fault caught during a probe.
#[derive(Clone, Copy, Debug)]
pub struct Fault {
    /// What the probe did.
    pub access: Access,
    /// The faulting address (`CR2`, `FAR_EL1`).
    pub address: u64,
    /// The faulting instruction's address (`RIP`, `ELR_EL1`).
    pub pc: u64,
    /// The page-fault error code on x86-64, `ESR_EL1` on AArch64.
    pub syndrome: u64,
}
