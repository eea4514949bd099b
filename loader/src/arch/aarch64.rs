//! AArch64 relocations (ELF for the Arm 64-bit Architecture, AAELF64, §5.7).
//!
//! Every function here is pure: the instruction or data word comes in as bytes,
//! and either the patched word is written back or an error says which rule the
//! value broke. Nothing is written when a check fails.

// The formulas below add and subtract the psABI's S, A, P and GOT, each a
// 64-bit value widened to `i128`: sums and differences of four of them stay
// below 2^67 in magnitude, so they cannot overflow, and keeping them as plain
// `+`/`-` lets them read like the ABI's tables. Shifts, masks and group
// numbers are derived from constants in this file. Every result is
// range-checked before a field is written.
#![allow(clippy::arithmetic_side_effects)]

use super::{
    entry_inputs, write_field, Applied, FixupInputs, Linking, NarrowModel, Needs, Range, Rela,
    RELA_ENTRY,
};
use crate::arch::RelocationProblem;

relocation_types! {
    /// `R_AARCH64_NONE`.
    R_AARCH64_NONE = 0,
    /// `R_AARCH64_ABS64`: S + A, 64 bits.
    R_AARCH64_ABS64 = 257,
    /// `R_AARCH64_ABS32`: S + A, 32 bits, signed or unsigned.
    R_AARCH64_ABS32 = 258,
    /// `R_AARCH64_ABS16`: S + A, 16 bits, signed or unsigned.
    R_AARCH64_ABS16 = 259,
    /// `R_AARCH64_PREL64`: S + A - P, 64 bits.
    R_AARCH64_PREL64 = 260,
    /// `R_AARCH64_PREL32`: S + A - P, 32 bits.
    R_AARCH64_PREL32 = 261,
    /// `R_AARCH64_PREL16`: S + A - P, 16 bits.
    R_AARCH64_PREL16 = 262,
    /// `R_AARCH64_MOVW_UABS_G0`: bits 0-15 of S + A in a MOVZ/MOVK, checked.
    R_AARCH64_MOVW_UABS_G0 = 263,
    /// `R_AARCH64_MOVW_UABS_G0_NC`: bits 0-15 of S + A, unchecked.
    R_AARCH64_MOVW_UABS_G0_NC = 264,
    /// `R_AARCH64_MOVW_UABS_G1`: bits 16-31 of S + A, checked.
    R_AARCH64_MOVW_UABS_G1 = 265,
    /// `R_AARCH64_MOVW_UABS_G1_NC`: bits 16-31 of S + A, unchecked.
    R_AARCH64_MOVW_UABS_G1_NC = 266,
    /// `R_AARCH64_MOVW_UABS_G2`: bits 32-47 of S + A, checked.
    R_AARCH64_MOVW_UABS_G2 = 267,
    /// `R_AARCH64_MOVW_UABS_G2_NC`: bits 32-47 of S + A, unchecked.
    R_AARCH64_MOVW_UABS_G2_NC = 268,
    /// `R_AARCH64_MOVW_UABS_G3`: bits 48-63 of S + A.
    R_AARCH64_MOVW_UABS_G3 = 269,
    /// `R_AARCH64_MOVW_SABS_G0`: signed bits 0-15 of S + A; MOVN or MOVZ by sign.
    R_AARCH64_MOVW_SABS_G0 = 270,
    /// `R_AARCH64_MOVW_SABS_G1`: signed bits 16-31 of S + A.
    R_AARCH64_MOVW_SABS_G1 = 271,
    /// `R_AARCH64_MOVW_SABS_G2`: signed bits 32-47 of S + A.
    R_AARCH64_MOVW_SABS_G2 = 272,
    /// `R_AARCH64_LD_PREL_LO19`: S + A - P in a load-literal, ±1 MiB.
    R_AARCH64_LD_PREL_LO19 = 273,
    /// `R_AARCH64_ADR_PREL_LO21`: S + A - P in an ADR, ±1 MiB.
    R_AARCH64_ADR_PREL_LO21 = 274,
    /// `R_AARCH64_ADR_PREL_PG_HI21`: Page(S + A) - Page(P) in an ADRP, ±4 GiB.
    R_AARCH64_ADR_PREL_PG_HI21 = 275,
    /// `R_AARCH64_ADR_PREL_PG_HI21_NC`: the same, unchecked.
    R_AARCH64_ADR_PREL_PG_HI21_NC = 276,
    /// `R_AARCH64_ADD_ABS_LO12_NC`: bits 0-11 of S + A in an ADD.
    R_AARCH64_ADD_ABS_LO12_NC = 277,
    /// `R_AARCH64_LDST8_ABS_LO12_NC`: bits 0-11 of S + A in a byte load or store.
    R_AARCH64_LDST8_ABS_LO12_NC = 278,
    /// `R_AARCH64_TSTBR14`: S + A - P in a TBZ/TBNZ, ±32 KiB.
    R_AARCH64_TSTBR14 = 279,
    /// `R_AARCH64_CONDBR19`: S + A - P in a B.cond/CBZ/CBNZ, ±1 MiB.
    R_AARCH64_CONDBR19 = 280,
    /// `R_AARCH64_JUMP26`: S + A - P in a B, ±128 MiB (or through a veneer).
    R_AARCH64_JUMP26 = 282,
    /// `R_AARCH64_CALL26`: S + A - P in a BL, ±128 MiB (or through a veneer).
    R_AARCH64_CALL26 = 283,
    /// `R_AARCH64_LDST16_ABS_LO12_NC`: bits 1-11 of S + A, 2-byte aligned.
    R_AARCH64_LDST16_ABS_LO12_NC = 284,
    /// `R_AARCH64_LDST32_ABS_LO12_NC`: bits 2-11 of S + A, 4-byte aligned.
    R_AARCH64_LDST32_ABS_LO12_NC = 285,
    /// `R_AARCH64_LDST64_ABS_LO12_NC`: bits 3-11 of S + A, 8-byte aligned.
    R_AARCH64_LDST64_ABS_LO12_NC = 286,
    /// `R_AARCH64_MOVW_PREL_G0`: signed bits 0-15 of S + A - P, checked.
    R_AARCH64_MOVW_PREL_G0 = 287,
    /// `R_AARCH64_MOVW_PREL_G0_NC`: bits 0-15 of S + A - P, unchecked.
    R_AARCH64_MOVW_PREL_G0_NC = 288,
    /// `R_AARCH64_MOVW_PREL_G1`: signed bits 16-31 of S + A - P, checked.
    R_AARCH64_MOVW_PREL_G1 = 289,
    /// `R_AARCH64_MOVW_PREL_G1_NC`: bits 16-31 of S + A - P, unchecked.
    R_AARCH64_MOVW_PREL_G1_NC = 290,
    /// `R_AARCH64_MOVW_PREL_G2`: signed bits 32-47 of S + A - P, checked.
    R_AARCH64_MOVW_PREL_G2 = 291,
    /// `R_AARCH64_MOVW_PREL_G2_NC`: bits 32-47 of S + A - P, unchecked.
    R_AARCH64_MOVW_PREL_G2_NC = 292,
    /// `R_AARCH64_MOVW_PREL_G3`: bits 48-63 of S + A - P.
    R_AARCH64_MOVW_PREL_G3 = 293,
    /// `R_AARCH64_LDST128_ABS_LO12_NC`: bits 4-11 of S + A, 16-byte aligned.
    R_AARCH64_LDST128_ABS_LO12_NC = 299,
    /// `R_AARCH64_GOTREL64`: S + A - GOT, 64 bits.
    R_AARCH64_GOTREL64 = 307,
    /// `R_AARCH64_GOTREL32`: S + A - GOT, 32 bits.
    R_AARCH64_GOTREL32 = 308,
    /// `R_AARCH64_GOT_LD_PREL19`: G(GDAT(S)) + A - P in a load-literal, ±1 MiB.
    R_AARCH64_GOT_LD_PREL19 = 309,
    /// `R_AARCH64_ADR_GOT_PAGE`: Page(G(GDAT(S)) + A) - Page(P) in an ADRP.
    R_AARCH64_ADR_GOT_PAGE = 311,
    /// `R_AARCH64_LD64_GOT_LO12_NC`: bits 3-11 of G(GDAT(S)) + A in an LDR.
    R_AARCH64_LD64_GOT_LO12_NC = 312,
    /// `R_AARCH64_LD64_GOTPAGE_LO15`: G(GDAT(S)) + A - Page(GOT) in an LDR, 0..32 KiB.
    R_AARCH64_LD64_GOTPAGE_LO15 = 313,
}

