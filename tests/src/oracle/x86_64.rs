//! x86-64 for the oracle, from the System V psABI (§4.4): which relocations
//! reach their target through linkage (GOT, PLT, stubs), which bytes they
//! touch, how to read their fields back, and modload's stub format. Written
//! from the ABI, not from the loader, so it can catch the loader's mistakes.

use super::isa::Linkage;

const R_X86_64_GOT32: u32 = 3;
const R_X86_64_PLT32: u32 = 4;
/// `R_X86_64_GOTPCREL`: G + GOT + A - P, 32 bits.
pub const R_X86_64_GOTPCREL: u32 = 9;
const R_X86_64_GOTOFF64: u32 = 25;
const R_X86_64_GOTPC32: u32 = 26;
/// `R_X86_64_GOT64`: G + A, 64 bits.
pub const R_X86_64_GOT64: u32 = 27;
/// `R_X86_64_GOTPCREL64`: G + GOT + A - P, 64 bits (lld lacks it).
pub const R_X86_64_GOTPCREL64: u32 = 28;
const R_X86_64_GOTPC64: u32 = 29;
/// `R_X86_64_GOTPLT64`: G + A, 64 bits, with a PLT entry (lld lacks it).
pub const R_X86_64_GOTPLT64: u32 = 30;
const R_X86_64_PLTOFF64: u32 = 31;
const R_X86_64_GOTPCRELX: u32 = 41;
const R_X86_64_REX_GOTPCRELX: u32 = 42;

/// `mov disp(%rip), %reg`, the only instruction modload relaxes (to `lea`).
pub const MOV_LOAD: u8 = 0x8b;
/// `lea disp(%rip), %reg`.
pub const LEA: u8 = 0x8d;

/// Bytes of a modload stub: `jmp *0(%rip)`, the 8-byte target, 2 bytes of padding.
pub const STUB_SIZE: u64 = 16;

/// The psABI name of the types the oracle reports on.
pub fn name(r_type: u32) -> Option<&'static str> {
    Some(match r_type {
        0 => "R_X86_64_NONE",
        1 => "R_X86_64_64",
        2 => "R_X86_64_PC32",
        R_X86_64_GOT32 => "R_X86_64_GOT32",
        R_X86_64_PLT32 => "R_X86_64_PLT32",
        R_X86_64_GOTPCREL => "R_X86_64_GOTPCREL",
        10 => "R_X86_64_32",
        11 => "R_X86_64_32S",
        12 => "R_X86_64_16",
        13 => "R_X86_64_PC16",
        14 => "R_X86_64_8",
        15 => "R_X86_64_PC8",
        24 => "R_X86_64_PC64",
        R_X86_64_GOTOFF64 => "R_X86_64_GOTOFF64",
        R_X86_64_GOTPC32 => "R_X86_64_GOTPC32",
        R_X86_64_GOT64 => "R_X86_64_GOT64",
        R_X86_64_GOTPCREL64 => "R_X86_64_GOTPCREL64",
        R_X86_64_GOTPC64 => "R_X86_64_GOTPC64",
        R_X86_64_GOTPLT64 => "R_X86_64_GOTPLT64",
        R_X86_64_PLTOFF64 => "R_X86_64_PLTOFF64",
        32 => "R_X86_64_SIZE32",
        33 => "R_X86_64_SIZE64",
        R_X86_64_GOTPCRELX => "R_X86_64_GOTPCRELX",
        R_X86_64_REX_GOTPCRELX => "R_X86_64_REX_GOTPCRELX",
        _ => return None,
    })
}

/// How a relocation of type `r_type` reaches its target. Every type not named
/// here computes the same value in any linker, so its bytes must match.
pub fn linkage(r_type: u32) -> Linkage {
    match r_type {
        R_X86_64_PLT32 => Linkage::Call,
        R_X86_64_GOTPCREL => Linkage::GotPcRelative { relaxable: false },
        R_X86_64_GOTPCRELX | R_X86_64_REX_GOTPCRELX => Linkage::GotPcRelative { relaxable: true },
        R_X86_64_GOTPCREL64 => Linkage::GotPcRelative { relaxable: false },
        R_X86_64_GOT32 | R_X86_64_GOT64 | R_X86_64_GOTPLT64 => Linkage::GotSlotOffset,
        // PLTOFF64 is L - GOT + A; with no PLT (static symbols) L is S.
        R_X86_64_GOTOFF64 | R_X86_64_PLTOFF64 => Linkage::GotRelative,
        R_X86_64_GOTPC32 | R_X86_64_GOTPC64 => Linkage::GotPc,
        _ => Linkage::Direct,
    }
}

