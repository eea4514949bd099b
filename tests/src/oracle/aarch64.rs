//! AArch64 for the oracle, from the Arm ARM's instruction encodings and
//! AAELF64's relocation table: which relocations go through linkage, which
//! bytes they touch, how to read their immediates back, and the veneers and
//! thunks that calls may pass through. Written from the specifications, not
//! from the loader, so it can catch the loader's mistakes.

use super::isa::Linkage;

const R_AARCH64_ABS64: u32 = 257;
const R_AARCH64_ABS32: u32 = 258;
const R_AARCH64_ABS16: u32 = 259;
const R_AARCH64_PREL64: u32 = 260;
const R_AARCH64_PREL32: u32 = 261;
const R_AARCH64_PREL16: u32 = 262;
const R_AARCH64_ADR_PREL_PG_HI21: u32 = 275;
const R_AARCH64_ADR_PREL_PG_HI21_NC: u32 = 276;
const R_AARCH64_ADD_ABS_LO12_NC: u32 = 277;
const R_AARCH64_JUMP26: u32 = 282;
const R_AARCH64_CALL26: u32 = 283;
const R_AARCH64_GOTREL64: u32 = 307;
const R_AARCH64_GOTREL32: u32 = 308;
const R_AARCH64_GOT_LD_PREL19: u32 = 309;
const R_AARCH64_ADR_GOT_PAGE: u32 = 311;
const R_AARCH64_LD64_GOT_LO12_NC: u32 = 312;
const R_AARCH64_LD64_GOTPAGE_LO15: u32 = 313;

/// Bytes of a modload veneer: `ldr x16, #8`, `br x16`, the 8-byte target.
pub const VENEER_SIZE: u64 = 16;

/// `ldr x16, #8` (load-literal, 64-bit, imm19 = 2).
const LDR_X16_PLUS_8: u32 = 0x5800_0050;
/// `br x16`.
const BR_X16: u32 = 0xd61f_0200;
/// `b` (imm26 clear), and the bits that make an instruction one.
const B: u32 = 0x1400_0000;
const BRANCH_OPCODE: u32 = 0xfc00_0000;
/// `adrp x16, #0` (immediate fields clear).
const ADRP_X16: u32 = 0x9000_0010;
/// `add x16, x16, #0` (64-bit, no shift, imm12 clear).
const ADD_X16_X16: u32 = 0x9100_0210;