/// `R_AARCH64_NONE` as some older tools number it (withdrawn `R_AARCH64_NULL`).
pub(crate) const R_AARCH64_NONE_OLD: u32 = 256;

/// Bytes in a GOT slot.
pub(crate) const GOT_SLOT_SIZE: u64 = 8;
/// Bytes in a veneer: `ldr x16, #8; br x16; .quad target`.
pub(crate) const VENEER_SIZE: u64 = 16;
/// Alignment of the veneer area; keeps each veneer's literal 8-byte aligned,
/// which matters where unaligned loads fault (MMU off, or `SCTLR.A` set).
pub(crate) const VENEER_ALIGN: u64 = 16;

/// The AAELF64 name of a type, or `None` for one this loader does not know.
pub(crate) fn name(r_type: u32) -> Option<&'static str> {
    defined_name(r_type).or(match r_type {
        R_AARCH64_NONE_OLD => Some("R_AARCH64_NONE"),
        1024 => Some("R_AARCH64_COPY"),
        1025 => Some("R_AARCH64_GLOB_DAT"),
        1026 => Some("R_AARCH64_JUMP_SLOT"),
        1027 => Some("R_AARCH64_RELATIVE"),
        1028 => Some("R_AARCH64_TLS_DTPMOD"),
        1029 => Some("R_AARCH64_TLS_DTPREL"),
        1030 => Some("R_AARCH64_TLS_TPREL"),
        1031 => Some("R_AARCH64_TLSDESC"),
        1032 => Some("R_AARCH64_IRELATIVE"),
        512..=573 => Some("R_AARCH64_TLS (thread-local storage)"),
        _ => None,
    })
}

/// A veneer jumps to symbol plus addend, so each addend of a symbol needs
/// its own.
pub(crate) const STUB_TAKES_ADDEND: bool = true;

/// A branch reaches only ±128 MiB, so calls to absolute symbols get a
/// veneer too.
pub(crate) const ABSOLUTE_CALLS_NEED_STUB: bool = true;

/// Whether an entry of a pending import may wait for its definition: only a
/// branch through a veneer, and only with addend 0, since the veneer jumps
/// to the symbol itself. Loads through a GOT slot may read data, which no
/// lazy entry can stand in for.
pub(crate) fn may_wait(wants_stub: bool, addend: i64, _code: &[u8], _offset: u64) -> bool {
    wants_stub && addend == 0
}

/// The formula of an AArch64 relocation type, in AAELF64's letters (G is
/// the address of the symbol's GOT slot, `GDAT(S + A)`'s place).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Value {
    /// S + A.
    Absolute,
    /// S + A - P.
    Relative,
    /// S + A - GOT.
    FromGot,
    /// Page(S + A) - Page(P).
    Page,
    /// G + A.
    Slot,
    /// G + A - P.
    SlotRelative,
    /// Page(G + A) - Page(P).
    SlotPage,
    /// G + A - Page(GOT).
    SlotFromGotPage,
}

/// Where an AArch64 relocation type puts its value: a data word, or the
/// immediate of an instruction, with that field's checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Field {
    /// `NONE`: nothing is written.
    Nothing,
    /// A data word of this many bytes, signed or unsigned.
    Data(u8),
    /// MOVZ/MOVK, 16 bits of the value from bit `16 * group`; `checked`
    /// forms require the bits above to be zero.
    MoveUnsigned { group: u8, checked: bool },
    /// MOVN/MOVZ (or MOVK) with a signed group; `checked` forms require the
    /// value to fit the bits up to the group's.
    MoveSigned { group: u8, checked: bool },
    /// A load-literal's 19-bit word offset (±1 MiB).
    Literal19,
    /// A B.cond/CBZ/CBNZ's 19-bit word offset (±1 MiB).
    Branch19,
    /// A TBZ/TBNZ's 14-bit word offset (±32 KiB).
    Branch14,
    /// An ADR's 21-bit byte offset (±1 MiB).
    Adr,
    /// An ADRP's page difference; `checked` forms must reach within ±4 GiB.
    Adrp { checked: bool },
    /// An ADD's or load/store's low 12 bits, scaled by the access size
    /// `1 << scale`, which the value must be aligned to.
    Low12 { scale: u8 },
    /// A 64-bit LDR's 15-bit offset from the GOT's page, 8-byte aligned.
    Low15,
    /// A B/BL's 26-bit word offset (±128 MiB), or its veneer's when the
    /// target is out of reach.
    Branch26,
}

/// What an AArch64 relocation type does, named: the one classification of
/// each type this loader supports. Its needs, its formula, its field and
/// what an absent weak symbol resolves to all follow from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fixup {
    pub value: Value,
    pub field: Field,
}