/// Bytes of the field, from the relocation's offset.
pub fn field_width(r_type: u32) -> usize {
    match r_type {
        1 | 24 | R_X86_64_GOTOFF64 | R_X86_64_GOT64 | R_X86_64_GOTPCREL64 | R_X86_64_GOTPC64
        | R_X86_64_GOTPLT64 | R_X86_64_PLTOFF64 | 33 => 8,
        12 | 13 => 2,
        14 | 15 => 1,
        0 => 0,
        _ => 4,
    }
}

/// The bytes a linker may change for this relocation, as `(start, len)` from
/// its offset: the field, and for a relaxable GOT load also the opcode two
/// bytes before it (`mov` may become `lea`).
pub fn touched(r_type: u32) -> (i64, usize) {
    match linkage(r_type) {
        Linkage::GotPcRelative { relaxable: true } => (-2, 6),
        _ => (0, field_width(r_type)),
    }
}

/// The field's value, sign-extended: what the linker computed for it.
pub fn field(r_type: u32, bytes: &[u8]) -> Option<i64> {
    let width = field_width(r_type);
    let raw = bytes.get(..width)?;
    let mut word = [0u8; 8];
    word[..width].copy_from_slice(raw);
    let value = u64::from_le_bytes(word);
    let shift = 64 - 8 * width as u32;
    Some(((value << shift) as i64) >> shift)
}

/// Where a call whose field is `value` goes: `P + value - A` is S (or the
/// stub that jumps to S), because the addend already counts from the field to
/// the end of the instruction.
pub fn call_destination(place: u64, value: i64, addend: i64) -> u64 {
    place.wrapping_add_signed(value).wrapping_sub(addend as u64)
}

/// The target of a modload stub, `ff 25 00 00 00 00` followed by the 8-byte
/// address, or `None` if `bytes` does not start with one.
pub fn stub_target(bytes: &[u8]) -> Option<u64> {
    if bytes.get(..6)? != [0xff, 0x25, 0, 0, 0, 0] {
        return None;
    }
    Some(u64::from_le_bytes(bytes.get(6..14)?.try_into().ok()?))
}

/// For a relaxable load with its displacement at `offset` of `code`: whether
/// the instruction has REX.W (a 64-bit register), which decides how much of
/// the GOT slot it loads.
pub fn loads_64_bits(code: &[u8], offset: usize) -> bool {
    offset
        .checked_sub(3)
        .and_then(|at| code.get(at))
        .is_some_and(|rex| rex & 0xf0 == 0x40 && rex & 0x08 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields() {
        assert_eq!(field(2, &[0xfc, 0xff, 0xff, 0xff]), Some(-4));
        assert_eq!(field(15, &[0x80]), Some(-128));
        assert_eq!(field(12, &[0xff, 0x7f]), Some(0x7fff));
        assert_eq!(field(1, &u64::MAX.to_le_bytes()), Some(-1));
        assert_eq!(field(2, &[0, 0]), None);
    }

    #[test]
    fn decodes_stubs_and_calls() {
        let mut stub = vec![0xff, 0x25, 0, 0, 0, 0];
        stub.extend_from_slice(&0xffff_ffff_8000_1234u64.to_le_bytes());
        stub.extend_from_slice(&[0xcc, 0xcc]);
        assert_eq!(stub_target(&stub), Some(0xffff_ffff_8000_1234));
        stub[1] = 0x15;
        assert_eq!(stub_target(&stub), None);
        // call at 0x1000: e8 <disp>, field at 0x1001, A = -4, target 0x2000.
        assert_eq!(call_destination(0x1001, 0x2000 - 0x1005, -4), 0x2000);
        assert_eq!(call_destination(0x1001, -0x1005, -4), 0);
    }

    #[test]
    fn classifies() {
        assert_eq!(linkage(4), Linkage::Call);
        assert_eq!(linkage(42), Linkage::GotPcRelative { relaxable: true });
        assert_eq!(linkage(2), Linkage::Direct);
        assert_eq!(touched(41), (-2, 6));
        assert_eq!(touched(27), (0, 8));
        // 48 8b 05 <disp>: REX.W mov; 8b 05 <disp>: 32-bit mov.
        assert!(loads_64_bits(&[0x48, 0x8b, 0x05, 0, 0, 0, 0], 3));
        assert!(!loads_64_bits(&[0x90, 0x8b, 0x05, 0, 0, 0, 0], 3));
        assert!(!loads_64_bits(&[0x8b, 0x05, 0, 0, 0, 0], 2));
    }
}