/// The AAELF64 name of the types the oracle reports on.
pub fn name(r_type: u32) -> Option<&'static str> {
    Some(match r_type {
        0 | 256 => "R_AARCH64_NONE",
        R_AARCH64_ABS64 => "R_AARCH64_ABS64",
        R_AARCH64_ABS32 => "R_AARCH64_ABS32",
        R_AARCH64_ABS16 => "R_AARCH64_ABS16",
        R_AARCH64_PREL64 => "R_AARCH64_PREL64",
        R_AARCH64_PREL32 => "R_AARCH64_PREL32",
        R_AARCH64_PREL16 => "R_AARCH64_PREL16",
        263 => "R_AARCH64_MOVW_UABS_G0",
        264 => "R_AARCH64_MOVW_UABS_G0_NC",
        265 => "R_AARCH64_MOVW_UABS_G1",
        266 => "R_AARCH64_MOVW_UABS_G1_NC",
        267 => "R_AARCH64_MOVW_UABS_G2",
        268 => "R_AARCH64_MOVW_UABS_G2_NC",
        269 => "R_AARCH64_MOVW_UABS_G3",
        270 => "R_AARCH64_MOVW_SABS_G0",
        271 => "R_AARCH64_MOVW_SABS_G1",
        272 => "R_AARCH64_MOVW_SABS_G2",
        273 => "R_AARCH64_LD_PREL_LO19",
        274 => "R_AARCH64_ADR_PREL_LO21",
        R_AARCH64_ADR_PREL_PG_HI21 => "R_AARCH64_ADR_PREL_PG_HI21",
        R_AARCH64_ADR_PREL_PG_HI21_NC => "R_AARCH64_ADR_PREL_PG_HI21_NC",
        R_AARCH64_ADD_ABS_LO12_NC => "R_AARCH64_ADD_ABS_LO12_NC",
        278 => "R_AARCH64_LDST8_ABS_LO12_NC",
        279 => "R_AARCH64_TSTBR14",
        280 => "R_AARCH64_CONDBR19",
        R_AARCH64_JUMP26 => "R_AARCH64_JUMP26",
        R_AARCH64_CALL26 => "R_AARCH64_CALL26",
        284 => "R_AARCH64_LDST16_ABS_LO12_NC",
        285 => "R_AARCH64_LDST32_ABS_LO12_NC",
        286 => "R_AARCH64_LDST64_ABS_LO12_NC",
        287 => "R_AARCH64_MOVW_PREL_G0",
        288 => "R_AARCH64_MOVW_PREL_G0_NC",
        289 => "R_AARCH64_MOVW_PREL_G1",
        290 => "R_AARCH64_MOVW_PREL_G1_NC",
        291 => "R_AARCH64_MOVW_PREL_G2",
        292 => "R_AARCH64_MOVW_PREL_G2_NC",
        293 => "R_AARCH64_MOVW_PREL_G3",
        299 => "R_AARCH64_LDST128_ABS_LO12_NC",
        R_AARCH64_GOTREL64 => "R_AARCH64_GOTREL64",
        R_AARCH64_GOTREL32 => "R_AARCH64_GOTREL32",
        R_AARCH64_GOT_LD_PREL19 => "R_AARCH64_GOT_LD_PREL19",
        R_AARCH64_ADR_GOT_PAGE => "R_AARCH64_ADR_GOT_PAGE",
        R_AARCH64_LD64_GOT_LO12_NC => "R_AARCH64_LD64_GOT_LO12_NC",
        R_AARCH64_LD64_GOTPAGE_LO15 => "R_AARCH64_LD64_GOTPAGE_LO15",
        _ => return None,
    })
}

/// How a relocation of type `r_type` reaches its target.
pub fn linkage(r_type: u32) -> Linkage {
    match r_type {
        R_AARCH64_CALL26 | R_AARCH64_JUMP26 => Linkage::Call,
        R_AARCH64_ADR_GOT_PAGE => Linkage::GotPage,
        R_AARCH64_LD64_GOT_LO12_NC => Linkage::GotLow12,
        R_AARCH64_LD64_GOTPAGE_LO15 => Linkage::GotPageLow15,
        R_AARCH64_GOT_LD_PREL19 => Linkage::GotLiteral,
        R_AARCH64_GOTREL64 | R_AARCH64_GOTREL32 => Linkage::GotRelative,
        _ => Linkage::Direct,
    }
}

/// Bytes of the field: data words have their width, instructions are 4.
fn width(r_type: u32) -> usize {
    match r_type {
        0 | 256 => 0,
        R_AARCH64_ABS64 | R_AARCH64_PREL64 | R_AARCH64_GOTREL64 => 8,
        R_AARCH64_ABS16 | R_AARCH64_PREL16 => 2,
        _ => 4,
    }
}

/// The bytes a linker may change: the whole instruction or data word.
pub fn touched(r_type: u32) -> (i64, usize) {
    (0, width(r_type))
}

/// Sign-extends the low `bits` of `value`.
pub fn sign_extend(value: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((value << shift) as i64) >> shift
}

/// The byte offset in a `B`/`BL` (imm26, in words).
pub fn branch_offset(insn: u32) -> i64 {
    sign_extend(u64::from(insn & 0x03ff_ffff), 26) << 2
}

/// The page offset in an `ADRP` (immhi:immlo, in 4 KiB pages).
pub fn adrp_offset(insn: u32) -> i64 {
    let low = u64::from((insn >> 29) & 0x3);
    let high = u64::from((insn >> 5) & 0x7_ffff);
    sign_extend((high << 2) | low, 21) << 12
}

/// The byte offset in an `LDR`/`STR` (unsigned immediate): imm12 scaled by
/// the access size, which bits 30-31 give for integer registers.
pub fn unsigned_offset(insn: u32) -> i64 {
    i64::from((insn >> 10) & 0xfff) << (insn >> 30)
}

