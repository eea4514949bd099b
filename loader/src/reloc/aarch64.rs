//! AArch64 relocations (ELF for the Arm 64-bit Architecture, AAELF64, §5.7).
//!
//! Every function here is pure: the instruction or data word comes in as bytes,
//! and either the patched word is written back or an error says which rule the
//! value broke. Nothing is written when a check fails.

use super::{write_field, Applied, FixupInputs, Needs, Range};
use crate::error::RelocationProblem;

/// `R_AARCH64_NONE`.
pub const R_AARCH64_NONE: u32 = 0;
/// `R_AARCH64_NONE` as some older tools number it (withdrawn `R_AARCH64_NULL`).
pub const R_AARCH64_NONE_OLD: u32 = 256;
/// `R_AARCH64_ABS64`: S + A, 64 bits.
pub const R_AARCH64_ABS64: u32 = 257;
/// `R_AARCH64_ABS32`: S + A, 32 bits, signed or unsigned.
pub const R_AARCH64_ABS32: u32 = 258;
/// `R_AARCH64_ABS16`: S + A, 16 bits, signed or unsigned.
pub const R_AARCH64_ABS16: u32 = 259;
/// `R_AARCH64_PREL64`: S + A - P, 64 bits.
pub const R_AARCH64_PREL64: u32 = 260;
/// `R_AARCH64_PREL32`: S + A - P, 32 bits.
pub const R_AARCH64_PREL32: u32 = 261;
/// `R_AARCH64_PREL16`: S + A - P, 16 bits.
pub const R_AARCH64_PREL16: u32 = 262;
/// `R_AARCH64_MOVW_UABS_G0`: bits 0-15 of S + A in a MOVZ/MOVK, checked.
pub const R_AARCH64_MOVW_UABS_G0: u32 = 263;
/// `R_AARCH64_MOVW_UABS_G0_NC`: bits 0-15 of S + A, unchecked.
pub const R_AARCH64_MOVW_UABS_G0_NC: u32 = 264;
/// `R_AARCH64_MOVW_UABS_G1`: bits 16-31 of S + A, checked.
pub const R_AARCH64_MOVW_UABS_G1: u32 = 265;
/// `R_AARCH64_MOVW_UABS_G1_NC`: bits 16-31 of S + A, unchecked.
pub const R_AARCH64_MOVW_UABS_G1_NC: u32 = 266;
/// `R_AARCH64_MOVW_UABS_G2`: bits 32-47 of S + A, checked.
pub const R_AARCH64_MOVW_UABS_G2: u32 = 267;
/// `R_AARCH64_MOVW_UABS_G2_NC`: bits 32-47 of S + A, unchecked.
pub const R_AARCH64_MOVW_UABS_G2_NC: u32 = 268;
/// `R_AARCH64_MOVW_UABS_G3`: bits 48-63 of S + A.
pub const R_AARCH64_MOVW_UABS_G3: u32 = 269;
/// `R_AARCH64_MOVW_SABS_G0`: signed bits 0-15 of S + A; MOVN or MOVZ by sign.
pub const R_AARCH64_MOVW_SABS_G0: u32 = 270;
/// `R_AARCH64_MOVW_SABS_G1`: signed bits 16-31 of S + A.
pub const R_AARCH64_MOVW_SABS_G1: u32 = 271;
/// `R_AARCH64_MOVW_SABS_G2`: signed bits 32-47 of S + A.
pub const R_AARCH64_MOVW_SABS_G2: u32 = 272;
/// `R_AARCH64_LD_PREL_LO19`: S + A - P in a load-literal, ±1 MiB.
pub const R_AARCH64_LD_PREL_LO19: u32 = 273;
/// `R_AARCH64_ADR_PREL_LO21`: S + A - P in an ADR, ±1 MiB.
pub const R_AARCH64_ADR_PREL_LO21: u32 = 274;
/// `R_AARCH64_ADR_PREL_PG_HI21`: Page(S + A) - Page(P) in an ADRP, ±4 GiB.
pub const R_AARCH64_ADR_PREL_PG_HI21: u32 = 275;
/// `R_AARCH64_ADR_PREL_PG_HI21_NC`: the same, unchecked.
pub const R_AARCH64_ADR_PREL_PG_HI21_NC: u32 = 276;
/// `R_AARCH64_ADD_ABS_LO12_NC`: bits 0-11 of S + A in an ADD.
pub const R_AARCH64_ADD_ABS_LO12_NC: u32 = 277;
/// `R_AARCH64_LDST8_ABS_LO12_NC`: bits 0-11 of S + A in a byte load or store.
pub const R_AARCH64_LDST8_ABS_LO12_NC: u32 = 278;
/// `R_AARCH64_TSTBR14`: S + A - P in a TBZ/TBNZ, ±32 KiB.
pub const R_AARCH64_TSTBR14: u32 = 279;
/// `R_AARCH64_CONDBR19`: S + A - P in a B.cond/CBZ/CBNZ, ±1 MiB.
pub const R_AARCH64_CONDBR19: u32 = 280;
/// `R_AARCH64_JUMP26`: S + A - P in a B, ±128 MiB (or through a veneer).
pub const R_AARCH64_JUMP26: u32 = 282;
/// `R_AARCH64_CALL26`: S + A - P in a BL, ±128 MiB (or through a veneer).
pub const R_AARCH64_CALL26: u32 = 283;
/// `R_AARCH64_LDST16_ABS_LO12_NC`: bits 1-11 of S + A, 2-byte aligned.
pub const R_AARCH64_LDST16_ABS_LO12_NC: u32 = 284;
/// `R_AARCH64_LDST32_ABS_LO12_NC`: bits 2-11 of S + A, 4-byte aligned.
pub const R_AARCH64_LDST32_ABS_LO12_NC: u32 = 285;
/// `R_AARCH64_LDST64_ABS_LO12_NC`: bits 3-11 of S + A, 8-byte aligned.
pub const R_AARCH64_LDST64_ABS_LO12_NC: u32 = 286;
/// `R_AARCH64_MOVW_PREL_G0`: signed bits 0-15 of S + A - P, checked.
pub const R_AARCH64_MOVW_PREL_G0: u32 = 287;
/// `R_AARCH64_MOVW_PREL_G0_NC`: bits 0-15 of S + A - P, unchecked.
pub const R_AARCH64_MOVW_PREL_G0_NC: u32 = 288;
/// `R_AARCH64_MOVW_PREL_G1`: signed bits 16-31 of S + A - P, checked.
pub const R_AARCH64_MOVW_PREL_G1: u32 = 289;
/// `R_AARCH64_MOVW_PREL_G1_NC`: bits 16-31 of S + A - P, unchecked.
pub const R_AARCH64_MOVW_PREL_G1_NC: u32 = 290;
/// `R_AARCH64_MOVW_PREL_G2`: signed bits 32-47 of S + A - P, checked.
pub const R_AARCH64_MOVW_PREL_G2: u32 = 291;
/// `R_AARCH64_MOVW_PREL_G2_NC`: bits 32-47 of S + A - P, unchecked.
pub const R_AARCH64_MOVW_PREL_G2_NC: u32 = 292;
/// `R_AARCH64_MOVW_PREL_G3`: bits 48-63 of S + A - P.
pub const R_AARCH64_MOVW_PREL_G3: u32 = 293;
/// `R_AARCH64_LDST128_ABS_LO12_NC`: bits 4-11 of S + A, 16-byte aligned.
pub const R_AARCH64_LDST128_ABS_LO12_NC: u32 = 299;
/// `R_AARCH64_GOTREL64`: S + A - GOT, 64 bits.
pub const R_AARCH64_GOTREL64: u32 = 307;
/// `R_AARCH64_GOTREL32`: S + A - GOT, 32 bits.
pub const R_AARCH64_GOTREL32: u32 = 308;
/// `R_AARCH64_GOT_LD_PREL19`: G(GDAT(S)) + A - P in a load-literal, ±1 MiB.
pub const R_AARCH64_GOT_LD_PREL19: u32 = 309;
/// `R_AARCH64_ADR_GOT_PAGE`: Page(G(GDAT(S)) + A) - Page(P) in an ADRP.
pub const R_AARCH64_ADR_GOT_PAGE: u32 = 311;
/// `R_AARCH64_LD64_GOT_LO12_NC`: bits 3-11 of G(GDAT(S)) + A in an LDR.
pub const R_AARCH64_LD64_GOT_LO12_NC: u32 = 312;
/// `R_AARCH64_LD64_GOTPAGE_LO15`: G(GDAT(S)) + A - Page(GOT) in an LDR, 0..32 KiB.
pub const R_AARCH64_LD64_GOTPAGE_LO15: u32 = 313;

