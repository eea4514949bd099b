//! Relocation engines, one file per architecture. Each is pure: bytes,
//! addresses and values in, patched bytes or an error out. They never read
//! loader state, so host tests can drive every architecture on any host.

/// Defines a machine's type constants, each with its documentation, and
/// its `defined_name`, so that a type's number and name are written once.
macro_rules! relocation_types {
    ($($(#[$doc:meta])* $name:ident = $value:literal,)*) => {
        $($(#[$doc])* pub(crate) const $name: u32 = $value;)*

        /// The name of a type defined above.
        fn defined_name(r_type: u32) -> Option<&'static str> {
            match r_type {
                $($name => Some(stringify!($name)),)*
                _ => None,
            }
        }
    };
}

pub mod aarch64;
pub mod x86_64;

use core::fmt;

/// `EM_X86_64`.
pub const EM_X86_64: u16 = 62;
/// `EM_AARCH64`.
pub const EM_AARCH64: u16 = 183;

/// The machines whose relocations this loader applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Machine {
    /// x86-64.
    X86_64,
    /// AArch64 (A64 instruction set, little-endian).
    AArch64,
}

impl Machine {
    /// The machine an `e_machine` value names, if this loader supports it.
    pub const fn from_e_machine(e_machine: u16) -> Option<Machine> {
        match e_machine {
            EM_X86_64 => Some(Machine::X86_64),
            EM_AARCH64 => Some(Machine::AArch64),
            _ => None,
        }
    }

    /// `e_machine` for this machine.
    pub const fn e_machine(self) -> u16 {
        match self {
            Machine::X86_64 => EM_X86_64,
            Machine::AArch64 => EM_AARCH64,
        }
    }
}

/// Why a relocation could not be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelocationProblem {
    /// The computed value does not fit the field. It is never truncated.
    Overflow {
        /// The value that did not fit.
        value: i128,
    },
    /// The field lies outside its section.
    OutOfBounds,
    /// The loader does not implement this relocation type.
    Unsupported,
    /// The value breaks an alignment rule of the field.
    Misaligned {
        /// The value.
        value: i128,
    },
    /// The symbol index is outside the symbol table.
    BadSymbol,
    /// The symbol lives in a section that is not loaded (for example `.eh_frame`,
    /// or a COMDAT copy that was discarded).
    TargetNotLoaded,
    /// Planning relaxed this instruction, but another relocation has since
    /// overwritten it: the object's relocations overlap.
    InstructionChanged,
}

impl fmt::Display for RelocationProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RelocationProblem::Overflow { value } => {
                write!(f, "value {} does not fit the field", Signed(*value))
            }
            RelocationProblem::OutOfBounds => f.write_str("field lies outside the section"),
            RelocationProblem::Unsupported => f.write_str("unsupported relocation type"),
            RelocationProblem::Misaligned { value } => {
                write!(f, "value {} is misaligned", Signed(*value))
            }
            RelocationProblem::BadSymbol => f.write_str("symbol index out of range"),
            RelocationProblem::TargetNotLoaded => f.write_str("target section is not loaded"),
            RelocationProblem::InstructionChanged => {
                f.write_str("another relocation overwrote the instruction")
            }
        }
    }
}

impl core::error::Error for RelocationProblem {}

/// Hex with a sign, so a negative displacement reads `-0x10` rather than as
/// 128-bit two's complement.
struct Signed(i128);

impl fmt::Display for Signed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 < 0 {
            write!(f, "-{:#x}", self.0.unsigned_abs())
        } else {
            write!(f, "{:#x}", self.0)
        }
    }
}

/// What a machine's relocation loop asks of the module being linked. The
/// loops live with their engines (`x86_64::apply_section`,
/// `aarch64::apply_section`); the link layer answers from its own tables,
/// which the engines never see.
pub(crate) trait Linking {
    /// What the link layer knows of one symbol.
    type Symbol: Copy;
    /// The loop's error: a problem, with the entry it is about.
    type Error;
    /// The record of symbol `index`, or `None` if the index is bad.
    fn symbol(&self, index: usize) -> Option<Self::Symbol>;
    /// The formula's inputs for `entry` of `symbol` at `place` (Z left 0),
    /// with its stub or veneer, chosen by the machine's key
    /// ([`stub_addend`]), and that stub's slot number; `None` if the symbol
    /// has no address.
    fn inputs(&self, entry: &Rela, symbol: &Self::Symbol, place: u64)
        -> Option<(FixupInputs, u32)>;
    /// Z, the size of `entry`'s symbol, which only a few types read.
    fn symbol_size(&self, entry: &Rela) -> u64;
    /// Whether `symbol` is a weak undefined symbol nothing defines.
    fn is_absent_weak(&self, symbol: &Self::Symbol) -> bool;
    /// Records that a call went through stub `slot`.
    fn used_stub(&mut self, slot: u32);
    /// The error for `entry`.
    fn error(&self, entry: &Rela, problem: RelocationProblem) -> Self::Error;
}