/// The classification of `r_type`, or `None` if it is not supported.
pub(crate) const fn classify(r_type: u32) -> Option<Fixup> {
    use Field::*;
    use Value::*;
    let (value, field) = match r_type {
        R_AARCH64_NONE | R_AARCH64_NONE_OLD => (Absolute, Nothing),
        R_AARCH64_ABS64 => (Absolute, Data(8)),
        R_AARCH64_ABS32 => (Absolute, Data(4)),
        R_AARCH64_ABS16 => (Absolute, Data(2)),
        R_AARCH64_PREL64 => (Relative, Data(8)),
        R_AARCH64_PREL32 => (Relative, Data(4)),
        R_AARCH64_PREL16 => (Relative, Data(2)),
        R_AARCH64_GOTREL64 => (FromGot, Data(8)),
        R_AARCH64_GOTREL32 => (FromGot, Data(4)),
        R_AARCH64_MOVW_UABS_G0 => (
            Absolute,
            MoveUnsigned {
                group: 0,
                checked: true,
            },
        ),
        R_AARCH64_MOVW_UABS_G0_NC => (
            Absolute,
            MoveUnsigned {
                group: 0,
                checked: false,
            },
        ),
        R_AARCH64_MOVW_UABS_G1 => (
            Absolute,
            MoveUnsigned {
                group: 1,
                checked: true,
            },
        ),
        R_AARCH64_MOVW_UABS_G1_NC => (
            Absolute,
            MoveUnsigned {
                group: 1,
                checked: false,
            },
        ),
        R_AARCH64_MOVW_UABS_G2 => (
            Absolute,
            MoveUnsigned {
                group: 2,
                checked: true,
            },
        ),
        R_AARCH64_MOVW_UABS_G2_NC => (
            Absolute,
            MoveUnsigned {
                group: 2,
                checked: false,
            },
        ),
        // The top group: every value fits.
        R_AARCH64_MOVW_UABS_G3 => (
            Absolute,
            MoveUnsigned {
                group: 3,
                checked: false,
            },
        ),
        R_AARCH64_MOVW_SABS_G0 => (
            Absolute,
            MoveSigned {
                group: 0,
                checked: true,
            },
        ),
        R_AARCH64_MOVW_SABS_G1 => (
            Absolute,
            MoveSigned {
                group: 1,
                checked: true,
            },
        ),
        R_AARCH64_MOVW_SABS_G2 => (
            Absolute,
            MoveSigned {
                group: 2,
                checked: true,
            },
        ),
        R_AARCH64_MOVW_PREL_G0 => (
            Relative,
            MoveSigned {
                group: 0,
                checked: true,
            },
        ),
        R_AARCH64_MOVW_PREL_G0_NC => (
            Relative,
            MoveSigned {
                group: 0,
                checked: false,
            },
        ),
        R_AARCH64_MOVW_PREL_G1 => (
            Relative,
            MoveSigned {
                group: 1,
                checked: true,
            },
        ),
        R_AARCH64_MOVW_PREL_G1_NC => (
            Relative,
            MoveSigned {
                group: 1,
                checked: false,
            },
        ),
        R_AARCH64_MOVW_PREL_G2 => (
            Relative,
            MoveSigned {
                group: 2,
                checked: true,
            },
        ),
        R_AARCH64_MOVW_PREL_G2_NC => (
            Relative,
            MoveSigned {
                group: 2,
                checked: false,
            },
        ),
        R_AARCH64_MOVW_PREL_G3 => (
            Relative,
            MoveSigned {
                group: 3,
                checked: false,
            },
        ),
        R_AARCH64_LD_PREL_LO19 => (Relative, Literal19),
        R_AARCH64_GOT_LD_PREL19 => (SlotRelative, Literal19),
        R_AARCH64_CONDBR19 => (Relative, Branch19),
        R_AARCH64_TSTBR14 => (Relative, Branch14),
        R_AARCH64_ADR_PREL_LO21 => (Relative, Adr),
        R_AARCH64_ADR_PREL_PG_HI21 => (Page, Adrp { checked: true }),
        R_AARCH64_ADR_PREL_PG_HI21_NC => (Page, Adrp { checked: false }),
        R_AARCH64_ADR_GOT_PAGE => (SlotPage, Adrp { checked: true }),
        R_AARCH64_ADD_ABS_LO12_NC | R_AARCH64_LDST8_ABS_LO12_NC => (Absolute, Low12 { scale: 0 }),
        R_AARCH64_LDST16_ABS_LO12_NC => (Absolute, Low12 { scale: 1 }),
        R_AARCH64_LDST32_ABS_LO12_NC => (Absolute, Low12 { scale: 2 }),
        R_AARCH64_LDST64_ABS_LO12_NC => (Absolute, Low12 { scale: 3 }),
        R_AARCH64_LDST128_ABS_LO12_NC => (Absolute, Low12 { scale: 4 }),
        R_AARCH64_LD64_GOT_LO12_NC => (Slot, Low12 { scale: 3 }),
        R_AARCH64_LD64_GOTPAGE_LO15 => (SlotFromGotPage, Low15),
        R_AARCH64_CALL26 | R_AARCH64_JUMP26 => (Relative, Branch26),
        _ => return None,
    };
    Some(Fixup { value, field })
}

impl Fixup {
    /// What the plan must reserve for an entry of this kind.
    pub(crate) const fn needs(self) -> Needs {
        Needs {
            got_slot: matches!(
                self.value,
                Value::Slot | Value::SlotRelative | Value::SlotPage | Value::SlotFromGotPage
            ),
            stub: matches!(self.field, Field::Branch26),
            relaxable: false,
        }
    }
}

/// What an overflow of `r_type` shows about the object's code model (small
/// or tiny): 32-bit absolute addresses, or PC-relative reach of 4 GiB
/// (`adrp`) or less.
pub(crate) const fn narrow_model(r_type: u32) -> Option<NarrowModel> {
    match r_type {
        R_AARCH64_ABS32 => Some(NarrowModel::Absolute),
        R_AARCH64_PREL32
        | R_AARCH64_ADR_PREL_PG_HI21
        | R_AARCH64_ADR_PREL_LO21
        | R_AARCH64_LD_PREL_LO19 => Some(NarrowModel::Displacement),
        _ => None,
    }
}

/// What `r_type` needs, or `None` if it is not supported.
pub(crate) const fn needs(r_type: u32) -> Option<Needs> {
    match classify(r_type) {
        Some(fixup) => Some(fixup.needs()),
        None => None,
    }
}

/// Bytes of the field a data relocation of `r_type` writes, for the types
/// unwind tables use (`pc_begin` and its `pc_range` share the width).
pub(crate) fn data_width(r_type: u32) -> usize {
    match classify(r_type) {
        Some(Fixup {
            value: Value::Absolute | Value::Relative,
            field: Field::Data(8),
        }) => 8,
        _ => 4,
    }
}

/// The address to use as S for an undefined weak symbol that nothing defines.
/// AAELF64 (§5.7.10) makes a branch to it fall through to the next instruction
/// and a PC-relative reference resolve to the place itself (S - P + A = A), so
/// code that tests the symbol never jumps or points to address 0 by accident.
/// Absolute and GOT references use 0.
pub(crate) fn absent_weak_symbol(r_type: u32, place: u64) -> u64 {
    match classify(r_type) {
        Some(Fixup {
            field: Field::Branch26 | Field::Branch19 | Field::Branch14,
            ..
        }) => place.wrapping_add(4),
        Some(Fixup {
            value: Value::Relative | Value::Page,
            ..
        }) => place,
        _ => 0,
    }
}

/// The 4 KiB page holding `address`, as ADRP computes it.
pub(crate) const fn page(address: i128) -> i128 {
    address & !0xfff
}

/// Applies one relocation to `bytes` (the section's contents) at `offset`.
pub(crate) fn apply(
    r_type: u32,
    bytes: &mut [u8],
    offset: usize,
    inputs: &FixupInputs,
) -> Result<Applied, RelocationProblem> {
    let fixup = classify(r_type).ok_or(RelocationProblem::Unsupported)?;
    if fixup.field == Field::Branch26 {
        return branch26(bytes, offset, inputs);
    }
    let value = value(fixup.value, inputs)?;
    match fixup.field {
        Field::Nothing => Ok(()),
        Field::Data(width) => write_field(bytes, offset, usize::from(width), value, Range::Either),
        Field::MoveUnsigned { group, checked } => patch(bytes, offset, |insn| {
            move_unsigned(insn, value, u32::from(group), checked)
        }),
        Field::MoveSigned { group, checked } => patch(bytes, offset, |insn| {
            move_signed(insn, value, u32::from(group), checked)
        }),
        Field::Literal19 | Field::Branch19 => patch(bytes, offset, |insn| imm19(insn, value)),
        Field::Branch14 => patch(bytes, offset, |insn| {
            let value = aligned(value, 4)?;
            let field = signed_bits(value, 16)? >> 2;
            Ok(insert(insn, field, 5, 14))
        }),
        Field::Adr => patch(bytes, offset, |insn| {
            Ok(adr_immediate(insn, signed_bits(value, 21)?))
        }),
        Field::Adrp { checked } => patch(bytes, offset, |insn| adrp(insn, value, checked)),
        Field::Low12 { scale } => patch(bytes, offset, |insn| low12(insn, value, u32::from(scale))),
        Field::Low15 => {
            let value = aligned(value, 8)?;
            if !(0..1 << 15).contains(&value) {
                return Err(RelocationProblem::Overflow { value });
            }
            patch(bytes, offset, |insn| Ok(insert(insn, value >> 3, 10, 12)))
        }
        // Taken above: a branch may go through its veneer.
        Field::Branch26 => return branch26(bytes, offset, inputs),
    }
    .map(|()| Applied::Direct)
}

