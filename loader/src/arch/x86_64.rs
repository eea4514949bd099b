//! x86-64 relocations (System V psABI, chapter 4.4).

// The formulas below add and subtract the psABI's S, A, P and GOT, each a
// 64-bit value widened to `i128`: sums and differences of four of them stay
// below 2^67 in magnitude, so they cannot overflow, and keeping them as plain
// `+`/`-` lets them read like the ABI's tables. Shifts, masks and group
// numbers are derived from constants in this file. Every result is
// range-checked before a field is written.
#![allow(clippy::arithmetic_side_effects)]

use core::hint::select_unpredictable;

use super::{
    entry_inputs, write_field, write_signed32, write_word64, Applied, FixupInputs, Linking,
    NarrowModel, Needs, Range, Rela, NO_FAST_ADDRESS, RELA_ENTRY,
};
use crate::arch::RelocationProblem;

relocation_types! {
    /// `R_X86_64_NONE`.
    R_X86_64_NONE = 0,
    /// `R_X86_64_64`: S + A, 64 bits.
    R_X86_64_64 = 1,
    /// `R_X86_64_PC32`: S + A - P, signed 32 bits.
    R_X86_64_PC32 = 2,
    /// `R_X86_64_GOT32`: G + A, signed 32 bits (G is the slot's offset in the GOT).
    R_X86_64_GOT32 = 3,
    /// `R_X86_64_PLT32`: L + A - P, signed 32 bits.
    R_X86_64_PLT32 = 4,
    /// `R_X86_64_GOTPCREL`: G + GOT + A - P, signed 32 bits.
    R_X86_64_GOTPCREL = 9,
    /// `R_X86_64_32`: S + A, zero-extended 32 bits.
    R_X86_64_32 = 10,
    /// `R_X86_64_32S`: S + A, sign-extended 32 bits.
    R_X86_64_32S = 11,
    /// `R_X86_64_16`: S + A, 16 bits.
    R_X86_64_16 = 12,
    /// `R_X86_64_PC16`: S + A - P, signed 16 bits.
    R_X86_64_PC16 = 13,
    /// `R_X86_64_8`: S + A, 8 bits.
    R_X86_64_8 = 14,
    /// `R_X86_64_PC8`: S + A - P, signed 8 bits.
    R_X86_64_PC8 = 15,
    /// `R_X86_64_PC64`: S + A - P, 64 bits.
    R_X86_64_PC64 = 24,
    /// `R_X86_64_GOTOFF64`: S + A - GOT, 64 bits.
    R_X86_64_GOTOFF64 = 25,
    /// `R_X86_64_GOTPC32`: GOT + A - P, signed 32 bits.
    R_X86_64_GOTPC32 = 26,
    /// `R_X86_64_GOT64`: G + A, 64 bits.
    R_X86_64_GOT64 = 27,
    /// `R_X86_64_GOTPCREL64`: G + GOT - P + A, 64 bits.
    R_X86_64_GOTPCREL64 = 28,
    /// `R_X86_64_GOTPC64`: GOT - P + A, 64 bits.
    R_X86_64_GOTPC64 = 29,
    /// `R_X86_64_GOTPLT64`: G + A, 64 bits (like GOT64; there is no lazy binding).
    R_X86_64_GOTPLT64 = 30,
    /// `R_X86_64_PLTOFF64`: L - GOT + A, 64 bits.
    R_X86_64_PLTOFF64 = 31,
    /// `R_X86_64_SIZE32`: Z + A, zero-extended 32 bits.
    R_X86_64_SIZE32 = 32,
    /// `R_X86_64_SIZE64`: Z + A, 64 bits.
    R_X86_64_SIZE64 = 33,
    /// `R_X86_64_GOTPCRELX`: like GOTPCREL, and the instruction may be relaxed.
    R_X86_64_GOTPCRELX = 41,
    /// `R_X86_64_REX_GOTPCRELX`: like GOTPCRELX, for instructions with a REX prefix.
    R_X86_64_REX_GOTPCRELX = 42,
}

/// Bytes in a GOT slot.
pub(crate) const GOT_SLOT_SIZE: u64 = 8;
/// Bytes in a call stub: `jmp *0(%rip)` (6 bytes), the 8-byte target, 2 bytes of `int3`.
pub(crate) const STUB_SIZE: u64 = 16;
/// Alignment of the stub area.
pub(crate) const STUB_ALIGN: u64 = 16;

/// `target + A - P` modulo 2^64: the value of every PC-relative field
/// here, whose target is S (`PC32`, a direct call, a relaxed load), a stub
/// (a call out of reach) or a GOT slot (`GOTPCREL*`). [`write_field`]
/// reduces the full engine's `i128` values to the same residue.
#[inline(always)]
const fn relative(target: u64, addend: i64, place: u64) -> u64 {
    target.wrapping_add_signed(addend).wrapping_sub(place)
}

/// The psABI name of a type, or `None` for one this loader does not know.
pub(crate) fn name(r_type: u32) -> Option<&'static str> {
    defined_name(r_type).or(match r_type {
        5 => Some("R_X86_64_COPY"),
        6 => Some("R_X86_64_GLOB_DAT"),
        7 => Some("R_X86_64_JUMP_SLOT"),
        8 => Some("R_X86_64_RELATIVE"),
        16..=23 | 34..=36 => tls_name(r_type),
        _ => None,
    })
}

fn tls_name(r_type: u32) -> Option<&'static str> {
    Some(match r_type {
        16 => "R_X86_64_DTPMOD64",
        17 => "R_X86_64_DTPOFF64",
        18 => "R_X86_64_TPOFF64",
        19 => "R_X86_64_TLSGD",
        20 => "R_X86_64_TLSLD",
        21 => "R_X86_64_DTPOFF32",
        22 => "R_X86_64_GOTTPOFF",
        23 => "R_X86_64_TPOFF32",
        34 => "R_X86_64_GOTPC32_TLSDESC",
        35 => "R_X86_64_TLSDESC_CALL",
        36 => "R_X86_64_TLSDESC",
        _ => return None,
    })
}