/// What the full engine needs for `entry` of a section placed at `target`:
/// its field's offset, the formula's inputs (Z left 0), the slot of its
/// stub or veneer, and its symbol's record. Or the problem that stops it,
/// checked in this order: a bad symbol index, an offset beyond the address
/// space, a symbol with no address.
#[inline]
pub(crate) fn entry_inputs<L: Linking>(
    link: &L,
    entry: &Rela,
    target: u64,
) -> Result<(usize, FixupInputs, u32, L::Symbol), RelocationProblem> {
    let symbol = link
        .symbol(entry.r_sym())
        .ok_or(RelocationProblem::BadSymbol)?;
    let offset = usize::try_from(entry.r_offset).map_err(|_| RelocationProblem::OutOfBounds)?;
    let place = target.wrapping_add(entry.r_offset);
    let (inputs, stub) = link
        .inputs(entry, &symbol, place)
        .ok_or(RelocationProblem::TargetNotLoaded)?;
    Ok((offset, inputs, stub, symbol))
}

/// For a loop's fast path, in the table of S by symbol: the symbol has no
/// address. The fast path declines its entries, and the full engine, which
/// asks the link layer for the whole record, says why. A symbol whose
/// address happens to be this value (it is not a canonical address) is
/// declined too, and the full engine applies it.
pub(crate) const NO_FAST_ADDRESS: u64 = 1 << 63;

/// Bytes of an `Elf64_Rela` entry.
pub(crate) const RELA_ENTRY: usize = 24;

/// One `Elf64_Rela` entry, decoded: what a machine's relocation loop reads.
/// Decoded again on each pass over a section (see `RelocationSection`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Rela {
    pub r_offset: u64,
    pub r_addend: i64,
    /// The symbol index (`ELF64_R_SYM`, 32 bits): 24 bytes an entry.
    sym: u32,
    /// The type (`ELF64_R_TYPE`).
    pub r_type: u32,
}

impl Rela {
    /// The symbol index.
    pub fn r_sym(&self) -> usize {
        self.sym as usize
    }

    /// Decodes one little-endian `Elf64_Rela` whose symbol table starts at
    /// `symbol_base` of the object's (0 but in a joined one, `Object::join`).
    #[inline]
    pub(crate) fn decode(entry: &[u8; RELA_ENTRY], symbol_base: u32) -> Self {
        let (words, _) = entry.as_chunks::<8>();
        // Three whole words: the lookups are resolved at compile time.
        let word = |at: usize| words.get(at).copied().map_or(0, u64::from_le_bytes);
        let r_info = word(1);
        Self {
            r_offset: word(0),
            r_addend: word(2) as i64,
            // `Object::join` checked that every index of a member is inside
            // its table, so the sum is inside the set's and cannot wrap.
            sym: ((r_info >> 32) as u32).wrapping_add(symbol_base),
            r_type: r_info as u32,
        }
    }
}

/// A raw ELF relocation type number (`ELF64_R_TYPE`), kept as is so errors can
/// name types the loader does not know.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelocationType {
    /// `e_machine` of the object the relocation came from.
    pub machine: u16,
    /// The type number.
    pub raw: u32,
}

impl RelocationType {
    /// The psABI name, such as `R_X86_64_PC32`, or `None` for unknown numbers.
    pub fn name(self) -> Option<&'static str> {
        match self.machine {
            EM_X86_64 => x86_64::name(self.raw),
            EM_AARCH64 => aarch64::name(self.raw),
            _ => None,
        }
    }
}

/// What an overflowing field shows about the code model an object was
/// compiled for: that it assumed every address, or every distance between
/// its code and the data it reaches, fits in 32 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NarrowModel {
    /// A 32-bit absolute address.
    Absolute,
    /// A PC-relative displacement of 32 bits or less.
    Displacement,
}

/// Advice for an object whose code model assumed `$assumption`.
macro_rules! rebuild_advice {
    ($assumption:literal) => {
        concat!(
            "the object was compiled for a code model ",
            $assumption,
            ": compile it with -fPIC, or with -mcmodel=large"
        )
    };
}