/// A formula's value, from the inputs it names. Only the GOT formulas can
/// fail: an entry whose symbol has no slot.
fn value(value: Value, inputs: &FixupInputs) -> Result<i128, RelocationProblem> {
    let s = i128::from(inputs.symbol);
    let a = i128::from(inputs.addend);
    let p = i128::from(inputs.place);
    let got = i128::from(inputs.got);
    let slot = || {
        inputs
            .got_slot
            .map(i128::from)
            .ok_or(RelocationProblem::Unsupported)
    };
    Ok(match value {
        Value::Absolute => s + a,
        Value::Relative => s + a - p,
        Value::FromGot => s + a - got,
        Value::Page => page(s + a) - page(p),
        Value::Slot => slot()? + a,
        Value::SlotRelative => slot()? + a - p,
        Value::SlotPage => page(slot()? + a) - page(p),
        Value::SlotFromGotPage => slot()? + a - page(got),
    })
}

/// Applies a section's relocation `entries` (`Elf64_Rela`, their symbol
/// indices offset by `symbol_base`) to its `bytes`, placed at `target`,
/// marking the veneers branches went through.
pub(crate) fn apply_section<L: Linking>(
    entries: &[[u8; RELA_ENTRY]],
    symbol_base: u32,
    target: u64,
    bytes: &mut [u8],
    link: &mut L,
) -> Result<(), L::Error> {
    for raw in entries {
        let entry = Rela::decode(raw, symbol_base);
        let applied =
            entry_inputs(link, &entry, target).and_then(|(offset, inputs, veneer, symbol)| {
                let inputs = FixupInputs {
                    symbol: if link.is_absent_weak(&symbol) {
                        absent_weak_symbol(entry.r_type, inputs.place)
                    } else {
                        inputs.symbol
                    },
                    symbol_size: link.symbol_size(&entry),
                    ..inputs
                };
                Ok((apply(entry.r_type, bytes, offset, &inputs)?, veneer))
            });
        match applied {
            Ok((Applied::Direct, _)) => {}
            Ok((Applied::ThroughStub, veneer)) => link.used_stub(veneer),
            Err(problem) => return Err(link.error(&entry, problem)),
        }
    }
    Ok(())
}

/// A branch goes straight to its target when in reach, else through its veneer.
fn branch26(
    bytes: &mut [u8],
    offset: usize,
    inputs: &FixupInputs,
) -> Result<Applied, RelocationProblem> {
    let p = i128::from(inputs.place);
    let direct = i128::from(inputs.symbol) + i128::from(inputs.addend) - p;
    let write = |bytes: &mut [u8], value: i128| {
        patch(bytes, offset, |insn| {
            let value = aligned(value, 4)?;
            Ok(insert(insn, signed_bits(value, 28)? >> 2, 0, 26))
        })
    };
    match write(bytes, direct) {
        Ok(()) => Ok(Applied::Direct),
        Err(overflow @ RelocationProblem::Overflow { .. }) => match inputs.stub {
            // The veneer jumps to S + A itself, so the branch lands on it exactly.
            Some(veneer) => write(bytes, i128::from(veneer) - p).map(|()| Applied::ThroughStub),
            None => Err(overflow),
        },
        Err(other) => Err(other),
    }
}

/// Writes a veneer that jumps to `target` into `bytes[..VENEER_SIZE]`. It
/// clobbers only `x16` (IP0), which AAPCS64 reserves for exactly this.
pub(crate) fn write_veneer(bytes: &mut [u8], target: u64) -> Result<(), RelocationProblem> {
    let veneer = bytes
        .get_mut(..VENEER_SIZE as usize)
        .ok_or(RelocationProblem::OutOfBounds)?;
    const LDR_X16_LITERAL_8: u32 = 0x5800_0050;
    const BR_X16: u32 = 0xd61f_0200;
    let words = [LDR_X16_LITERAL_8.to_le_bytes(), BR_X16.to_le_bytes()];
    let mut code = [0u8; VENEER_SIZE as usize];
    for (chunk, word) in code.chunks_exact_mut(4).zip(words) {
        chunk.copy_from_slice(&word);
    }
    if let Some(literal) = code.get_mut(8..16) {
        literal.copy_from_slice(&target.to_le_bytes());
    }
    veneer.copy_from_slice(&code);
    Ok(())
}

/// Bytes in a lazy entry (see [`write_lazy_entry`]).
pub(crate) const LAZY_ENTRY_SIZE: u64 = 24;
/// Where a lazy entry's trap instruction sits, from its start: what a
/// module for another machine jumps to while an import is unbound.
pub(crate) const LAZY_ENTRY_TRAP: u64 = 16;

const ADRP_X16: u32 = 0x9000_0010;
const ADD_X16_X16: u32 = 0x9100_0210;
const LDR_X16_X16: u32 = 0xf940_0210;
const LDR_X17_X16_8: u32 = 0xf940_0611;
const BR_X16: u32 = 0xd61f_0200;
const BR_X17: u32 = 0xd61f_0220;
const BRK_UNBOUND: u32 = 0xd420_0000 | 0xdead << 5;

/// Writes the veneer of a pending import into `bytes[..VENEER_SIZE]`: it
/// jumps through the GOT slot at `slot` instead of a literal of its own,
/// so that binding the import later is one store to read-only data, never
/// a write to code. `veneer` is the veneer's own target address.
pub(crate) fn write_slot_veneer(
    bytes: &mut [u8],
    veneer: u64,
    slot: u64,
) -> Result<(), RelocationProblem> {
    let words = [
        adrp(
            ADRP_X16,
            page(i128::from(slot)) - page(i128::from(veneer)),
            true,
        )?,
        low12(LDR_X16_X16, i128::from(slot), 3)?,
        BR_X16,
        BRK_UNBOUND,
    ];
    write_words(bytes, VENEER_SIZE, &words)
}

/// Writes the lazy entry of a pending import, at target address `entry`,
/// into `bytes[..LAZY_ENTRY_SIZE]`. Until the import is bound, its GOT slot
/// leads here: the entry puts the address of the import's context (two
/// words: the namespace, then the unbound path's address) in `x16` and
/// jumps to the unbound path. It clobbers only `x16` and `x17`, which
/// AAPCS64 leaves to veneers.
pub(crate) fn write_lazy_entry(
    bytes: &mut [u8],
    entry: u64,
    context: u64,
) -> Result<(), RelocationProblem> {
    let words = [
        adrp(
            ADRP_X16,
            page(i128::from(context)) - page(i128::from(entry)),
            true,
        )?,
        low12(ADD_X16_X16, i128::from(context), 0)?,
        LDR_X17_X16_8,
        BR_X17,
        BRK_UNBOUND,
        BRK_UNBOUND,
    ];
    write_words(bytes, LAZY_ENTRY_SIZE, &words)
}