/// A stub jumps to the symbol itself and the call adds its own addend, so
/// one stub serves every call of a symbol.
pub(crate) const STUB_TAKES_ADDEND: bool = false;

/// Calls to absolute symbols get no stub: like the kernel code model, this
/// expects them within the ±2 GiB a `call` reaches.
pub(crate) const ABSOLUTE_CALLS_NEED_STUB: bool = false;

/// Whether an entry of a pending import may wait for its definition: it is
/// a call through the loader's slot, which the unbound path can stand in
/// for. A stub serves calls alone. A GOT slot may hold a function to call
/// or data to read, so only `call *sym@GOTPCREL(%rip)` or `jmp *...`
/// (`-fno-plt`, opcode `ff 15`/`ff 25` before the field, addend -4) may
/// wait. `code` is the section as in the file.
pub(crate) fn may_wait(wants_stub: bool, addend: i64, code: &[u8], offset: u64) -> bool {
    if wants_stub {
        return true;
    }
    if addend != -4 {
        return false;
    }
    let offset = usize::try_from(offset).unwrap_or(usize::MAX);
    let opcode = code
        .get(offset.wrapping_sub(2)..)
        .and_then(<[u8]>::first_chunk::<2>)
        .copied();
    matches!(opcode, Some([0xff, 0x15 | 0x25]))
}

/// What an x86-64 relocation type does, named: the one classification of
/// each type this loader supports. Its needs, its formula and its field
/// all follow from it (the fast paths, [`apply_fast`] and [`apply_common`],
/// handle the types compiled code is mostly made of by number, and agree
/// with it: see the tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fixup {
    /// `NONE`: nothing is written.
    Nothing,
    /// S + A (`64`, `32`, `32S`, `16`, `8`).
    Absolute(Field),
    /// S + A - P (`PC64`, `PC32`, `PC16`, `PC8`).
    PcRelative(Field),
    /// L + A - P: a call or jump, through a stub when S is out of reach
    /// (`PLT32`).
    Call,
    /// S + A - GOT (`GOTOFF64`, and `PLTOFF64`, whose 64 bits reach the
    /// symbol itself, so it needs no PLT entry).
    FromGot(Field),
    /// GOT + A - P (`GOTPC32`, `GOTPC64`).
    GotFromPlace(Field),
    /// G + A, the slot's offset in the GOT (`GOT32`, `GOT64`, `GOTPLT64`).
    SlotOffset(Field),
    /// G + GOT + A - P, the slot's address PC-relative (`GOTPCREL`,
    /// `GOTPCREL64`).
    SlotRelative(Field),
    /// `GOTPCRELX`, `REX_GOTPCRELX`: a load of the slot, like
    /// `SlotRelative` in 32 bits, that becomes `lea` of S itself when the
    /// plan relaxes it.
    RelaxableLoad,
    /// Z + A, the symbol's size (`SIZE32`, `SIZE64`).
    Size(Field),
}

/// The field a formula's value is written to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Field {
    /// Bytes.
    pub width: u8,
    /// Which values it takes.
    pub range: Range,
}

const fn field(width: u8, range: Range) -> Field {
    Field { width, range }
}

/// The classification of `r_type`, or `None` if it is not supported.
pub(crate) const fn classify(r_type: u32) -> Option<Fixup> {
    use Range::{Either, Signed, Unsigned};
    Some(match r_type {
        R_X86_64_NONE => Fixup::Nothing,
        R_X86_64_64 => Fixup::Absolute(field(8, Either)),
        R_X86_64_32 => Fixup::Absolute(field(4, Unsigned)),
        R_X86_64_32S => Fixup::Absolute(field(4, Signed)),
        R_X86_64_16 => Fixup::Absolute(field(2, Either)),
        R_X86_64_8 => Fixup::Absolute(field(1, Either)),
        R_X86_64_PC64 => Fixup::PcRelative(field(8, Either)),
        R_X86_64_PC32 => Fixup::PcRelative(field(4, Signed)),
        R_X86_64_PC16 => Fixup::PcRelative(field(2, Signed)),
        R_X86_64_PC8 => Fixup::PcRelative(field(1, Signed)),
        R_X86_64_PLT32 => Fixup::Call,
        R_X86_64_GOTOFF64 | R_X86_64_PLTOFF64 => Fixup::FromGot(field(8, Either)),
        R_X86_64_GOTPC32 => Fixup::GotFromPlace(field(4, Signed)),
        R_X86_64_GOTPC64 => Fixup::GotFromPlace(field(8, Either)),
        R_X86_64_GOT32 => Fixup::SlotOffset(field(4, Signed)),
        R_X86_64_GOT64 | R_X86_64_GOTPLT64 => Fixup::SlotOffset(field(8, Either)),
        R_X86_64_GOTPCREL => Fixup::SlotRelative(field(4, Signed)),
        R_X86_64_GOTPCREL64 => Fixup::SlotRelative(field(8, Either)),
        R_X86_64_GOTPCRELX | R_X86_64_REX_GOTPCRELX => Fixup::RelaxableLoad,
        R_X86_64_SIZE32 => Fixup::Size(field(4, Unsigned)),
        R_X86_64_SIZE64 => Fixup::Size(field(8, Either)),
        _ => return None,
    })
}

impl Fixup {
    /// What the plan must reserve for an entry of this kind.
    pub(crate) const fn needs(self) -> Needs {
        Needs {
            got_slot: matches!(
                self,
                Fixup::SlotOffset(_) | Fixup::SlotRelative(_) | Fixup::RelaxableLoad
            ),
            stub: matches!(self, Fixup::Call),
            relaxable: matches!(self, Fixup::RelaxableLoad),
        }
    }
}

