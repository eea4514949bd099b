//! What the comparison needs from an architecture, whichever it is: how each
//! relocation reaches its target and how to read back what a linker wrote.

use super::{aarch64, x86_64};

/// `EM_X86_64`.
pub const EM_X86_64: u16 = 62;
/// `EM_AARCH64`.
pub const EM_AARCH64: u16 = 183;

/// How a relocation reaches its target. Two linkers may lay out GOTs, stubs
/// and thunks differently, so only `Direct` fields are compared byte for byte;
/// the others are compared by where they lead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Linkage {
    /// The field's value depends only on S, A and P: the bytes must match.
    Direct,
    /// A call or branch, direct or through a stub, veneer or thunk.
    Call,
    /// The field holds slot + A - P (x86-64 GOTPCREL family, 4 or 8 bytes).
    /// `relaxable`: modload may have turned the `mov` into `lea` of S.
    GotPcRelative {
        /// The instruction may be relaxed.
        relaxable: bool,
    },
    /// The field holds slot - GOT + A (GOT32, GOT64, GOTPLT64).
    GotSlotOffset,
    /// The field holds S + A - GOT (GOTOFF64, PLTOFF64, GOTREL64/32).
    GotRelative,
    /// The field holds GOT + A - P (GOTPC32, GOTPC64).
    GotPc,
    /// ADRP of Page(GOT + A) - Page(P): an ADR_PREL_PG_HI21 against
    /// `_GLOBAL_OFFSET_TABLE_` (AArch64).
    GotBasePage,
    /// ADD of (GOT + A) & 0xfff: an ADD_ABS_LO12_NC against
    /// `_GLOBAL_OFFSET_TABLE_` (AArch64).
    GotBaseLow12,
    /// ADRP of Page(slot + A) (AArch64 ADR_GOT_PAGE).
    GotPage,
    /// LDR of (slot + A) & 0xfff (AArch64 LD64_GOT_LO12_NC).
    GotLow12,
    /// LDR of slot + A - Page(GOT) (AArch64 LD64_GOTPAGE_LO15).
    GotPageLow15,
    /// Load-literal of slot + A - P (AArch64 GOT_LD_PREL19).
    GotLiteral,
}

/// A machine the oracle understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// x86-64.
    X86_64,
    /// AArch64.
    AArch64,
}

impl Arch {
    /// The architecture of `e_machine`, if supported.
    pub fn from_machine(machine: u16) -> Option<Arch> {
        match machine {
            EM_X86_64 => Some(Arch::X86_64),
            EM_AARCH64 => Some(Arch::AArch64),
            _ => None,
        }
    }

    /// Relocation types lld does not implement, each with the type it does
    /// implement that has the same formula: lld gets a copy of the objects
    /// with these replaced; the comparison still reads the original types.
    pub fn lld_substitutes(self) -> &'static [(u32, u32)] {
        match self {
            // GOTPLT64 is G + A like GOT64; without lazy binding they are one.
            // GOTPCREL64 is G + GOT + A - P like GOTPCREL, which writes only
            // the low half of the 8-byte field. The high half is zero in the
            // object, which is right while the value is positive: lld's GOT
            // goes above the modules unless a case says otherwise, and a
            // wrong high half shows as a mismatch, never as a match.
            Arch::X86_64 => &[
                (x86_64::R_X86_64_GOTPLT64, x86_64::R_X86_64_GOT64),
                (x86_64::R_X86_64_GOTPCREL64, x86_64::R_X86_64_GOTPCREL),
            ],
            Arch::AArch64 => &[],
        }
    }

    /// A readable name for `r_type`.
    pub fn type_name(self, r_type: u32) -> String {
        let known = match self {
            Arch::X86_64 => x86_64::name(r_type),
            Arch::AArch64 => aarch64::name(r_type),
        };
        known.map_or_else(|| format!("relocation type {r_type}"), str::to_owned)
    }

    /// How `r_type` reaches its target.
    pub fn linkage(self, r_type: u32) -> Linkage {
        match self {
            Arch::X86_64 => x86_64::linkage(r_type),
            Arch::AArch64 => aarch64::linkage(r_type),
        }
    }

    /// How a relocation of `r_type` against `_GLOBAL_OFFSET_TABLE_` reaches
    /// it. Each linker gives that symbol its own GOT's address, so such
    /// fields differ and are checked against each output's GOT. `None` for
    /// types the oracle has no rule for.
    pub fn got_symbol_linkage(self, r_type: u32) -> Option<Linkage> {
        match (self, r_type) {
            // R_X86_64_PC32 and PC64: GOT + A - P, like GOTPC32/64.
            (Arch::X86_64, 2 | 24) => Some(Linkage::GotPc),
            (Arch::X86_64, _) => match x86_64::linkage(r_type) {
                Linkage::Direct => None,
                other => Some(other),
            },
            // ADR_PREL_PG_HI21 (checked or not) and ADD_ABS_LO12_NC.
            (Arch::AArch64, 275 | 276) => Some(Linkage::GotBasePage),
            (Arch::AArch64, 277) => Some(Linkage::GotBaseLow12),
            (Arch::AArch64, _) => match aarch64::linkage(r_type) {
                Linkage::Direct => None,
                other => Some(other),
            },
        }
    }

    /// The bytes a linker may write for `r_type`, as `(start, len)` relative
    /// to the relocation's offset.
    pub fn touched(self, r_type: u32) -> (i64, usize) {
        match self {
            Arch::X86_64 => x86_64::touched(r_type),
            Arch::AArch64 => aarch64::touched(r_type),
        }
    }

    /// The value a linker encoded for `r_type` in the bytes at the
    /// relocation's offset, in the units of the relocation's formula
    /// (bytes, not words or pages).
    pub fn field(self, r_type: u32, bytes: &[u8]) -> Option<i64> {
        match self {
            Arch::X86_64 => x86_64::field(r_type, bytes),
            Arch::AArch64 => aarch64::field(r_type, bytes),
        }
    }

    /// Where a call with field value `value` at `place` goes. On x86-64 the
    /// addend is part of the displacement and the result is S (or a stub);
    /// on AArch64 the branch lands on S + A (or a veneer that jumps there).
    pub fn call_destination(self, place: u64, value: i64, addend: i64) -> u64 {
        match self {
            Arch::X86_64 => x86_64::call_destination(place, value, addend),
            Arch::AArch64 => place.wrapping_add_signed(value),
        }
    }

    /// Bytes of one modload stub or veneer.
    pub fn stub_size(self) -> u64 {
        match self {
            Arch::X86_64 => x86_64::STUB_SIZE,
            Arch::AArch64 => aarch64::VENEER_SIZE,
        }
    }

    /// The target of a modload stub or veneer at the start of `bytes`.
    pub fn stub_target(self, bytes: &[u8]) -> Option<u64> {
        match self {
            Arch::X86_64 => x86_64::stub_target(bytes),
            Arch::AArch64 => aarch64::veneer_target(bytes),
        }
    }

    /// The target of a linker-made range-extension thunk at `address` (lld
    /// makes them on AArch64 only), or `None` if `bytes` is not one.
    pub fn thunk_target(self, bytes: &[u8], address: u64) -> Option<u64> {
        match self {
            Arch::X86_64 => None,
            Arch::AArch64 => aarch64::thunk_target(bytes, address),
        }
    }
}