/// The byte offset in a load-literal or `B.cond`/`CBZ` (imm19, in words).
pub fn literal_offset(insn: u32) -> i64 {
    sign_extend(u64::from((insn >> 5) & 0x7_ffff), 19) << 2
}

/// The low 12 bits in an `ADD` (immediate, unshifted).
pub fn add_immediate(insn: u32) -> i64 {
    i64::from((insn >> 10) & 0xfff)
}

/// The value encoded for `r_type` in `bytes`, in bytes: a branch's offset, an
/// `ADRP`'s page difference, an `LDR`'s offset, or a data word.
pub fn field(r_type: u32, bytes: &[u8]) -> Option<i64> {
    let width = width(r_type);
    let raw = bytes.get(..width)?;
    let mut word = [0u8; 8];
    word[..width].copy_from_slice(raw);
    let value = u64::from_le_bytes(word);
    let insn = value as u32;
    Some(match r_type {
        R_AARCH64_CALL26 | R_AARCH64_JUMP26 => branch_offset(insn),
        R_AARCH64_ADR_GOT_PAGE => adrp_offset(insn),
        R_AARCH64_LD64_GOT_LO12_NC | R_AARCH64_LD64_GOTPAGE_LO15 => unsigned_offset(insn),
        R_AARCH64_GOT_LD_PREL19 => literal_offset(insn),
        R_AARCH64_ADR_PREL_PG_HI21 | R_AARCH64_ADR_PREL_PG_HI21_NC => adrp_offset(insn),
        R_AARCH64_ADD_ABS_LO12_NC => add_immediate(insn),
        _ if width == 0 => 0,
        _ => sign_extend(value, 8 * width as u32),
    })
}

fn words(bytes: &[u8], count: usize) -> Option<Vec<u32>> {
    let bytes = bytes.get(..4 * count)?;
    Some(
        bytes
            .chunks_exact(4)
            .map(|word| u32::from_le_bytes([word[0], word[1], word[2], word[3]]))
            .collect(),
    )
}

/// The target of a modload veneer (`ldr x16, #8; br x16; .quad target`).
pub fn veneer_target(bytes: &[u8]) -> Option<u64> {
    let code = words(bytes, 2)?;
    if code != [LDR_X16_PLUS_8, BR_X16] {
        return None;
    }
    Some(u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?))
}