/// What an overflow of `r_type` shows about the object's code model (small
/// or kernel): 32-bit absolute addresses, or 32-bit displacements (code and
/// data within 2 GiB).
pub(crate) const fn narrow_model(r_type: u32) -> Option<NarrowModel> {
    match classify(r_type) {
        Some(Fixup::Absolute(Field { width: 4, .. })) => Some(NarrowModel::Absolute),
        Some(Fixup::PcRelative(Field { width: 4, .. })) => Some(NarrowModel::Displacement),
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
        Some(Fixup::Absolute(field) | Fixup::PcRelative(field)) if field.width == 8 => 8,
        _ => 4,
    }
}

const MOV_LOAD: u8 = 0x8b;
const LEA: u8 = 0x8d;

/// Whether the instruction whose 32-bit displacement sits at `offset` is
/// `mov disp(%rip), %reg`, which can become `lea disp(%rip), %reg`.
///
/// The opcode is the byte before the ModRM byte, and ModRM must select
/// RIP-relative addressing (mod 00, r/m 101). A REX prefix before the opcode
/// changes nothing here.
#[inline]
pub(crate) fn is_relaxable_load(bytes: &[u8], offset: usize) -> bool {
    let [opcode, modrm] = offset
        .checked_sub(2)
        .and_then(|at| bytes.get(at..at.checked_add(2)?))
        .and_then(|pair| <[u8; 2]>::try_from(pair).ok())
        .unwrap_or_default();
    is_relaxable_pair([opcode, modrm])
}

/// [`is_relaxable_load`] of the opcode and ModRM bytes, in that order: one
/// 16-bit test. No branch: loads and calls alternate in compiled code, so
/// a branch per test would be mispredicted about as often as taken.
#[inline(always)]
pub(crate) fn is_relaxable_pair(pair: [u8; 2]) -> bool {
    u16::from_le_bytes(pair) & 0xc7ff == u16::from_le_bytes([MOV_LOAD, 0x05])
}

/// The hot path of [`apply`]: a `PC32`, `PLT32` or relaxed GOT load whose
/// value fits directly (no stub), or a `64`. Returns `true` when it applied
/// the entry, with exactly the bytes [`apply`] would write; `false`, having
/// written nothing, for everything else (other types, loads through a GOT
/// slot, errors, calls that need their stub), which the caller then hands to
/// [`apply`].
///
/// Calls and relaxed loads alternate in compiled code, so this chooses
/// between them with compares and selects rather than branches, which would
/// be mispredicted about as often as taken (criterion, whole `large_pic`
/// load: about 8% slower with a branch per type), and it returns a `bool`
/// so that nothing goes through memory. A section with no relaxed load
/// takes [`apply_fast_unrelaxed`] instead.
#[inline(always)]
pub(crate) fn apply_fast(
    r_type: u32,
    bytes: &mut [u8],
    offset: usize,
    symbol: u64,
    addend: i64,
    place: u64,
    relax: bool,
) -> bool {
    // Compares, not a branch per type: see above.
    let direct = (r_type == R_X86_64_PLT32) | (r_type == R_X86_64_PC32);
    let relax = relax & ((r_type == R_X86_64_REX_GOTPCRELX) | (r_type == R_X86_64_GOTPCRELX));
    if !(direct | relax) {
        // Rare in code: a 64-bit word, or a load through its GOT slot.
        return r_type == R_X86_64_64
            && write_word64(bytes, offset, symbol.wrapping_add_signed(addend)).is_ok();
    }
    let word = relative(symbol, addend, place);
    // The field and the two bytes before it: the opcode and ModRM of a load.
    // An offset below 2 wraps to a start past any section's end.
    let window = bytes
        .get_mut(offset.wrapping_sub(2)..)
        .and_then(|rest| rest.first_chunk_mut::<6>());
    let (Some(window), Ok(narrow)) = (window, i32::try_from(word as i64)) else {
        return false;
    };
    let [opcode, modrm, field @ ..] = window;
    // A relaxed load must still be the `mov` the plan saw (another entry may
    // have overwritten it).
    if relax & !is_relaxable_pair([*opcode, *modrm]) {
        return false;
    }
    // Rewritten unchanged unless relaxed: a store either way, no branch.
    *opcode = select_unpredictable(relax, LEA, *opcode);
    *field = narrow.to_le_bytes();
    true
}

/// [`apply_fast`] for a section in which planning relaxed no load. Then
/// nearly every entry is a call or a PC-relative reference, and both take
/// the same arm, so branching on the type costs no mispredictions and saves
/// the selects: only the field is read and written. Loads through a GOT
/// slot, which are not relaxed here, are declined to [`apply`].
#[inline(always)]
pub(crate) fn apply_fast_unrelaxed(
    r_type: u32,
    bytes: &mut [u8],
    offset: usize,
    symbol: u64,
    addend: i64,
    place: u64,
) -> bool {
    // `PC32` (2) and `PLT32` (4) are the only types whose distance from 2
    // (0 or 2) is 0 once its bit 1 is cleared: one test for both.
    const _: () = assert!(R_X86_64_PC32 == 2 && R_X86_64_PLT32 == 4);
    if r_type.wrapping_sub(R_X86_64_PC32) & !2 == 0 {
        let word = relative(symbol, addend, place);
        let field = bytes
            .get_mut(offset..)
            .and_then(|rest| rest.first_chunk_mut::<4>());
        let (Some(field), Ok(narrow)) = (field, i32::try_from(word as i64)) else {
            return false;
        };
        *field = narrow.to_le_bytes();
        return true;
    }
    r_type == R_X86_64_64 && write_word64(bytes, offset, symbol.wrapping_add_signed(addend)).is_ok()
}