fn write_words(bytes: &mut [u8], size: u64, words: &[u32]) -> Result<(), RelocationProblem> {
    let out = bytes
        .get_mut(..size as usize)
        .ok_or(RelocationProblem::OutOfBounds)?;
    for (chunk, word) in out.chunks_exact_mut(4).zip(words) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    Ok(())
}

/// Reads the instruction at `offset`, lets `edit` patch it, and writes it back
/// only if `edit` succeeds.
fn patch(
    bytes: &mut [u8],
    offset: usize,
    edit: impl FnOnce(u32) -> Result<u32, RelocationProblem>,
) -> Result<(), RelocationProblem> {
    let field = offset
        .checked_add(4)
        .and_then(|end| bytes.get_mut(offset..end))
        .ok_or(RelocationProblem::OutOfBounds)?;
    let mut word = [0u8; 4];
    word.copy_from_slice(field);
    let patched = edit(u32::from_le_bytes(word))?;
    field.copy_from_slice(&patched.to_le_bytes());
    Ok(())
}

/// Reduces `value` to 64 bits (address arithmetic wraps) and checks that it
/// fits `bits` as a signed number.
fn signed_bits(value: i128, bits: u32) -> Result<i128, RelocationProblem> {
    let value = i128::from(value as u64 as i64);
    let half = 1i128 << (bits - 1);
    if (-half..half).contains(&value) {
        Ok(value)
    } else {
        Err(RelocationProblem::Overflow { value })
    }
}

/// Checks that `value` is a multiple of `align`.
fn aligned(value: i128, align: i128) -> Result<i128, RelocationProblem> {
    if value % align == 0 {
        Ok(value)
    } else {
        Err(RelocationProblem::Misaligned { value })
    }
}

/// Replaces `width` bits of `insn` at `shift` with the low bits of `field`.
fn insert(insn: u32, field: i128, shift: u32, width: u32) -> u32 {
    let mask = ((1u64 << width) - 1) as u32;
    let bits = (field as u64 as u32) & mask;
    (insn & !(mask << shift)) | (bits << shift)
}

/// A 19-bit word offset at bits 5-23: load-literal, B.cond, CBZ/CBNZ.
fn imm19(insn: u32, value: i128) -> Result<u32, RelocationProblem> {
    let value = aligned(value, 4)?;
    Ok(insert(insn, signed_bits(value, 21)? >> 2, 5, 19))
}

/// ADR/ADRP split their 21-bit immediate: low 2 bits at 29-30, the rest at 5-23.
fn adr_immediate(insn: u32, immediate: i128) -> u32 {
    insert(insert(insn, immediate, 29, 2), immediate >> 2, 5, 19)
}

/// ADRP takes a page difference; the checked form must reach within ±4 GiB.
fn adrp(insn: u32, difference: i128, checked: bool) -> Result<u32, RelocationProblem> {
    let pages = if checked {
        signed_bits(difference, 33)?
    } else {
        i128::from(difference as u64 as i64)
    } >> 12;
    Ok(adr_immediate(insn, pages))
}

/// The low 12 bits of an address, scaled by the access size `1 << scale`
/// (which the address must be aligned to), in the imm12 field at bits 10-21.
fn low12(insn: u32, value: i128, scale: u32) -> Result<u32, RelocationProblem> {
    let low = value & 0xfff;
    aligned(low, 1 << scale)?;
    Ok(insert(insn, low >> scale, 10, 12))
}

/// MOVZ/MOVK with an unsigned group of S + A. The checked forms require all
/// higher bits to be zero (read as a 64-bit address).
fn move_unsigned(
    insn: u32,
    value: i128,
    group: u32,
    checked: bool,
) -> Result<u32, RelocationProblem> {
    let word = value as u64;
    let shift = 16 * group;
    if checked && (word >> (shift + 16)) != 0 {
        return Err(RelocationProblem::Overflow {
            value: i128::from(word),
        });
    }
    Ok(insert(insn, i128::from(word >> shift), 5, 16))
}

const MOVK_BITS: u32 = 0b11 << 29;
const MOVZ_BIT: u32 = 1 << 30;

/// MOVN/MOVZ (or MOVK) with a signed group: a negative value turns the
/// instruction into MOVN with the inverted bits, a positive one into MOVZ, so
/// the register ends up holding the sign-extended value. A MOVK keeps its
/// opcode and takes the raw bits.
fn move_signed(
    insn: u32,
    value: i128,
    group: u32,
    checked: bool,
) -> Result<u32, RelocationProblem> {
    let value = i128::from(value as u64 as i64);
    let shift = 16 * group;
    if checked {
        signed_bits(value, shift + 17)?;
    }
    let bits = value >> shift;
    if insn & MOVK_BITS == MOVK_BITS {
        return Ok(insert(insn, bits, 5, 16));
    }
    // The sign is the bit above the group, read in 64-bit arithmetic, so G3
    // (whose bit above is bit 64) always gives MOVZ.
    let above = shift + 16;
    let negative = above < 64 && ((value as u64) >> above) & 1 == 1;
    Ok(if negative {
        insert(insn & !MOVZ_BIT, !bits, 5, 16)
    } else {
        insert(insn | MOVZ_BIT, bits, 5, 16)
    })
}

#[cfg(test)]
mod tests {
    //! Expected words come from `llvm-mc -triple=aarch64` and `llvm-objdump`
    //! output for the same instructions and distances, not from this module.
    #![allow(clippy::indexing_slicing)]
    use super::*;

    const P: u64 = 0x4000_0000;

    fn at(symbol: u64) -> FixupInputs {
        FixupInputs {
            symbol,
            addend: 0,
            place: P,
            got: 0x5000_0000,
            got_slot: Some(0x5000_0010),
            stub: Some(P + 0x1000),
            symbol_size: 0,
        }
    }

    /// A pending import's veneer loads its GOT slot (page, then the low 12
    /// bits) and branches; the words are llvm-mc's for the same operands.
    /// Every type the loader classifies has an AAELF64 name and every
    /// other is refused, by `apply` too. Exactly the four GOT types need a
    /// slot and the two branches a veneer; an absent weak symbol makes a
    /// branch fall through and a PC-relative reference point at its place.
    #[test]
    fn each_type_is_classified_once() {
        for r_type in 0..1100 {
            match classify(r_type) {
                Some(_) => assert!(name(r_type).is_some(), "type {r_type} has no name"),
                None => assert_eq!(
                    apply(r_type, &mut [0u8; 8], 0, &at(P)),
                    Err(RelocationProblem::Unsupported),
                    "type {r_type}"
                ),
            }
        }
        let with = |wanted: fn(Needs) -> bool| -> alloc::vec::Vec<u32> {
            (0..1100)
                .filter(|&r_type| needs(r_type).is_some_and(wanted))
                .collect()
        };
        assert_eq!(
            with(|needs| needs.got_slot),
            [
                R_AARCH64_GOT_LD_PREL19,
                R_AARCH64_ADR_GOT_PAGE,
                R_AARCH64_LD64_GOT_LO12_NC,
                R_AARCH64_LD64_GOTPAGE_LO15
            ]
        );
        assert_eq!(
            with(|needs| needs.stub),
            [R_AARCH64_JUMP26, R_AARCH64_CALL26]
        );
        assert!(with(|needs| needs.relaxable).is_empty());
        assert_eq!(absent_weak_symbol(R_AARCH64_CONDBR19, P), P + 4);
        assert_eq!(absent_weak_symbol(R_AARCH64_ADR_PREL_PG_HI21, P), P);
        assert_eq!(absent_weak_symbol(R_AARCH64_ADR_GOT_PAGE, P), 0);
        assert_eq!(absent_weak_symbol(R_AARCH64_ABS64, P), 0);
        assert_eq!(data_width(R_AARCH64_PREL64), 8);
        assert_eq!(data_width(R_AARCH64_PREL32), 4);
    }