impl RelocationType {
    /// The compiler flags that avoid an overflow of this type, if such an
    /// overflow means the object assumed a code model with 32-bit reach.
    pub(crate) fn code_model_advice(self) -> Option<&'static str> {
        use NarrowModel::{Absolute, Displacement};
        let narrow = match self.machine {
            EM_X86_64 => x86_64::narrow_model(self.raw),
            EM_AARCH64 => aarch64::narrow_model(self.raw),
            _ => None,
        }?;
        Some(match (self.machine, narrow) {
            (EM_X86_64, Absolute) => rebuild_advice!(
                "in which every address fits in 32 bits \
                 (gcc's default small model, or -mcmodel=kernel)"
            ),
            (EM_X86_64, Displacement) => rebuild_advice!(
                "that keeps code and data within 2 GiB of each other \
                 (gcc's default small model, or -mcmodel=kernel)"
            ),
            (_, Absolute) => {
                rebuild_advice!("in which every address fits in 32 bits (the default small model)")
            }
            (_, Displacement) => rebuild_advice!(
                "that keeps code and data within 4 GiB of each other \
                 (the default small model, or the tiny one)"
            ),
        })
    }
}

impl fmt::Debug for RelocationType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for RelocationType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "relocation type {} (machine {})", self.raw, self.machine),
        }
    }
}

/// What a relocation type needs from the plan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// A GOT slot holding the symbol's address.
    pub got_slot: bool,
    /// A stub (x86-64) or veneer (AArch64), for a call whose target may be out
    /// of the instruction's reach: ±2 GiB and ±128 MiB.
    pub stub: bool,
    /// `mov foo@GOTPCREL(%rip), %reg` that may be turned into `lea` when the
    /// symbol is in the same module, which saves the slot (x86-64 only).
    pub relaxable: bool,
}

/// What `r_type` of `machine` needs, or `None` if it is not supported.
pub const fn needs(machine: Machine, r_type: u32) -> Option<Needs> {
    match machine {
        Machine::X86_64 => x86_64::needs(r_type),
        Machine::AArch64 => aarch64::needs(r_type),
    }
}

/// The addend part of a stub's key: 0 where one stub serves every call of
/// a symbol, the addend where a stub jumps to symbol plus addend.
pub(crate) fn stub_addend(machine: Machine, addend: i64) -> i64 {
    let takes_addend = match machine {
        Machine::X86_64 => x86_64::STUB_TAKES_ADDEND,
        Machine::AArch64 => aarch64::STUB_TAKES_ADDEND,
    };
    if takes_addend {
        addend
    } else {
        0
    }
}

/// Whether calls to an absolute symbol may need a stub (see each machine's
/// `ABSOLUTE_CALLS_NEED_STUB`).
pub(crate) fn absolute_calls_need_stub(machine: Machine) -> bool {
    match machine {
        Machine::X86_64 => x86_64::ABSOLUTE_CALLS_NEED_STUB,
        Machine::AArch64 => aarch64::ABSOLUTE_CALLS_NEED_STUB,
    }
}

/// Bytes of the field a data relocation of `r_type` writes (each machine's
/// `data_width`).
pub(crate) fn data_width(machine: Machine, r_type: u32) -> usize {
    match machine {
        Machine::X86_64 => x86_64::data_width(r_type),
        Machine::AArch64 => aarch64::data_width(r_type),
    }
}

/// Sizes of a machine's linkage areas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotSizes {
    /// Bytes per GOT slot.
    pub got_slot: u64,
    /// Bytes per stub or veneer.
    pub stub: u64,
    /// Alignment of the stub or veneer area.
    pub stub_align: u64,
    /// Bytes per lazy entry: the code a pending import's GOT slot leads to
    /// until the import is bound.
    pub lazy_entry: u64,
    /// Where a lazy entry's trap instruction sits, from its start.
    pub lazy_trap: u64,
}

impl SlotSizes {
    /// The sizes `machine` uses.
    pub const fn of(machine: Machine) -> Self {
        match machine {
            Machine::X86_64 => SlotSizes {
                got_slot: x86_64::GOT_SLOT_SIZE,
                stub: x86_64::STUB_SIZE,
                stub_align: x86_64::STUB_ALIGN,
                lazy_entry: x86_64::LAZY_ENTRY_SIZE,
                lazy_trap: x86_64::LAZY_ENTRY_TRAP,
            },
            Machine::AArch64 => SlotSizes {
                got_slot: aarch64::GOT_SLOT_SIZE,
                stub: aarch64::VENEER_SIZE,
                stub_align: aarch64::VENEER_ALIGN,
                lazy_entry: aarch64::LAZY_ENTRY_SIZE,
                lazy_trap: aarch64::LAZY_ENTRY_TRAP,
            },
        }
    }
}