/// One section's relocations, as its loop reads them: the entries
/// (`Elf64_Rela`, their symbol indices offset by `symbol_base`), the
/// section's target address, and S per symbol for the fast path
/// ([`NO_FAST_ADDRESS`] where it must decline). Read through one
/// reference, so that the loop keeps few registers busy.
pub(crate) struct Section<'a> {
    pub entries: &'a [[u8; RELA_ENTRY]],
    pub symbol_base: u32,
    pub target: u64,
    pub symbols: &'a [u64],
}

/// Applies `section`'s relocations to its `bytes`: the fast path first
/// ([`apply_fast`], or [`apply_fast_unrelaxed`] for a section in which the
/// plan relaxed nothing), the full engine where it declines. `relaxed`
/// gives the plan's decision entry by entry, and is read only when
/// `RELAXES`. Not inlined, so that this loop has the registers to itself.
#[inline(never)]
pub(crate) fn apply_section<const RELAXES: bool, L: Linking>(
    section: &Section<'_>,
    mut relaxed: impl FnMut() -> bool,
    bytes: &mut [u8],
    link: &mut L,
) -> Result<(), L::Error> {
    let (symbols, target, symbol_base) = (section.symbols, section.target, section.symbol_base);
    for (position, raw) in section.entries.iter().enumerate() {
        let entry = Rela::decode(raw, symbol_base);
        let relax = RELAXES && relaxed();
        // The fast path applies nearly every entry, and declines, writing
        // nothing, where the full path is needed. Loads through a GOT slot
        // (rare outside position-independent references to other modules)
        // take the full path.
        let symbol = symbols
            .get(entry.r_sym())
            .copied()
            .unwrap_or(NO_FAST_ADDRESS);
        let place = target.wrapping_add(entry.r_offset);
        let fast = symbol != NO_FAST_ADDRESS
            && usize::try_from(entry.r_offset).is_ok_and(|offset| {
                let (r_type, addend) = (entry.r_type, entry.r_addend);
                if RELAXES {
                    apply_fast(r_type, bytes, offset, symbol, addend, place, relax)
                } else {
                    apply_fast_unrelaxed(r_type, bytes, offset, symbol, addend, place)
                }
            });
        if fast {
            continue;
        }
        // By position: the entry itself would be kept in memory for it,
        // on the fast path too.
        apply_one(section, position, relax, bytes, link)?;
    }
    Ok(())
}

/// Entry `position` through the full engine, for what the fast path
/// declined: it applies the entry (marking its stub if the call went
/// through it) or says exactly why not.
#[inline(never)]
fn apply_one<L: Linking>(
    section: &Section<'_>,
    position: usize,
    relax: bool,
    bytes: &mut [u8],
    link: &mut L,
) -> Result<(), L::Error> {
    let Some(entry) = section
        .entries
        .get(position)
        .map(|raw| Rela::decode(raw, section.symbol_base))
    else {
        return Ok(());
    };
    let applied =
        entry_inputs(link, &entry, section.target).and_then(|(offset, inputs, stub, _)| {
            let outcome = apply_common(entry.r_type, bytes, offset, &inputs, relax)
                .unwrap_or_else(|| {
                    let inputs = FixupInputs {
                        symbol_size: link.symbol_size(&entry),
                        ..inputs
                    };
                    apply(entry.r_type, bytes, offset, &inputs, relax)
                })?;
            Ok((outcome, stub))
        });
    match applied {
        Ok((Applied::Direct, _)) => Ok(()),
        Ok((Applied::ThroughStub, stub)) => {
            link.used_stub(stub);
            Ok(())
        }
        Err(problem) => Err(link.error(&entry, problem)),
    }
}

/// Applies one relocation to `bytes` (the section's contents) at `offset`.
///
/// `relax` turns a relaxable GOT load into `lea` of the symbol itself; callers
/// pass it only for symbols placed in the same module, which are in reach.
pub(crate) fn apply(
    r_type: u32,
    bytes: &mut [u8],
    offset: usize,
    inputs: &FixupInputs,
    relax: bool,
) -> Result<Applied, RelocationProblem> {
    if let Some(outcome) = apply_common(r_type, bytes, offset, inputs, relax) {
        return outcome;
    }
    let fixup = classify(r_type).ok_or(RelocationProblem::Unsupported)?;
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
    // `apply_common` took the types code is mostly made of (`64`, `PC32`,
    // `PLT32`, `32S`, the `GOTPCREL` loads); the formulas are the psABI's.
    let (value, field) = match fixup {
        Fixup::Nothing => return Ok(Applied::Direct),
        Fixup::Absolute(field) => (s + a, field),
        Fixup::PcRelative(field) => (s + a - p, field),
        Fixup::Call => return apply_call(bytes, offset, inputs),
        Fixup::FromGot(field) => (s + a - got, field),
        Fixup::GotFromPlace(field) => (got + a - p, field),
        Fixup::SlotOffset(field) => (slot()? - got + a, field),
        Fixup::SlotRelative(field) => (slot()? + a - p, field),
        Fixup::RelaxableLoad if relax => {
            return relax_load(
                bytes,
                offset,
                relative(inputs.symbol, inputs.addend, inputs.place),
            )
        }
        Fixup::RelaxableLoad => (slot()? + a - p, field(4, Range::Signed)),
        Fixup::Size(field) => (i128::from(inputs.symbol_size) + a, field),
    };
    write_field(bytes, offset, usize::from(field.width), value, field.range)
        .map(|()| Applied::Direct)
}