    #[test]
    fn slot_veneer_loads_the_slot_and_branches() {
        let mut bytes = [0u8; VENEER_SIZE as usize];
        write_slot_veneer(&mut bytes, 0x4000_1000, 0x4020_3010).unwrap();
        assert_eq!(
            bytes,
            [
                0x10, 0x10, 0x00, 0xd0, 0x10, 0x0a, 0x40, 0xf9, 0x00, 0x02, 0x1f, 0xd6, 0xa0, 0xd5,
                0x3b, 0xd4
            ]
        );
        // A slot more than 4 GiB away is refused, never truncated.
        let far = write_slot_veneer(&mut bytes, 0x4000_1000, 0x2_0000_0000);
        assert!(matches!(far, Err(RelocationProblem::Overflow { .. })));
    }

    /// A lazy entry puts its context's address in x16 and jumps through the
    /// context's second word, then traps.
    #[test]
    fn lazy_entry_hands_its_context_to_the_unbound_path() {
        let mut bytes = [0u8; LAZY_ENTRY_SIZE as usize];
        write_lazy_entry(&mut bytes, 0x4000_1000, 0x4000_0ff8).unwrap();
        assert_eq!(
            bytes[..16],
            [
                0xf0, 0xff, 0xff, 0xf0, 0x10, 0xe2, 0x3f, 0x91, 0x11, 0x06, 0x40, 0xf9, 0x20, 0x02,
                0x1f, 0xd6
            ]
        );
        assert_eq!(
            bytes[LAZY_ENTRY_TRAP as usize..][..4],
            [0xa0, 0xd5, 0x3b, 0xd4]
        );
    }

    /// Applies `r_type` to the one instruction `insn` and returns the result.
    fn word(r_type: u32, insn: u32, inputs: &FixupInputs) -> Result<u32, RelocationProblem> {
        let mut bytes = insn.to_le_bytes();
        apply(r_type, &mut bytes, 0, inputs)?;
        Ok(u32::from_le_bytes(bytes))
    }

    fn forward(distance: i64) -> FixupInputs {
        at(P.wrapping_add_signed(distance))
    }

    fn overflows(r_type: u32, insn: u32, inputs: &FixupInputs) {
        let mut bytes = insn.to_le_bytes();
        match apply(r_type, &mut bytes, 0, inputs) {
            Err(RelocationProblem::Overflow { .. }) => {}
            other => panic!("{r_type}: expected an overflow, got {other:?}"),
        }
        assert_eq!(bytes, insn.to_le_bytes(), "a refused value writes nothing");
    }

    fn misaligned(r_type: u32, insn: u32, inputs: &FixupInputs) {
        let mut bytes = insn.to_le_bytes();
        match apply(r_type, &mut bytes, 0, inputs) {
            Err(RelocationProblem::Misaligned { .. }) => {}
            other => panic!("{r_type}: expected misalignment, got {other:?}"),
        }
        assert_eq!(bytes, insn.to_le_bytes());
    }

    const BL: u32 = 0x9400_0000;
    const B: u32 = 0x1400_0000;

    #[test]
    fn branch26_edges() {
        let no_veneer = |distance| FixupInputs {
            stub: None,
            ..forward(distance)
        };
        assert_eq!(
            word(R_AARCH64_CALL26, BL, &no_veneer(0x7ff_fffc)),
            Ok(0x95ff_ffff)
        );
        assert_eq!(
            word(R_AARCH64_CALL26, BL, &no_veneer(-0x800_0000)),
            Ok(0x9600_0000)
        );
        assert_eq!(word(R_AARCH64_JUMP26, B, &no_veneer(4)), Ok(0x1400_0001));
        overflows(R_AARCH64_CALL26, BL, &no_veneer(0x800_0000));
        overflows(R_AARCH64_JUMP26, B, &no_veneer(-0x800_0004));
        misaligned(R_AARCH64_CALL26, BL, &no_veneer(6));
    }

    #[test]
    fn out_of_reach_branches_take_the_veneer() {
        let mut bytes = BL.to_le_bytes();
        let far = forward(0x800_0000);
        assert_eq!(
            apply(R_AARCH64_CALL26, &mut bytes, 0, &far),
            Ok(Applied::ThroughStub)
        );
        // The veneer is 0x1000 past the call: imm26 = 0x400.
        assert_eq!(u32::from_le_bytes(bytes), 0x9400_0400);
        let mut bytes = BL.to_le_bytes();
        assert_eq!(
            apply(R_AARCH64_CALL26, &mut bytes, 0, &forward(0x7ff_fffc)),
            Ok(Applied::Direct),
            "in reach: no veneer"
        );
    }

    #[test]
    fn veneers_round_trip() {
        let mut veneer = [0u8; 16];
        write_veneer(&mut veneer, 0xffff_0000_1234_5678).unwrap();
        assert_eq!(&veneer[..4], &0x5800_0050u32.to_le_bytes(), "ldr x16, #8");
        assert_eq!(&veneer[4..8], &0xd61f_0200u32.to_le_bytes(), "br x16");
        assert_eq!(
            &veneer[8..],
            &0xffff_0000_1234_5678u64.to_le_bytes(),
            "the target"
        );
        assert_eq!(
            write_veneer(&mut [0u8; 15], 0),
            Err(RelocationProblem::OutOfBounds)
        );
    }

    #[test]
    fn conditional_and_test_branches() {
        assert_eq!(
            word(R_AARCH64_CONDBR19, 0x5400_0000, &forward(0xf_fffc)),
            Ok(0x547f_ffe0)
        );
        assert_eq!(
            word(R_AARCH64_CONDBR19, 0xb400_0000, &forward(-0x10_0000)),
            Ok(0xb480_0000)
        );
        overflows(R_AARCH64_CONDBR19, 0x5400_0000, &forward(0x10_0000));
        overflows(R_AARCH64_CONDBR19, 0x5400_0000, &forward(-0x10_0004));
        misaligned(R_AARCH64_CONDBR19, 0x5400_0000, &forward(2));
        // tbz w0, #3 and tbnz w1, #0.
        assert_eq!(
            word(R_AARCH64_TSTBR14, 0x3618_0000, &forward(0x7ffc)),
            Ok(0x361b_ffe0)
        );
        assert_eq!(
            word(R_AARCH64_TSTBR14, 0x3700_0001, &forward(-0x8000)),
            Ok(0x3704_0001)
        );
        overflows(R_AARCH64_TSTBR14, 0x3618_0000, &forward(0x8000));
        overflows(R_AARCH64_TSTBR14, 0x3618_0000, &forward(-0x8004));
        misaligned(R_AARCH64_TSTBR14, 0x3618_0000, &forward(1));
    }