/// Bytes in a GOT slot.
pub const GOT_SLOT_SIZE: u64 = 8;
/// Bytes in a veneer: `ldr x16, #8; br x16; .quad target`.
pub const VENEER_SIZE: u64 = 16;
/// Alignment of the veneer area; keeps each veneer's literal 8-byte aligned,
/// which matters where unaligned loads fault (MMU off, or `SCTLR.A` set).
pub const VENEER_ALIGN: u64 = 16;

/// How far a `B`/`BL` reaches: ±128 MiB.
pub const BRANCH26_REACH: i128 = 1 << 27;

/// The AAELF64 name of a type, or `None` for one this loader does not know.
pub fn name(r_type: u32) -> Option<&'static str> {
    Some(match r_type {
        R_AARCH64_NONE | R_AARCH64_NONE_OLD => "R_AARCH64_NONE",
        R_AARCH64_ABS64 => "R_AARCH64_ABS64",
        R_AARCH64_ABS32 => "R_AARCH64_ABS32",
        R_AARCH64_ABS16 => "R_AARCH64_ABS16",
        R_AARCH64_PREL64 => "R_AARCH64_PREL64",
        R_AARCH64_PREL32 => "R_AARCH64_PREL32",
        R_AARCH64_PREL16 => "R_AARCH64_PREL16",
        R_AARCH64_MOVW_UABS_G0 => "R_AARCH64_MOVW_UABS_G0",
        R_AARCH64_MOVW_UABS_G0_NC => "R_AARCH64_MOVW_UABS_G0_NC",
        R_AARCH64_MOVW_UABS_G1 => "R_AARCH64_MOVW_UABS_G1",
        R_AARCH64_MOVW_UABS_G1_NC => "R_AARCH64_MOVW_UABS_G1_NC",
        R_AARCH64_MOVW_UABS_G2 => "R_AARCH64_MOVW_UABS_G2",
        R_AARCH64_MOVW_UABS_G2_NC => "R_AARCH64_MOVW_UABS_G2_NC",
        R_AARCH64_MOVW_UABS_G3 => "R_AARCH64_MOVW_UABS_G3",
        R_AARCH64_MOVW_SABS_G0 => "R_AARCH64_MOVW_SABS_G0",
        R_AARCH64_MOVW_SABS_G1 => "R_AARCH64_MOVW_SABS_G1",
        R_AARCH64_MOVW_SABS_G2 => "R_AARCH64_MOVW_SABS_G2",
        R_AARCH64_LD_PREL_LO19 => "R_AARCH64_LD_PREL_LO19",
        R_AARCH64_ADR_PREL_LO21 => "R_AARCH64_ADR_PREL_LO21",
        R_AARCH64_ADR_PREL_PG_HI21 => "R_AARCH64_ADR_PREL_PG_HI21",
        R_AARCH64_ADR_PREL_PG_HI21_NC => "R_AARCH64_ADR_PREL_PG_HI21_NC",
        R_AARCH64_ADD_ABS_LO12_NC => "R_AARCH64_ADD_ABS_LO12_NC",
        R_AARCH64_LDST8_ABS_LO12_NC => "R_AARCH64_LDST8_ABS_LO12_NC",
        R_AARCH64_TSTBR14 => "R_AARCH64_TSTBR14",
        R_AARCH64_CONDBR19 => "R_AARCH64_CONDBR19",
        R_AARCH64_JUMP26 => "R_AARCH64_JUMP26",
        R_AARCH64_CALL26 => "R_AARCH64_CALL26",
        R_AARCH64_LDST16_ABS_LO12_NC => "R_AARCH64_LDST16_ABS_LO12_NC",
        R_AARCH64_LDST32_ABS_LO12_NC => "R_AARCH64_LDST32_ABS_LO12_NC",
        R_AARCH64_LDST64_ABS_LO12_NC => "R_AARCH64_LDST64_ABS_LO12_NC",
        R_AARCH64_MOVW_PREL_G0 => "R_AARCH64_MOVW_PREL_G0",
        R_AARCH64_MOVW_PREL_G0_NC => "R_AARCH64_MOVW_PREL_G0_NC",
        R_AARCH64_MOVW_PREL_G1 => "R_AARCH64_MOVW_PREL_G1",
        R_AARCH64_MOVW_PREL_G1_NC => "R_AARCH64_MOVW_PREL_G1_NC",
        R_AARCH64_MOVW_PREL_G2 => "R_AARCH64_MOVW_PREL_G2",
        R_AARCH64_MOVW_PREL_G2_NC => "R_AARCH64_MOVW_PREL_G2_NC",
        R_AARCH64_MOVW_PREL_G3 => "R_AARCH64_MOVW_PREL_G3",
        R_AARCH64_LDST128_ABS_LO12_NC => "R_AARCH64_LDST128_ABS_LO12_NC",
        R_AARCH64_GOTREL64 => "R_AARCH64_GOTREL64",
        R_AARCH64_GOTREL32 => "R_AARCH64_GOTREL32",
        R_AARCH64_GOT_LD_PREL19 => "R_AARCH64_GOT_LD_PREL19",
        R_AARCH64_ADR_GOT_PAGE => "R_AARCH64_ADR_GOT_PAGE",
        R_AARCH64_LD64_GOT_LO12_NC => "R_AARCH64_LD64_GOT_LO12_NC",
        R_AARCH64_LD64_GOTPAGE_LO15 => "R_AARCH64_LD64_GOTPAGE_LO15",
        1024 => "R_AARCH64_COPY",
        1025 => "R_AARCH64_GLOB_DAT",
        1026 => "R_AARCH64_JUMP_SLOT",
        1027 => "R_AARCH64_RELATIVE",
        1028 => "R_AARCH64_TLS_DTPMOD",
        1029 => "R_AARCH64_TLS_DTPREL",
        1030 => "R_AARCH64_TLS_TPREL",
        1031 => "R_AARCH64_TLSDESC",
        1032 => "R_AARCH64_IRELATIVE",
        512..=573 => "R_AARCH64_TLS (thread-local storage)",
        _ => return None,
    })
}