/// The types compiled code is nearly all made of (`PC32`, `PLT32`, `64`,
/// `32S`, GOT loads), in 64-bit arithmetic modulo 2^64, which is
/// what `write_field` reduces the `i128` formulas of [`apply`] to anyway:
/// same fields, same checks, same errors. `None` for every other type.
///
/// Small enough to inline into a caller's loop, which then builds no
/// [`FixupInputs`] it does not read.
#[inline(always)]
pub(crate) fn apply_common(
    r_type: u32,
    bytes: &mut [u8],
    offset: usize,
    inputs: &FixupInputs,
    relax: bool,
) -> Option<Result<Applied, RelocationProblem>> {
    let s_a = inputs.symbol.wrapping_add_signed(inputs.addend);
    let direct = |written: Result<(), RelocationProblem>| written.map(|()| Applied::Direct);
    Some(match r_type {
        R_X86_64_PC32 => direct(write_signed32(
            bytes,
            offset,
            relative(inputs.symbol, inputs.addend, inputs.place),
        )),
        R_X86_64_PLT32 => apply_call(bytes, offset, inputs),
        R_X86_64_64 => direct(write_word64(bytes, offset, s_a)),
        R_X86_64_32S => direct(write_signed32(bytes, offset, s_a)),
        R_X86_64_GOTPCRELX | R_X86_64_REX_GOTPCRELX if relax => relax_load(
            bytes,
            offset,
            relative(inputs.symbol, inputs.addend, inputs.place),
        ),
        // Only the `X` forms relax: a plain `GOTPCREL` always reads its slot.
        R_X86_64_GOTPCREL | R_X86_64_GOTPCRELX | R_X86_64_REX_GOTPCRELX => match inputs.got_slot {
            Some(slot) => direct(write_signed32(
                bytes,
                offset,
                relative(slot, inputs.addend, inputs.place),
            )),
            None => Err(RelocationProblem::Unsupported),
        },
        _ => return None,
    })
}

/// A call goes straight to its target when in reach, else through its stub.
#[inline(always)]
fn apply_call(
    bytes: &mut [u8],
    offset: usize,
    inputs: &FixupInputs,
) -> Result<Applied, RelocationProblem> {
    let relative = |target: u64| relative(target, inputs.addend, inputs.place);
    match write_signed32(bytes, offset, relative(inputs.symbol)) {
        Ok(()) => Ok(Applied::Direct),
        Err(overflow @ RelocationProblem::Overflow { .. }) => match inputs.stub {
            Some(stub) => {
                write_signed32(bytes, offset, relative(stub)).map(|()| Applied::ThroughStub)
            }
            None => Err(overflow),
        },
        Err(other) => Err(other),
    }
}

/// Turns `mov sym@GOTPCREL(%rip)` into `lea sym(%rip)`; `word` is S + A - P
/// modulo 2^64.
#[inline]
fn relax_load(bytes: &mut [u8], offset: usize, word: u64) -> Result<Applied, RelocationProblem> {
    // The plan saw a `mov` here; if it is gone, another relocation overwrote it.
    if !is_relaxable_load(bytes, offset) {
        return Err(RelocationProblem::InstructionChanged);
    }
    write_signed32(bytes, offset, word)?;
    let opcode = offset
        .checked_sub(2)
        .and_then(|at| bytes.get_mut(at))
        .ok_or(RelocationProblem::OutOfBounds)?;
    *opcode = LEA;
    Ok(Applied::Direct)
}

/// Writes a stub that jumps to `target` into `bytes[..STUB_SIZE]`.
pub(crate) fn write_stub(bytes: &mut [u8], target: u64) -> Result<(), RelocationProblem> {
    let stub = bytes
        .get_mut(..STUB_SIZE as usize)
        .ok_or(RelocationProblem::OutOfBounds)?;
    // jmp *0(%rip): the 8-byte target follows the 6-byte instruction.
    let mut code = [0xcc_u8; STUB_SIZE as usize];
    code[..6].copy_from_slice(&[0xff, 0x25, 0, 0, 0, 0]);
    code[6..14].copy_from_slice(&target.to_le_bytes());
    stub.copy_from_slice(&code);
    Ok(())
}

/// Bytes in a lazy entry (see [`write_lazy_entry`]).
pub(crate) const LAZY_ENTRY_SIZE: u64 = 16;
/// Where a lazy entry's `ud2` sits, from its start: what a module for
/// another machine jumps to while an import is unbound.
pub(crate) const LAZY_ENTRY_TRAP: u64 = 11;

/// Writes the stub of a pending import into `bytes[..STUB_SIZE]`:
/// `jmp *slot(%rip)`, through the import's GOT slot instead of a literal of
/// its own, so that binding the import later is one store to read-only
/// data, never a write to code. `stub` is the stub's own target address.
pub(crate) fn write_slot_stub(
    bytes: &mut [u8],
    stub: u64,
    slot: u64,
) -> Result<(), RelocationProblem> {
    let out = bytes
        .get_mut(..STUB_SIZE as usize)
        .ok_or(RelocationProblem::OutOfBounds)?;
    // The displacement counts from the end of the 6-byte instruction.
    let displacement = pc_relative32(slot, stub.wrapping_add(6))?;
    let mut code = [0xcc_u8; STUB_SIZE as usize];
    code[..2].copy_from_slice(&[0xff, 0x25]);
    code[2..6].copy_from_slice(&displacement.to_le_bytes());
    out.copy_from_slice(&code);
    Ok(())
}