    #[test]
    fn literal_loads_and_adr() {
        assert_eq!(
            word(R_AARCH64_LD_PREL_LO19, 0x5800_0001, &forward(0xf_fffc)),
            Ok(0x587f_ffe1)
        );
        overflows(R_AARCH64_LD_PREL_LO19, 0x5800_0001, &forward(0x10_0000));
        misaligned(R_AARCH64_LD_PREL_LO19, 0x5800_0001, &forward(4 + 2));
        // The GOT variant loads the slot (0x5000_0010) instead of the symbol.
        let slot = FixupInputs {
            got_slot: Some(P + 0xf_fffc),
            ..at(0)
        };
        assert_eq!(
            word(R_AARCH64_GOT_LD_PREL19, 0x5800_0001, &slot),
            Ok(0x587f_ffe1)
        );
        assert_eq!(
            word(R_AARCH64_ADR_PREL_LO21, 0x1000_0002, &forward(0xf_ffff)),
            Ok(0x707f_ffe2)
        );
        assert_eq!(
            word(R_AARCH64_ADR_PREL_LO21, 0x1000_0002, &forward(-0x10_0000)),
            Ok(0x1080_0002)
        );
        overflows(R_AARCH64_ADR_PREL_LO21, 0x1000_0002, &forward(0x10_0000));
        overflows(R_AARCH64_ADR_PREL_LO21, 0x1000_0002, &forward(-0x10_0001));
    }

    const ADRP_X3: u32 = 0x9000_0003;

    /// The ADRP word for a page difference, built from the architecture's
    /// field layout: immlo at bits 29-30, immhi at 5-23.
    fn adrp_word(pages: i64) -> u32 {
        let pages = pages as u32;
        ADRP_X3 | ((pages & 3) << 29) | (((pages >> 2) & 0x7_ffff) << 5)
    }

    #[test]
    fn page_relative_addresses() {
        // Page(S) - Page(P): the low 12 bits of either side do not count.
        let inputs = FixupInputs {
            place: P + 0xffc,
            ..at(P + 0x2345_6789)
        };
        assert_eq!(
            word(R_AARCH64_ADR_PREL_PG_HI21, ADRP_X3, &inputs),
            Ok(adrp_word(0x2_3456))
        );
        assert_eq!(adrp_word(0), ADRP_X3, "matches llvm-mc's adrp x3, 0");
        let top = forward(0xffff_ffff);
        assert_eq!(
            word(R_AARCH64_ADR_PREL_PG_HI21, ADRP_X3, &top),
            Ok(adrp_word(0xf_ffff))
        );
        assert_eq!(
            word(
                R_AARCH64_ADR_PREL_PG_HI21,
                ADRP_X3,
                &forward(-0x1_0000_0000)
            ),
            Ok(adrp_word(-0x10_0000))
        );
        overflows(R_AARCH64_ADR_PREL_PG_HI21, ADRP_X3, &forward(0x1_0000_0000));
        overflows(
            R_AARCH64_ADR_PREL_PG_HI21,
            ADRP_X3,
            &forward(-0x1_0000_1000),
        );
        // The unchecked form keeps the low 21 bits of the page count.
        assert_eq!(
            word(
                R_AARCH64_ADR_PREL_PG_HI21_NC,
                ADRP_X3,
                &forward(0x1_0000_0000)
            ),
            Ok(adrp_word(0x10_0000))
        );
        // ADR_GOT_PAGE: the page of the slot.
        let got = FixupInputs {
            got_slot: Some(P + 0x3000 + 8),
            ..at(0)
        };
        assert_eq!(
            word(R_AARCH64_ADR_GOT_PAGE, ADRP_X3, &got),
            Ok(adrp_word(3))
        );
    }

    #[test]
    fn low_twelve_bits() {
        let low = |value: u64| at(0x1234_5000 + value);
        assert_eq!(
            word(R_AARCH64_ADD_ABS_LO12_NC, 0x9100_0084, &low(0xabc)),
            Ok(0x912a_f084)
        );
        assert_eq!(
            word(R_AARCH64_LDST8_ABS_LO12_NC, 0x3940_00a5, &low(0xfff)),
            Ok(0x397f_fca5)
        );
        assert_eq!(
            word(R_AARCH64_LDST16_ABS_LO12_NC, 0x7940_00a5, &low(0xffe)),
            Ok(0x795f_fca5)
        );
        assert_eq!(
            word(R_AARCH64_LDST32_ABS_LO12_NC, 0xb940_00a5, &low(0xffc)),
            Ok(0xb94f_fca5)
        );
        assert_eq!(
            word(R_AARCH64_LDST64_ABS_LO12_NC, 0xf940_00a5, &low(0xff8)),
            Ok(0xf947_fca5)
        );
        assert_eq!(
            word(R_AARCH64_LDST128_ABS_LO12_NC, 0x3dc0_00a5, &low(0xff0)),
            Ok(0x3dc3_fca5)
        );
        misaligned(R_AARCH64_LDST16_ABS_LO12_NC, 0x7940_00a5, &low(0x1));
        misaligned(R_AARCH64_LDST32_ABS_LO12_NC, 0xb940_00a5, &low(0x2));
        misaligned(R_AARCH64_LDST64_ABS_LO12_NC, 0xf940_00a5, &low(0x4));
        misaligned(R_AARCH64_LDST128_ABS_LO12_NC, 0x3dc0_00a5, &low(0x8));
        let slot = FixupInputs {
            got_slot: Some(0x5000_0ff8),
            ..at(0)
        };
        assert_eq!(
            word(R_AARCH64_LD64_GOT_LO12_NC, 0xf940_00a5, &slot),
            Ok(0xf947_fca5)
        );
        let odd_slot = FixupInputs {
            got_slot: Some(0x5000_0ff4),
            ..at(0)
        };
        misaligned(R_AARCH64_LD64_GOT_LO12_NC, 0xf940_00a5, &odd_slot);
    }

    #[test]
    fn gotpage_lo15() {
        let slot = |offset: u64| FixupInputs {
            got: 0x5000_0800,
            got_slot: Some(0x5000_0000 + offset),
            ..at(0)
        };
        // Relative to the GOT's page (0x5000_0000), not to the GOT itself.
        assert_eq!(
            word(R_AARCH64_LD64_GOTPAGE_LO15, 0xf940_00a5, &slot(0x7ff8)),
            Ok(0xf97f_fca5)
        );
        overflows(R_AARCH64_LD64_GOTPAGE_LO15, 0xf940_00a5, &slot(0x8000));
        misaligned(R_AARCH64_LD64_GOTPAGE_LO15, 0xf940_00a5, &slot(0x14));
    }

    const MOVZ_X6: u32 = 0xd280_0006;
    const MOVK_X6: u32 = 0xf280_0006;
    const MOVN_X6: u32 = 0x9280_0006;