/// The values a relocation formula may use, in the psABI's letters. All
/// addresses are *target* addresses: where the code will run, not where its
/// bytes are being patched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FixupInputs {
    /// S: the symbol's address.
    pub symbol: u64,
    /// A: the addend.
    pub addend: i64,
    /// P: the address of the field being patched.
    pub place: u64,
    /// GOT: the address of the module's GOT.
    pub got: u64,
    /// The address of this symbol's GOT slot, when the plan gave it one.
    pub got_slot: Option<u64>,
    /// The address of this symbol's call stub, when the plan gave it one.
    pub stub: Option<u64>,
    /// Z: the symbol's size.
    pub symbol_size: u64,
}

/// How a relocation went: a stub or a relaxation may have been used, which the
/// caller counts to check the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Patched as written.
    Direct,
    /// The target was out of reach, so the call goes through its stub.
    ThroughStub,
}

/// Which value range a field accepts. The check always happens before writing,
/// so a value is either written whole or refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Range {
    Signed,
    Unsigned,
    /// Either reading of the bits is accepted (plain data words).
    Either,
}

/// Writes the low `width` bytes of `value` little-endian at `offset`, after
/// checking that `value` fits `width` bytes read as `range`.
///
/// Address arithmetic is modulo 2^64, as in the processor, so `value` is first
/// reduced to 64 bits: a kernel address such as `0xffff_ffff_8000_0000` is the
/// sign-extended 32-bit value `-0x8000_0000`, which `R_X86_64_32S` accepts.
pub(crate) fn write_field(
    bytes: &mut [u8],
    offset: usize,
    width: usize,
    value: i128,
    range: Range,
) -> Result<(), RelocationProblem> {
    // Fields are 1 to 8 bytes wide; anything else is a caller's mistake.
    let bits = match width {
        1..=8 => (width as u32).wrapping_mul(8),
        _ => return Err(RelocationProblem::OutOfBounds),
    };
    let half = 1i128.wrapping_shl(bits.wrapping_sub(1));
    let word = value as u64;
    let as_signed = i128::from(word as i64);
    let as_unsigned = i128::from(word);
    let signed_fits = (half.wrapping_neg()..half).contains(&as_signed);
    let unsigned_fits = as_unsigned < half.wrapping_mul(2);
    let (fits, reported) = match range {
        Range::Signed => (signed_fits, as_signed),
        Range::Unsigned => (unsigned_fits, as_unsigned),
        Range::Either => (signed_fits || unsigned_fits, as_signed),
    };
    // Where the field is comes first: a field outside its section is
    // malformed input whatever the value.
    let field = offset
        .checked_add(width)
        .and_then(|end| bytes.get_mut(offset..end))
        .ok_or(RelocationProblem::OutOfBounds)?;
    if !fits {
        return Err(RelocationProblem::Overflow { value: reported });
    }
    let encoded = word.to_le_bytes();
    for (destination, source) in field.iter_mut().zip(encoded.iter()) {
        *destination = *source;
    }
    Ok(())
}

/// `write_field(bytes, offset, 4, word, Range::Signed)` for the hot types,
/// in 64-bit arithmetic: the same bounds check first, the same range check
/// (the 64-bit `word` read as signed must fit 32 bits) and the same errors.
#[inline]
pub(crate) fn write_signed32(
    bytes: &mut [u8],
    offset: usize,
    word: u64,
) -> Result<(), RelocationProblem> {
    let field: &mut [u8; 4] = offset
        .checked_add(4)
        .and_then(|end| bytes.get_mut(offset..end))
        .and_then(|field| field.try_into().ok())
        .ok_or(RelocationProblem::OutOfBounds)?;
    let value = word as i64;
    let narrow = i32::try_from(value).map_err(|_| RelocationProblem::Overflow {
        value: i128::from(value),
    })?;
    *field = narrow.to_le_bytes();
    Ok(())
}