/// Writes the lazy entry of a pending import, at target address `entry`,
/// into `bytes[..LAZY_ENTRY_SIZE]`. Until the import is bound, its GOT slot
/// leads here: `lea context(%rip), %r11; jmp *8(%r11); ud2`. The context is
/// two words (the namespace, then the unbound path's address), and `r11`
/// is the one register the psABI leaves free at a call that passes no
/// static chain.
pub(crate) fn write_lazy_entry(
    bytes: &mut [u8],
    entry: u64,
    context: u64,
) -> Result<(), RelocationProblem> {
    let out = bytes
        .get_mut(..LAZY_ENTRY_SIZE as usize)
        .ok_or(RelocationProblem::OutOfBounds)?;
    let displacement = pc_relative32(context, entry.wrapping_add(7))?;
    let mut code = [0xcc_u8; LAZY_ENTRY_SIZE as usize];
    code[..3].copy_from_slice(&[0x4c, 0x8d, 0x1d]);
    code[3..7].copy_from_slice(&displacement.to_le_bytes());
    code[7..11].copy_from_slice(&[0x41, 0xff, 0x63, 0x08]);
    code[11..13].copy_from_slice(&[0x0f, 0x0b]);
    out.copy_from_slice(&code);
    Ok(())
}

/// `target - next` as a signed 32-bit displacement, or the overflow.
fn pc_relative32(target: u64, next: u64) -> Result<i32, RelocationProblem> {
    let value = i128::from(target) - i128::from(next);
    i32::try_from(value).map_err(|_| RelocationProblem::Overflow { value })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing)]
    use super::*;

    const P: u64 = 0x9000_0000;

    /// A pending import's stub jumps through its GOT slot; the bytes are
    /// llvm-mc's for `jmpq *0x1234(%rip)`.
    #[test]
    fn slot_stub_jumps_through_the_slot() {
        let mut bytes = [0u8; STUB_SIZE as usize];
        write_slot_stub(&mut bytes, 0x9000_0000, 0x9000_0006 + 0x1234).unwrap();
        assert_eq!(bytes[..6], [0xff, 0x25, 0x34, 0x12, 0x00, 0x00]);
        assert!(bytes[6..].iter().all(|byte| *byte == 0xcc));
        let far = write_slot_stub(&mut bytes, 0x9000_0000, 0x2_0000_0000);
        assert!(matches!(far, Err(RelocationProblem::Overflow { .. })));
    }

    /// A lazy entry puts its context's address in r11 and jumps through the
    /// context's second word, then traps (`ud2`).
    #[test]
    fn lazy_entry_hands_its_context_to_the_unbound_path() {
        let mut bytes = [0u8; LAZY_ENTRY_SIZE as usize];
        write_lazy_entry(&mut bytes, 0x9000_0000, 0x9000_0007 - 32).unwrap();
        assert_eq!(bytes[..7], [0x4c, 0x8d, 0x1d, 0xe0, 0xff, 0xff, 0xff]);
        assert_eq!(bytes[7..11], [0x41, 0xff, 0x63, 0x08]);
        assert_eq!(bytes[LAZY_ENTRY_TRAP as usize..][..2], [0x0f, 0x0b]);
    }

    fn inputs(symbol: u64, addend: i64) -> FixupInputs {
        FixupInputs {
            symbol,
            addend,
            place: P,
            got: 0xa000_0000,
            got_slot: Some(0xa000_0010),
            stub: Some(0x9000_1000),
            symbol_size: 24,
        }
    }

    /// `apply_fast` and `apply_fast_unrelaxed` either do what `apply` does,
    /// byte for byte, or decline and write nothing: over random types,
    /// values, offsets and instruction bytes, near and at every range edge.
    #[test]
    fn the_fast_path_agrees_with_apply() {
        let mut next = crate::testing::xorshift(0x9e37_79b9_7f4a_7c15);
        let types = [
            R_X86_64_PC32,
            R_X86_64_PLT32,
            R_X86_64_GOTPCREL,
            R_X86_64_GOTPCRELX,
            R_X86_64_REX_GOTPCRELX,
            R_X86_64_64,
            R_X86_64_32S,
            R_X86_64_32,
            R_X86_64_NONE,
            R_X86_64_SIZE64,
            64,
            u32::MAX,
        ];
        let edges = [
            0i64,
            1,
            -1,
            0x7fff_ffff,
            -0x8000_0000,
            0x8000_0000,
            -0x8000_0001,
        ];
        let (mut fast_taken, mut declined) = (0u32, 0u32);
        for _ in 0..200_000 {
            let r_type = types[(next() % types.len() as u64) as usize];
            let mut bytes = [0u8; 12];
            for byte in bytes.iter_mut() {
                *byte = next() as u8;
            }
            if next().is_multiple_of(2) {
                bytes[2] = MOV_LOAD;
                bytes[3] = 0x05 | (next() as u8 & 0x38);
            }
            let offset = (next() % 10) as usize;
            let place = P.wrapping_add(offset as u64);
            let addend = if next().is_multiple_of(2) {
                -4
            } else {
                next() as i64 % 64
            };
            // S lands near a 32-bit edge from P, or anywhere.
            let distance = edges[(next() % edges.len() as u64) as usize];
            let symbol = match next() % 3 {
                0 => place.wrapping_add_signed(distance).wrapping_add_signed(4),
                1 => place.wrapping_add(next() % 0x1000),
                _ => next(),
            };
            let has_got_slot = !next().is_multiple_of(4);
            let got_slot = place.wrapping_add_signed(distance).wrapping_add(next() % 8);
            let relax = next().is_multiple_of(2);
            let inputs = FixupInputs {
                symbol,
                addend,
                place,
                got: 0xa000_0000,
                got_slot: has_got_slot.then_some(got_slot),
                stub: Some(P.wrapping_add(0x1000)),
                symbol_size: 24,
            };
            // Both fast paths: the second for sections where nothing is relaxed.
            let unrelaxed = next().is_multiple_of(2);
            let relax = relax & !unrelaxed;
            let mut fast = bytes;
            let mut slow = bytes;
            let applied = if unrelaxed {
                apply_fast_unrelaxed(r_type, &mut fast, offset, symbol, addend, place)
            } else {
                apply_fast(r_type, &mut fast, offset, symbol, addend, place, relax)
            };
            let expected = apply(r_type, &mut slow, offset, &inputs, relax);
            if applied {
                fast_taken += 1;
                assert_eq!(expected, Ok(Applied::Direct), "{r_type} {inputs:?}");
                assert_eq!(fast, slow, "{r_type} {inputs:?}");
            } else {
                declined += 1;
                assert_eq!(fast, bytes, "declined, so wrote nothing");
            }
        }
        assert!(
            fast_taken > 10_000 && declined > 10_000,
            "{fast_taken} {declined}"
        );
    }

    fn run(r_type: u32, fixup: &FixupInputs) -> Result<[u8; 8], RelocationProblem> {
        let mut bytes = [0u8; 8];
        apply(r_type, &mut bytes, 0, fixup, false)?;
        Ok(bytes)
    }

    fn word32(bytes: [u8; 8]) -> i32 {
        i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
    }

    #[test]
    fn absolute_types() {
        let fixup = inputs(0xffff_ffff_8000_0000, 0x10);
        assert_eq!(
            u64::from_le_bytes(run(R_X86_64_64, &fixup).unwrap()),
            0xffff_ffff_8000_0010
        );
        assert_eq!(word32(run(R_X86_64_32S, &fixup).unwrap()), i32::MIN + 0x10);
        assert!(matches!(
            run(R_X86_64_32, &fixup),
            Err(RelocationProblem::Overflow { .. })
        ));
        let low = inputs(0xffff_fff0, 0xf);
        assert_eq!(word32(run(R_X86_64_32, &low).unwrap()) as u32, u32::MAX);
        assert!(matches!(
            run(R_X86_64_32S, &low),
            Err(RelocationProblem::Overflow { .. })
        ));
        assert!(matches!(
            run(R_X86_64_32, &inputs(0xffff_fff0, 0x10)),
            Err(RelocationProblem::Overflow { .. })
        ));
        assert_eq!(
            run(R_X86_64_16, &inputs(0xfffe, 1)).unwrap()[..2],
            [0xff, 0xff]
        );
        assert!(run(R_X86_64_16, &inputs(0x10000, 0)).is_err());
        assert_eq!(run(R_X86_64_8, &inputs(0x7f, 0)).unwrap()[0], 0x7f);
        assert!(run(R_X86_64_8, &inputs(0x100, 0)).is_err());
    }

    #[test]
    fn pc_relative_types_check_both_ends() {
        let max = P + i32::MAX as u64;
        assert_eq!(
            word32(run(R_X86_64_PC32, &inputs(max, 0)).unwrap()),
            i32::MAX
        );
        assert!(
            matches!(run(R_X86_64_PC32, &inputs(max + 1, 0)), Err(RelocationProblem::Overflow { value }) if value == 1 << 31)
        );
        let min = P - (1 << 31);
        assert_eq!(
            word32(run(R_X86_64_PC32, &inputs(min, 0)).unwrap()),
            i32::MIN
        );
        assert!(run(R_X86_64_PC32, &inputs(min - 1, 0)).is_err());
        assert_eq!(
            run(R_X86_64_PC16, &inputs(P - 0x8000, 0)).unwrap()[..2],
            [0x00, 0x80]
        );
        assert!(run(R_X86_64_PC16, &inputs(P + 0x8000, 0)).is_err());
        assert_eq!(run(R_X86_64_PC8, &inputs(P + 0x7f, 0)).unwrap()[0], 0x7f);
        assert!(run(R_X86_64_PC8, &inputs(P + 0x80, 0)).is_err());
        let far = inputs(0x7fff_0000_0000, -8);
        assert_eq!(
            i64::from_le_bytes(run(R_X86_64_PC64, &far).unwrap()),
            0x7fff_0000_0000 - 8 - P as i64
        );
    }

    #[test]
    fn got_types() {
        let fixup = inputs(0x5555_0000_0000, -4);
        assert_eq!(
            word32(run(R_X86_64_GOTPCREL, &fixup).unwrap()),
            0x1000_0010 - 4
        );
        assert_eq!(
            word32(run(R_X86_64_GOTPCRELX, &fixup).unwrap()),
            0x1000_0010 - 4
        );
        assert_eq!(
            word32(run(R_X86_64_REX_GOTPCRELX, &fixup).unwrap()),
            0x1000_0010 - 4
        );
        assert_eq!(word32(run(R_X86_64_GOT32, &fixup).unwrap()), 0x10 - 4);
        assert_eq!(
            i64::from_le_bytes(run(R_X86_64_GOT64, &fixup).unwrap()),
            0x10 - 4
        );
        assert_eq!(
            i64::from_le_bytes(run(R_X86_64_GOTPLT64, &fixup).unwrap()),
            0x10 - 4
        );
        assert_eq!(
            i64::from_le_bytes(run(R_X86_64_GOTPCREL64, &fixup).unwrap()),
            0x1000_0010 - 4
        );
        assert_eq!(
            word32(run(R_X86_64_GOTPC32, &fixup).unwrap()),
            0x1000_0000 - 4
        );
        assert_eq!(
            i64::from_le_bytes(run(R_X86_64_GOTPC64, &fixup).unwrap()),
            0x1000_0000 - 4
        );
        assert_eq!(
            i64::from_le_bytes(run(R_X86_64_GOTOFF64, &fixup).unwrap()),
            0x5555_0000_0000 - 4 - 0xa000_0000
        );
        assert_eq!(
            i64::from_le_bytes(run(R_X86_64_PLTOFF64, &fixup).unwrap()),
            0x5555_0000_0000 - 4 - 0xa000_0000
        );
        let no_slot = FixupInputs {
            got_slot: None,
            ..fixup
        };
        assert_eq!(
            run(R_X86_64_GOTPCREL, &no_slot),
            Err(RelocationProblem::Unsupported)
        );
    }

    #[test]
    fn size_types() {
        assert_eq!(word32(run(R_X86_64_SIZE32, &inputs(0, 8)).unwrap()), 32);
        assert_eq!(
            u64::from_le_bytes(run(R_X86_64_SIZE64, &inputs(0, -4)).unwrap()),
            20
        );
        assert!(run(R_X86_64_SIZE32, &inputs(0, -25)).is_err());
    }

    #[test]
    fn calls_use_the_stub_only_when_out_of_reach() {
        let near = inputs(P + 0x100, -4);
        let mut bytes = [0u8; 4];
        assert_eq!(
            apply(R_X86_64_PLT32, &mut bytes, 0, &near, false),
            Ok(Applied::Direct)
        );
        assert_eq!(i32::from_le_bytes(bytes), 0xfc);
        let far = inputs(0x7fff_0000_0000, -4);
        assert_eq!(
            apply(R_X86_64_PLT32, &mut bytes, 0, &far, false),
            Ok(Applied::ThroughStub)
        );
        assert_eq!(i32::from_le_bytes(bytes), 0x1000 - 4);
        let no_stub = FixupInputs { stub: None, ..far };
        assert!(matches!(
            apply(R_X86_64_PLT32, &mut bytes, 0, &no_stub, false),
            Err(RelocationProblem::Overflow { .. })
        ));
    }

    #[test]
    fn relaxation_turns_mov_into_lea() {
        // mov 0(%rip), %rax = 48 8b 05 <disp32>
        let mut bytes = [0x48, 0x8b, 0x05, 0, 0, 0, 0];
        assert!(is_relaxable_load(&bytes, 3));
        let fixup = FixupInputs {
            place: P + 3,
            ..inputs(P + 0x40, -4)
        };
        assert_eq!(
            apply(R_X86_64_REX_GOTPCRELX, &mut bytes, 3, &fixup, true),
            Ok(Applied::Direct)
        );
        assert_eq!(bytes, [0x48, 0x8d, 0x05, 0x39, 0, 0, 0]);
        // call *0(%rip) = ff 15: not a load, so it is never relaxed.
        let mut call = [0xff, 0x15, 0, 0, 0, 0];
        assert!(!is_relaxable_load(&call, 2));
        assert_eq!(
            apply(R_X86_64_GOTPCRELX, &mut call, 2, &fixup, true),
            Err(RelocationProblem::InstructionChanged)
        );
    }

    #[test]
    fn unknown_and_out_of_bounds() {
        assert_eq!(run(19, &inputs(0, 0)), Err(RelocationProblem::Unsupported));
        assert_eq!(needs(19), None);
        let mut short = [0u8; 3];
        assert_eq!(
            apply(R_X86_64_PC32, &mut short, 0, &inputs(P, 0), false),
            Err(RelocationProblem::OutOfBounds)
        );
        assert_eq!(
            apply(R_X86_64_64, &mut short, usize::MAX, &inputs(P, 0), false),
            Err(RelocationProblem::OutOfBounds)
        );
    }

    /// Every type the loader classifies has a psABI name, and every named
    /// type it does not classify (TLS) is refused, by `apply` too. The
    /// types `apply_common` takes by number write what their class's
    /// formula gives when the full engine alone applies them.
    #[test]
    fn each_type_is_classified_once() {
        for r_type in 0..64 {
            match classify(r_type) {
                Some(_) => assert!(name(r_type).is_some(), "type {r_type} has no name"),
                None => assert_eq!(
                    run(r_type, &inputs(0, 0)),
                    Err(RelocationProblem::Unsupported),
                    "type {r_type}"
                ),
            }
        }
        for (r_type, fixup) in [
            (R_X86_64_64, Fixup::Absolute(field(8, Range::Either))),
            (R_X86_64_32S, Fixup::Absolute(field(4, Range::Signed))),
            (R_X86_64_PC32, Fixup::PcRelative(field(4, Range::Signed))),
            (
                R_X86_64_GOTPCREL,
                Fixup::SlotRelative(field(4, Range::Signed)),
            ),
        ] {
            assert_eq!(classify(r_type), Some(fixup));
            let mut by_number = [0u8; 8];
            let mut by_class = [0u8; 8];
            let fixup_inputs = FixupInputs {
                got_slot: Some(P + 0x40),
                ..inputs(0x4000_1000, -4)
            };
            let common = apply_common(r_type, &mut by_number, 0, &fixup_inputs, false);
            assert_eq!(common, Some(Ok(Applied::Direct)));
            let (s, a, p) = (
                i128::from(fixup_inputs.symbol),
                i128::from(fixup_inputs.addend),
                i128::from(fixup_inputs.place),
            );
            let (value, field) = match fixup {
                Fixup::Absolute(field) => (s + a, field),
                Fixup::PcRelative(field) => (s + a - p, field),
                Fixup::SlotRelative(field) => (i128::from(P + 0x40) + a - p, field),
                other => panic!("{other:?} not in this list"),
            };
            write_field(
                &mut by_class,
                0,
                usize::from(field.width),
                value,
                field.range,
            )
            .unwrap();
            assert_eq!(by_number, by_class, "{}", name(r_type).unwrap());
        }
    }

    #[test]
    fn stubs_jump_to_their_target() {
        let mut area = [0u8; 16];
        write_stub(&mut area, 0x1122_3344_5566_7788).unwrap();
        assert_eq!(&area[..6], &[0xff, 0x25, 0, 0, 0, 0]);
        assert_eq!(
            u64::from_le_bytes(area[6..14].try_into().unwrap()),
            0x1122_3344_5566_7788
        );
    }
}