/// What `r_type` needs, or `None` if it is not supported.
pub fn needs(r_type: u32) -> Option<Needs> {
    let none = Needs::default();
    Some(match r_type {
        R_AARCH64_ADR_GOT_PAGE
        | R_AARCH64_LD64_GOT_LO12_NC
        | R_AARCH64_LD64_GOTPAGE_LO15
        | R_AARCH64_GOT_LD_PREL19 => Needs {
            got_slot: true,
            ..none
        },
        R_AARCH64_CALL26 | R_AARCH64_JUMP26 => Needs { stub: true, ..none },
        R_AARCH64_NONE
        | R_AARCH64_NONE_OLD
        | R_AARCH64_ABS64
        | R_AARCH64_ABS32
        | R_AARCH64_ABS16
        | R_AARCH64_PREL64
        | R_AARCH64_PREL32
        | R_AARCH64_PREL16
        | R_AARCH64_MOVW_UABS_G0..=R_AARCH64_MOVW_SABS_G2
        | R_AARCH64_LD_PREL_LO19
        | R_AARCH64_ADR_PREL_LO21
        | R_AARCH64_ADR_PREL_PG_HI21
        | R_AARCH64_ADR_PREL_PG_HI21_NC
        | R_AARCH64_ADD_ABS_LO12_NC
        | R_AARCH64_LDST8_ABS_LO12_NC
        | R_AARCH64_TSTBR14
        | R_AARCH64_CONDBR19
        | R_AARCH64_LDST16_ABS_LO12_NC
        | R_AARCH64_LDST32_ABS_LO12_NC
        | R_AARCH64_LDST64_ABS_LO12_NC
        | R_AARCH64_MOVW_PREL_G0..=R_AARCH64_MOVW_PREL_G3
        | R_AARCH64_LDST128_ABS_LO12_NC
        | R_AARCH64_GOTREL64
        | R_AARCH64_GOTREL32 => none,
        _ => return None,
    })
}