/// The target of an lld range-extension thunk at `address`: the absolute
/// form (the same code as a modload veneer), the ADRP form
/// (`adrp x16, S; add x16, x16, :lo12:S; br x16`), or the short form that
/// either becomes when the thunk itself is in reach of S (`b S`; lld's
/// `AArch64Thunk::writeTo`). `bytes` may be as short as the thunk.
pub fn thunk_target(bytes: &[u8], address: u64) -> Option<u64> {
    if let Some(target) = veneer_target(bytes) {
        return Some(target);
    }
    if let Some(code) = words(bytes, 3) {
        let adrp = code[0] & !0x60ff_ffe0 == ADRP_X16;
        let add = code[1] & !0x003f_fc00 == ADD_X16_X16;
        if adrp && add && code[2] == BR_X16 {
            let page = (address & !0xfff).wrapping_add_signed(adrp_offset(code[0]));
            return Some(page.wrapping_add_signed(add_immediate(code[1])));
        }
    }
    let first = *words(bytes, 1)?.first()?;
    (first & BRANCH_OPCODE == B).then(|| address.wrapping_add_signed(branch_offset(first)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn le(words: &[u32]) -> Vec<u8> {
        words.iter().flat_map(|word| word.to_le_bytes()).collect()
    }

    #[test]
    fn decodes_branches() {
        // bl #-4 = 0x97ffffff; b #+0x7fffffc = 0x15ffffff (the maximum).
        assert_eq!(branch_offset(0x97ff_ffff), -4);
        assert_eq!(branch_offset(0x15ff_ffff), (1 << 27) - 4);
        assert_eq!(branch_offset(0x9600_0000), -(1 << 27));
        assert_eq!(field(283, &le(&[0x9400_0010])), Some(0x40));
    }

    #[test]
    fn decodes_adrp_ldr_and_literals() {
        // adrp x0, #0x1000 (immlo = 1): 0xb0000000; adrp x1, #-0x1000: 0xf0ffffe1.
        assert_eq!(adrp_offset(0xb000_0000), 0x1000);
        assert_eq!(adrp_offset(0xf0ff_ffe1), -0x1000);
        // adrp x16, #0x4_0000_0000 - 0x1000 (immhi all ones but the sign bit).
        assert_eq!(adrp_offset(0xf07f_fff0), (1 << 32) - 0x1000);
        // ldr x0, [x0, #0xff8] = 0xf947fc00; ldr w1, [x2, #8] = 0xb9400841.
        assert_eq!(unsigned_offset(0xf947_fc00), 0xff8);
        assert_eq!(unsigned_offset(0xb940_0841), 8);
        assert_eq!(field(312, &le(&[0xf947_fc00])), Some(0xff8));
        assert_eq!(field(275, &le(&[0xb000_0000])), Some(0x1000));
        assert_eq!(field(277, &le(&[0x912a_f000])), Some(0xabc));
        // ldr x0, #-8 = 0x58ffffc0; ldr x16, #8 = 0x58000050.
        assert_eq!(literal_offset(0x58ff_ffc0), -8);
        assert_eq!(literal_offset(LDR_X16_PLUS_8), 8);
        assert_eq!(field(309, &le(&[0x58ff_ffc0])), Some(-8));
        // add x0, x0, #0xabc = 0x912af000.
        assert_eq!(add_immediate(0x912a_f000), 0xabc);
        assert_eq!(field(258, &[0xff, 0xff, 0xff, 0xff]), Some(-1));
        assert_eq!(field(260, &[0; 4]), None);
    }

    #[test]
    fn decodes_veneers_and_thunks() {
        let mut veneer = le(&[LDR_X16_PLUS_8, BR_X16]);
        veneer.extend_from_slice(&0x1234_5678_9abc_def0u64.to_le_bytes());
        assert_eq!(veneer_target(&veneer), Some(0x1234_5678_9abc_def0));
        assert_eq!(thunk_target(&veneer, 0), Some(0x1234_5678_9abc_def0));
        assert_eq!(veneer_target(&veneer[..12]), None);
        // At 0x10_0000: adrp x16, #+0x2000 (immlo = 2); add x16, x16, #0x345; br x16.
        let adrp = ADRP_X16 | (2 << 29);
        let add = ADD_X16_X16 | (0x345 << 10);
        let thunk = le(&[adrp, add, BR_X16]);
        assert_eq!(thunk_target(&thunk, 0x10_0abc), Some(0x10_2345));
        assert_eq!(veneer_target(&thunk), None);
        assert_eq!(thunk_target(&le(&[adrp, add, 0xd65f_03c0]), 0), None);
        // The short form at 0x1000: b #+0x7ffff9c = 0x15ffffe7; b #-8.
        assert_eq!(
            thunk_target(&le(&[0x15ff_ffe7]), 0x1000),
            Some(0x1000 + 0x7ff_ff9c)
        );
        assert_eq!(thunk_target(&le(&[0x17ff_fffe, 0]), 0x1000), Some(0xff8));
        // bl is no thunk, nor is a lone word of anything else.
        assert_eq!(thunk_target(&le(&[0x9400_0001]), 0), None);
        assert_eq!(thunk_target(&le(&[BR_X16]), 0), None);
    }

    #[test]
    fn classifies() {
        assert_eq!(linkage(283), Linkage::Call);
        assert_eq!(linkage(311), Linkage::GotPage);
        assert_eq!(linkage(312), Linkage::GotLow12);
        assert_eq!(linkage(313), Linkage::GotPageLow15);
        assert_eq!(linkage(309), Linkage::GotLiteral);
        assert_eq!(linkage(275), Linkage::Direct);
        assert_eq!(touched(257), (0, 8));
        assert_eq!(touched(275), (0, 4));
    }
}