/// `write_field(bytes, offset, 8, word, Range::Either)`: every word fits.
#[inline]
pub(crate) fn write_word64(
    bytes: &mut [u8],
    offset: usize,
    word: u64,
) -> Result<(), RelocationProblem> {
    let field: &mut [u8; 8] = offset
        .checked_add(8)
        .and_then(|end| bytes.get_mut(offset..end))
        .and_then(|field| field.try_into().ok())
        .ok_or(RelocationProblem::OutOfBounds)?;
    *field = word.to_le_bytes();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_advice_names_the_code_model_each_machine_assumed() {
        let advice = |machine, raw| RelocationType { machine, raw }.code_model_advice();
        assert_eq!(
            advice(EM_X86_64, x86_64::R_X86_64_PC32),
            Some(
                "the object was compiled for a code model that keeps code and data within \
                 2 GiB of each other (gcc's default small model, or -mcmodel=kernel): \
                 compile it with -fPIC, or with -mcmodel=large"
            )
        );
        assert_eq!(
            advice(EM_X86_64, x86_64::R_X86_64_32S),
            Some(
                "the object was compiled for a code model in which every address fits in \
                 32 bits (gcc's default small model, or -mcmodel=kernel): compile it with \
                 -fPIC, or with -mcmodel=large"
            )
        );
        assert_eq!(
            advice(EM_AARCH64, aarch64::R_AARCH64_ABS32),
            Some(
                "the object was compiled for a code model in which every address fits in \
                 32 bits (the default small model): compile it with -fPIC, or with \
                 -mcmodel=large"
            )
        );
        assert_eq!(
            advice(EM_AARCH64, aarch64::R_AARCH64_ADR_PREL_PG_HI21),
            Some(
                "the object was compiled for a code model that keeps code and data within \
                 4 GiB of each other (the default small model, or the tiny one): compile it \
                 with -fPIC, or with -mcmodel=large"
            )
        );
        // 64-bit fields, and types whose overflow says nothing of the model.
        assert_eq!(advice(EM_X86_64, x86_64::R_X86_64_64), None);
        assert_eq!(advice(EM_X86_64, x86_64::R_X86_64_PLT32), None);
        assert_eq!(advice(EM_AARCH64, aarch64::R_AARCH64_CONDBR19), None);
    }

    #[test]
    fn fast_writers_agree_with_write_field() {
        let words = [
            0u64,
            1,
            0x7fff_ffff,
            0x8000_0000,
            0xffff_ffff,
            0x1_0000_0000,
            0xffff_ffff_8000_0000,
            0xffff_ffff_7fff_ffff,
            u64::MAX,
            0x8000_0000_0000_0000,
        ];
        for word in words {
            for offset in [0usize, 3, 5, 7, 9] {
                let mut slow = [0x5au8; 12];
                let mut fast = slow;
                let expected = write_field(&mut slow, offset, 4, i128::from(word), Range::Signed);
                assert_eq!(write_signed32(&mut fast, offset, word), expected);
                assert_eq!(fast, slow);
                let expected = write_field(&mut slow, offset, 8, i128::from(word), Range::Either);
                assert_eq!(write_word64(&mut fast, offset, word), expected);
                assert_eq!(fast, slow);
            }
        }
    }

    #[test]
    fn fields_are_range_checked_before_writing() {
        let mut bytes = [0xaau8; 4];
        assert_eq!(
            write_field(&mut bytes, 0, 4, 1 << 31, Range::Signed),
            Err(RelocationProblem::Overflow { value: 1 << 31 })
        );
        assert_eq!(bytes, [0xaa; 4], "a refused value writes nothing");
        assert_eq!(write_field(&mut bytes, 0, 4, -1, Range::Signed), Ok(()));
        assert_eq!(bytes, [0xff; 4]);
        assert!(write_field(&mut bytes, 0, 4, -1, Range::Unsigned).is_err());
        assert_eq!(
            write_field(&mut bytes, 0, 4, 0xffff_ffff, Range::Unsigned),
            Ok(())
        );
        assert!(write_field(&mut bytes, 0, 4, 1 << 32, Range::Either).is_err());
        assert!(write_field(&mut bytes, 0, 4, -(1 << 31) - 1, Range::Either).is_err());
        // Modulo 2^64: the top 2 GiB of the address space are small negative numbers.
        assert_eq!(
            write_field(&mut bytes, 0, 4, 0xffff_ffff_8000_0000, Range::Signed),
            Ok(())
        );
        assert_eq!(bytes, [0, 0, 0, 0x80]);
        assert!(write_field(&mut bytes, 0, 4, 0xffff_ffff_7fff_ffff, Range::Signed).is_err());
        assert!(write_field(&mut bytes, 0, 4, 0xffff_ffff_8000_0000, Range::Unsigned).is_err());
        assert_eq!(
            write_field(&mut bytes, 1, 4, 0, Range::Either),
            Err(RelocationProblem::OutOfBounds)
        );
    }
}