/// The 4 KiB page holding `address`, as ADRP computes it.
pub const fn page(address: i128) -> i128 {
    address & !0xfff
}

/// Applies one relocation to `bytes` (the section's contents) at `offset`.
pub fn apply(
    r_type: u32,
    bytes: &mut [u8],
    offset: usize,
    inputs: &FixupInputs,
) -> Result<Applied, RelocationProblem> {
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
    match r_type {
        R_AARCH64_NONE | R_AARCH64_NONE_OLD => Ok(()),
        R_AARCH64_ABS64 | R_AARCH64_PREL64 | R_AARCH64_GOTREL64 => {
            let value = match r_type {
                R_AARCH64_ABS64 => s + a,
                R_AARCH64_PREL64 => s + a - p,
                _ => s + a - got,
            };
            write_field(bytes, offset, 8, value, Range::Either)
        }
        R_AARCH64_ABS32 => write_field(bytes, offset, 4, s + a, Range::Either),
        R_AARCH64_PREL32 => write_field(bytes, offset, 4, s + a - p, Range::Either),
        R_AARCH64_GOTREL32 => write_field(bytes, offset, 4, s + a - got, Range::Either),
        R_AARCH64_ABS16 => write_field(bytes, offset, 2, s + a, Range::Either),
        R_AARCH64_PREL16 => write_field(bytes, offset, 2, s + a - p, Range::Either),
        R_AARCH64_MOVW_UABS_G0..=R_AARCH64_MOVW_UABS_G3 => {
            patch(bytes, offset, |insn| move_unsigned(r_type, insn, s + a))
        }
        R_AARCH64_MOVW_SABS_G0..=R_AARCH64_MOVW_SABS_G2 => {
            let group = r_type - R_AARCH64_MOVW_SABS_G0;
            patch(bytes, offset, |insn| move_signed(insn, s + a, group, true))
        }
        R_AARCH64_MOVW_PREL_G0..=R_AARCH64_MOVW_PREL_G3 => {
            let index = r_type - R_AARCH64_MOVW_PREL_G0;
            // Checked and unchecked forms alternate; G3 needs no check.
            let (group, checked) = (index / 2, index & 1 == 0 && index < 6);
            patch(bytes, offset, |insn| {
                move_signed(insn, s + a - p, group, checked)
            })
        }
        R_AARCH64_LD_PREL_LO19 => patch(bytes, offset, |insn| imm19(insn, s + a - p)),
        R_AARCH64_GOT_LD_PREL19 => {
            let value = slot()? + a - p;
            patch(bytes, offset, |insn| imm19(insn, value))
        }
        R_AARCH64_CONDBR19 => patch(bytes, offset, |insn| imm19(insn, s + a - p)),
        R_AARCH64_TSTBR14 => patch(bytes, offset, |insn| {
            let value = aligned(s + a - p, 4)?;
            let field = signed_bits(value, 16)? >> 2;
            Ok(insert(insn, field, 5, 14))
        }),
        R_AARCH64_ADR_PREL_LO21 => patch(bytes, offset, |insn| {
            Ok(adr_immediate(insn, signed_bits(s + a - p, 21)?))
        }),
        R_AARCH64_ADR_PREL_PG_HI21 | R_AARCH64_ADR_PREL_PG_HI21_NC => {
            let checked = r_type == R_AARCH64_ADR_PREL_PG_HI21;
            patch(bytes, offset, |insn| {
                adrp(insn, page(s + a) - page(p), checked)
            })
        }
        R_AARCH64_ADR_GOT_PAGE => {
            let value = page(slot()? + a) - page(p);
            patch(bytes, offset, |insn| adrp(insn, value, true))
        }
        R_AARCH64_ADD_ABS_LO12_NC => patch(bytes, offset, |insn| low12(insn, s + a, 0)),
        R_AARCH64_LDST8_ABS_LO12_NC => patch(bytes, offset, |insn| low12(insn, s + a, 0)),
        R_AARCH64_LDST16_ABS_LO12_NC => patch(bytes, offset, |insn| low12(insn, s + a, 1)),
        R_AARCH64_LDST32_ABS_LO12_NC => patch(bytes, offset, |insn| low12(insn, s + a, 2)),
        R_AARCH64_LDST64_ABS_LO12_NC => patch(bytes, offset, |insn| low12(insn, s + a, 3)),
        R_AARCH64_LDST128_ABS_LO12_NC => patch(bytes, offset, |insn| low12(insn, s + a, 4)),
        R_AARCH64_LD64_GOT_LO12_NC => {
            let value = slot()? + a;
            patch(bytes, offset, |insn| low12(insn, value, 3))
        }
        R_AARCH64_LD64_GOTPAGE_LO15 => {
            let value = aligned(slot()? + a - page(got), 8)?;
            if !(0..1 << 15).contains(&value) {
                return Err(RelocationProblem::Overflow { value });
            }
            patch(bytes, offset, |insn| Ok(insert(insn, value >> 3, 10, 12)))
        }
        R_AARCH64_CALL26 | R_AARCH64_JUMP26 => return branch26(bytes, offset, inputs),
        _ => Err(RelocationProblem::Unsupported),
    }
    .map(|()| Applied::Direct)
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
pub fn write_veneer(bytes: &mut [u8], target: u64) -> Result<(), RelocationProblem> {
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

/// The target of a veneer written by [`write_veneer`], or `None` if `bytes`
/// does not start with one. For tools that check where a branch ends up.
pub fn veneer_target(bytes: &[u8]) -> Option<u64> {
    let head = bytes.get(..8)?;
    if head != [0x50, 0x00, 0x00, 0x58, 0x00, 0x02, 0x1f, 0xd6] {
        return None;
    }
    Some(u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?))
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
fn move_unsigned(r_type: u32, insn: u32, value: i128) -> Result<u32, RelocationProblem> {
    let index = r_type - R_AARCH64_MOVW_UABS_G0;
    let group = index / 2;
    let checked = index & 1 == 0 && group < 3;
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