    #[test]
    fn unsigned_moves() {
        assert_eq!(
            word(R_AARCH64_MOVW_UABS_G0, MOVZ_X6, &at(0x1234)),
            Ok(0xd282_4686)
        );
        overflows(R_AARCH64_MOVW_UABS_G0, MOVZ_X6, &at(0x1_0000));
        assert_eq!(
            word(R_AARCH64_MOVW_UABS_G0_NC, MOVK_X6, &at(0xffff_1234)),
            Ok(0xf282_4686)
        );
        // movk x6, #0x1234, lsl #16 has hw=1 already; only the immediate changes.
        let movk_lsl16 = 0xf2a0_0006;
        assert_eq!(
            word(R_AARCH64_MOVW_UABS_G1, movk_lsl16, &at(0x1234_ffff)),
            Ok(0xf2a2_4686)
        );
        overflows(R_AARCH64_MOVW_UABS_G1, movk_lsl16, &at(0x1_0000_0000));
        assert_eq!(
            word(R_AARCH64_MOVW_UABS_G1_NC, movk_lsl16, &at(0xff_1234_0000)),
            Ok(0xf2a2_4686)
        );
        assert_eq!(
            word(R_AARCH64_MOVW_UABS_G2, MOVK_X6, &at(0x1234_0000_0000)),
            Ok(0xf282_4686)
        );
        overflows(R_AARCH64_MOVW_UABS_G2, MOVK_X6, &at(0x1_0000_0000_0000));
        assert_eq!(
            word(
                R_AARCH64_MOVW_UABS_G2_NC,
                MOVK_X6,
                &at(0xff12_3400_0000_0000)
            ),
            Ok(0xf286_8006)
        );
        assert_eq!(
            word(R_AARCH64_MOVW_UABS_G3, MOVK_X6, &at(0x1234_0000_0000_0000)),
            Ok(0xf282_4686)
        );
    }

    #[test]
    fn signed_moves_pick_movz_or_movn() {
        // 0x1234 ahead: movz #0x1234. 0x1235 behind: movn #0x1234 (= -0x1235).
        assert_eq!(
            word(R_AARCH64_MOVW_PREL_G0, MOVZ_X6, &forward(0x1234)),
            Ok(0xd282_4686)
        );
        assert_eq!(
            word(R_AARCH64_MOVW_PREL_G0, MOVZ_X6, &forward(-0x1235)),
            Ok(0x9282_4686)
        );
        assert_eq!(
            word(R_AARCH64_MOVW_PREL_G0, MOVN_X6, &forward(0)),
            Ok(MOVZ_X6)
        );
        assert_eq!(
            word(R_AARCH64_MOVW_PREL_G0, MOVZ_X6, &forward(-1)),
            Ok(MOVN_X6)
        );
        // G0 reaches -2^16 ..= 2^16 - 1.
        assert!(word(R_AARCH64_MOVW_PREL_G0, MOVZ_X6, &forward(0xffff)).is_ok());
        assert!(word(R_AARCH64_MOVW_PREL_G0, MOVZ_X6, &forward(-0x1_0000)).is_ok());
        overflows(R_AARCH64_MOVW_PREL_G0, MOVZ_X6, &forward(0x1_0000));
        overflows(R_AARCH64_MOVW_PREL_G0, MOVZ_X6, &forward(-0x1_0001));
        // A MOVK keeps its opcode and takes the raw bits.
        assert_eq!(
            word(R_AARCH64_MOVW_PREL_G0_NC, MOVK_X6, &forward(-0x1235)),
            Ok(0xf29d_b966)
        );
        overflows(R_AARCH64_MOVW_PREL_G1, MOVZ_X6, &forward(0x1_0000_0000));
        assert!(word(R_AARCH64_MOVW_PREL_G1, MOVZ_X6, &forward(-0x1_0000_0000)).is_ok());
        overflows(R_AARCH64_MOVW_PREL_G1, MOVZ_X6, &forward(-0x1_0000_0001));
        assert!(word(R_AARCH64_MOVW_PREL_G1_NC, MOVK_X6, &forward(0x1_0000_0000)).is_ok());
        overflows(
            R_AARCH64_MOVW_PREL_G2,
            MOVZ_X6,
            &forward(0x1_0000_0000_0000),
        );
        assert!(word(
            R_AARCH64_MOVW_PREL_G2_NC,
            MOVK_X6,
            &forward(0x1_0000_0000_0000)
        )
        .is_ok());
        // G3 has no check and, read as 64 bits, always gives MOVZ.
        assert_eq!(
            word(R_AARCH64_MOVW_PREL_G3, MOVN_X6, &forward(-1)),
            Ok(0xd29f_ffe6)
        );
        assert_eq!(
            word(R_AARCH64_MOVW_SABS_G0, MOVZ_X6, &at(u64::MAX)),
            Ok(MOVN_X6)
        );
        overflows(R_AARCH64_MOVW_SABS_G1, MOVZ_X6, &at(0x1_0000_0000));
        assert!(word(R_AARCH64_MOVW_SABS_G2, MOVZ_X6, &at(0x7fff_ffff_ffff)).is_ok());
    }

    #[test]
    fn data_words() {
        let mut bytes = [0u8; 8];
        let inputs = forward(-8);
        apply(R_AARCH64_PREL64, &mut bytes, 0, &inputs).unwrap();
        assert_eq!(i64::from_le_bytes(bytes), -8);
        apply(R_AARCH64_ABS64, &mut bytes, 0, &at(0xffff_0000_0000_0001)).unwrap();
        assert_eq!(u64::from_le_bytes(bytes), 0xffff_0000_0000_0001);
        // 32 and 16 bits accept signed or unsigned readings, nothing wider.
        assert!(apply(R_AARCH64_ABS32, &mut bytes, 0, &at(0xffff_ffff)).is_ok());
        assert!(apply(R_AARCH64_ABS32, &mut bytes, 0, &at(u64::MAX - 0x7fff_ffff)).is_ok());
        assert!(matches!(
            apply(R_AARCH64_ABS32, &mut bytes, 0, &at(0x1_0000_0000)),
            Err(RelocationProblem::Overflow { .. })
        ));
        assert!(apply(R_AARCH64_PREL32, &mut bytes, 0, &forward(-0x8000_0000)).is_ok());
        assert!(apply(R_AARCH64_PREL32, &mut bytes, 0, &forward(-0x8000_0001)).is_err());
        assert!(apply(R_AARCH64_ABS16, &mut bytes, 0, &at(0xffff)).is_ok());
        assert!(apply(R_AARCH64_ABS16, &mut bytes, 0, &at(0x1_0000)).is_err());
        assert!(apply(R_AARCH64_PREL16, &mut bytes, 0, &forward(-0x8000)).is_ok());
        assert!(apply(R_AARCH64_PREL16, &mut bytes, 0, &forward(-0x8001)).is_err());
        let gotrel = FixupInputs {
            got: 0x1000,
            ..at(0x1010)
        };
        apply(R_AARCH64_GOTREL64, &mut bytes, 0, &gotrel).unwrap();
        assert_eq!(u64::from_le_bytes(bytes), 0x10);
    }

    #[test]
    fn unknown_types_and_bounds() {
        let mut bytes = [0u8; 4];
        assert_eq!(
            apply(1030, &mut bytes, 0, &at(0)),
            Err(RelocationProblem::Unsupported),
            "TLS is refused"
        );
        assert_eq!(
            apply(R_AARCH64_CALL26, &mut bytes, 1, &at(P)),
            Err(RelocationProblem::OutOfBounds)
        );
        assert_eq!(
            apply(R_AARCH64_NONE, &mut bytes, 0, &at(0)),
            Ok(Applied::Direct)
        );
        assert_eq!(needs(1030), None);
        assert_eq!(name(R_AARCH64_JUMP26), Some("R_AARCH64_JUMP26"));
        assert!(needs(R_AARCH64_CALL26).is_some_and(|needs| needs.stub));
        assert!(needs(R_AARCH64_ADR_GOT_PAGE).is_some_and(|needs| needs.got_slot));
    }
}
