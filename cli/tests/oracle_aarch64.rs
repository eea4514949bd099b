//! The lld oracle on AArch64 objects, linked on this x86-64 host: clang-22 C
//! in every model and llvm-mc assembly for every relocation group (builders
//! in `modload_tests::aarch64`), linked by `modload link` and `ld.lld-22` at
//! the same addresses and compared (see `modload_tests::oracle`). One object,
//! `oracle/edges_aarch64.s`, has its symbols put at the edges of every
//! checked field's range, and one past.

use std::path::{Path, PathBuf};

use modload_tests::aarch64::{
    assemble, compile_c, compile_rust, fixture, many_relocs_source, CModel, RustModel, ASM_SOURCES,
    C_SOURCES, RUST_SOURCES,
};
use modload_tests::oracle::Origin::{Absolute, Page, Place};
use modload_tests::oracle::{decode, run, Case, EdgeType, Edges, Outcome, Run};

const MODLOAD: &str = env!("CARGO_BIN_EXE_modload");

/// Below 4 GiB, so that `data.s`'s 32-bit absolute pointer to its own data
/// fits; nothing else cares.
const AT: u64 = 0x4000_0000;

/// The kernel's exports (`c/kernel.h`), 256 KiB past the first module: in
/// reach of the tiny model's ±1 MiB literals and of every branch.
fn kernel() -> Vec<(&'static str, u64)> {
    [
        "host_add",
        "host_mul",
        "host_record",
        "host_counter",
        "host_config",
    ]
    .iter()
    .enumerate()
    .map(|(index, name)| (*name, AT + 0x4_0000 + 0x10 * index as u64))
    .collect()
}

fn oracle(case: &Case) -> Run {
    run(Path::new(MODLOAD), case)
}

/// Runs every case, then fails once listing every case that went wrong.
fn check_all(cases: Vec<(Case, Expect)>) {
    let mut failures = Vec::new();
    for (case, expect) in cases {
        let result = oracle(&case);
        let good = match (&result.outcome, expect) {
            (Outcome::Compared { comparison, .. }, Expect::Agree) => {
                eprint!("{}: {comparison}", case.name);
                comparison.mismatches.is_empty() && comparison.bytes_compared > 0
            }
            (Outcome::BothRefused { .. }, Expect::BothRefuse) => true,
            (Outcome::ModloadRefused { lld: Some(_), .. }, Expect::OnlyModloadRefuses) => true,
            _ => false,
        };
        if !good {
            failures.push(format!(
                "{} ({expect:?} expected): {} (files in {})",
                case.name,
                result.outcome.summary(),
                result.dir().display()
            ));
            // Keep the files of a failing case.
            std::mem::forget(result);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[derive(Clone, Copy, Debug)]
enum Expect {
    Agree,
    BothRefuse,
    /// modload refuses and lld links: only where lld is known to accept
    /// something wrong, said next to the case.
    OnlyModloadRefuses,
}

/// `weak.c` branches to undefined weak functions, which modload and lld
/// resolve differently (see `weak_branches_follow_the_abi`).
const WEAK_BRANCHES: &str = "c/weak.c";

/// Every C source of one model but `weak.c`, in an order where each module
/// comes after the ones it needs (the order of `C_SOURCES`), and the
/// generated object with thousands of relocations.
fn c_objects(model: CModel) -> Vec<PathBuf> {
    C_SOURCES
        .iter()
        .filter(|source| source.file != WEAK_BRANCHES)
        .map(|source| compile_c(&fixture(source.file), model))
        .chain([compile_c(&many_relocs_source(), model)])
        .collect()
}

#[test]
fn c_modules_in_every_model() {
    let cases = CModel::ALL
        .iter()
        .map(|&model| {
            let case = Case::new(&format!("a64-c-{}", model.name()), &c_objects(model), AT)
                .symbols(kernel());
            (case, Expect::Agree)
        })
        .collect();
    check_all(cases);
}

/// Where the assembly fixtures' targets go: in reach of every field, and
/// aligned for every scaled access. The checked 16-bit absolute fields need
/// a value below 64 KiB.
fn target_address(name: &str) -> u64 {
    match name {
        "abs16_target" | "uabs_g0_target" | "sabs_g0_target" => 0x100,
        _ => AT + 0x100,
    }
}

#[test]
fn assembly_for_every_relocation_group() {
    let cases = ASM_SOURCES
        .iter()
        .map(|source| {
            let object = assemble(&fixture(source.file));
            let name = source
                .file
                .trim_start_matches("asm/")
                .trim_end_matches(".s");
            let case = Case::new(&format!("a64-asm-{name}"), &[object], AT).symbols(
                source
                    .undefined
                    .iter()
                    .filter(|symbol| **symbol != "_GLOBAL_OFFSET_TABLE_")
                    .map(|symbol| (*symbol, target_address(symbol))),
            );
            let expect = match name {
                // lld drops the low bits of a misaligned CALL26 target
                // without a word (its R_AARCH64_CALL26 checks only the
                // range); modload refuses, as AAELF64 wants a multiple of 4.
                "misaligned_branch_local" => Expect::OnlyModloadRefuses,
                // Refused wherever it goes: lld, with its own layout, too.
                _ if source.always_fails => Expect::BothRefuse,
                _ => Expect::Agree,
            };
            (case, expect)
        })
        .collect();
    check_all(cases);
}

#[test]
fn weak_branches_follow_the_abi() {
    let cases = CModel::ALL
        .iter()
        .map(|&model| {
            let objects = [compile_c(&fixture(WEAK_BRANCHES), model)];
            let case = Case::new(&format!("a64-weak-{}", model.name()), &objects, AT);
            (case, Expect::Agree)
        })
        .collect();
    check_all(cases);
}

#[test]
fn far_calls_take_a_veneer_or_a_thunk() {
    // 1 GiB away: out of a BL's ±128 MiB. modload calls through a veneer,
    // lld through a thunk; both must land on the target.
    let source = ASM_SOURCES
        .iter()
        .find(|source| source.file == "asm/branches.s")
        .expect("branches.s");
    let object = assemble(&fixture(source.file));
    let far = AT + 0x4000_0000;
    let case = Case::new("a64-far-calls", &[object], AT).symbols([
        ("call_target", far),
        ("jump_target", far + 0x40),
        ("cond_target", AT + 0x100),
        ("test_target", AT + 0x100),
    ]);
    let result = oracle(&case);
    let (comparison, layout) = result.assert_agree();
    eprint!("{comparison}");
    assert_eq!(
        layout.modules[0].stubs_used, 2,
        "both far branches use a veneer"
    );

    // A veneer that jumps elsewhere must show.
    let layout = layout.clone();
    let veneers = layout.loader_area(0, "stubs").expect("veneers");
    let image_path = layout.dir.join(&layout.modules[0].file);
    let mut image = std::fs::read(&image_path).unwrap();
    image[(veneers.offset + 8) as usize] ^= 0x10; // the first veneer's target
    std::fs::write(&image_path, &image).unwrap();
    let comparison = result.compare_again();
    assert_eq!(comparison.mismatches.len(), 1, "{comparison}");
    assert!(
        comparison.mismatches[0].what.contains("R_AARCH64_"),
        "{comparison}"
    );
}

#[test]
fn rust_modules_in_every_model() {
    let cases = RustModel::ALL
        .iter()
        .map(|&model| {
            let objects: Vec<PathBuf> = RUST_SOURCES
                .iter()
                .map(|source| compile_rust(&fixture(source.file), model))
                .collect();
            // ra2's weak import is defined here: an undefined one is the
            // divergence `weak_branches_follow_the_abi` is about.
            let case = Case::new(&format!("a64-rust-{}", model.name()), &objects, AT)
                .symbols(kernel())
                .symbol("maybe_rust", AT + 0x4_0080);
            (case, Expect::Agree)
        })
        .collect();
    check_all(cases);
}

/// Above 4 GiB, so that a symbol 4 GiB below an ADRP's page is still an
/// address. (P - 2^48, the smallest MOVW_PREL_G2 target, wraps modulo 2^64,
/// as the arithmetic of both linkers does.)
const EDGE_AT: u64 = 0x1_0000_0000;

/// The relocations of `oracle/edges_aarch64.s` and the X each accepts, from
/// AAELF64 5.7 (the table in the source's header says the same).
const EDGE_TYPES: [EdgeType; 26] = [
    abs("e_abs32", "R_AARCH64_ABS32", either(32)),
    abs("e_abs16", "R_AARCH64_ABS16", either(16)),
    pc("e_prel32", "R_AARCH64_PREL32", either(32)),
    pc("e_prel16", "R_AARCH64_PREL16", either(16)),
    pc("e_call26", "R_AARCH64_CALL26", signed(28)).aligned(4),
    pc("e_jump26", "R_AARCH64_JUMP26", signed(28)).aligned(4),
    pc("e_condbr19", "R_AARCH64_CONDBR19", signed(21)).aligned(4),
    pc("e_ld_lo19", "R_AARCH64_LD_PREL_LO19", signed(21)).aligned(4),
    pc("e_adr_lo21", "R_AARCH64_ADR_PREL_LO21", signed(21)),
    pc("e_tstbr14", "R_AARCH64_TSTBR14", signed(16)).aligned(4),
    page("e_adrp", "R_AARCH64_ADR_PREL_PG_HI21", signed(33)),
    abs("e_uabs_g0", "R_AARCH64_MOVW_UABS_G0", unsigned(16)),
    abs("e_uabs_g1", "R_AARCH64_MOVW_UABS_G1", unsigned(32)),
    abs("e_uabs_g2", "R_AARCH64_MOVW_UABS_G2", unsigned(48)),
    abs("e_sabs_g0", "R_AARCH64_MOVW_SABS_G0", signed(17)),
    abs("e_sabs_g1", "R_AARCH64_MOVW_SABS_G1", signed(33)),
    abs("e_sabs_g2", "R_AARCH64_MOVW_SABS_G2", signed(49)),
    pc("e_prel_g0", "R_AARCH64_MOVW_PREL_G0", signed(17)),
    pc("e_prel_g1", "R_AARCH64_MOVW_PREL_G1", signed(33)),
    pc("e_prel_g2", "R_AARCH64_MOVW_PREL_G2", signed(49)),
    low12("e_ldst16", "R_AARCH64_LDST16_ABS_LO12_NC", 2),
    low12("e_ldst32", "R_AARCH64_LDST32_ABS_LO12_NC", 4),
    low12("e_ldst64", "R_AARCH64_LDST64_ABS_LO12_NC", 8),
    low12("e_ldst128", "R_AARCH64_LDST128_ABS_LO12_NC", 16),
    // Passengers: their X is where each linker put the GOT slot, which no
    // `--sym` moves (see the source's header). At the edges their slots hold
    // the extreme values, compared by where the loads lead.
    EdgeType::anything("e_got", "R_AARCH64_ADR_GOT_PAGE", Absolute),
    EdgeType::anything("e_gotpage", "R_AARCH64_LD64_GOTPAGE_LO15", Absolute),
];

/// -2^(bits-1) ..= 2^(bits-1) - 1.
const fn signed(bits: u32) -> (i64, i64) {
    (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
}

/// 0 ..= 2^bits - 1.
const fn unsigned(bits: u32) -> (i64, i64) {
    (0, (1 << bits) - 1)
}

/// Signed or unsigned: -2^(bits-1) ..= 2^bits - 1.
const fn either(bits: u32) -> (i64, i64) {
    (signed(bits).0, unsigned(bits).1)
}

/// X = S + A in `range`.
const fn abs(symbol: &'static str, type_name: &'static str, range: (i64, i64)) -> EdgeType {
    EdgeType::new(symbol, type_name, Absolute, range.0, range.1)
}

/// X = S + A - P in `range`.
const fn pc(symbol: &'static str, type_name: &'static str, range: (i64, i64)) -> EdgeType {
    EdgeType::new(symbol, type_name, Place, range.0, range.1)
}

/// X = S + A - Page(P) in `range`.
const fn page(symbol: &'static str, type_name: &'static str, range: (i64, i64)) -> EdgeType {
    EdgeType::new(symbol, type_name, Page, range.0, range.1)
}

/// The low 12 bits of S + A, scaled: any X that is a multiple of `align`.
const fn low12(symbol: &'static str, type_name: &'static str, align: i64) -> EdgeType {
    EdgeType::anything(symbol, type_name, Absolute).aligned(align)
}

/// The MOVW relocations: the bit of X their group starts at.
const MOVW_GROUPS: [(&str, u32); 9] = [
    ("e_uabs_g0", 0),
    ("e_uabs_g1", 16),
    ("e_uabs_g2", 32),
    ("e_sabs_g0", 0),
    ("e_sabs_g1", 16),
    ("e_sabs_g2", 32),
    ("e_prel_g0", 0),
    ("e_prel_g1", 16),
    ("e_prel_g2", 32),
];

/// Branches that reach any address through a veneer (modload) or a
/// range-extension thunk (lld).
const BRANCHES: [&str; 2] = ["e_call26", "e_jump26"];

/// Types whose alignment lld 22 does not check: its `relocate` checks only
/// the range of CALL26, JUMP26 and TSTBR14 and drops the low two bits of X.
/// AAELF64 has X a multiple of 4 (the field holds X >> 2), and modload
/// refuses anything else rather than branch somewhere else.
const LLD_IGNORES_ALIGNMENT: [&str; 3] = ["e_call26", "e_jump26", "e_tstbr14"];

/// `BL` and `B` (bits 26-31), which a veneer or thunk must not change.
const BL: u32 = 0x9400_0000;
const B: u32 = 0x1400_0000;
const BRANCH_OPCODE: u32 = 0xfc00_0000;

fn edges() -> Edges {
    let object = assemble(&modload_tests::fixture("oracle/edges_aarch64.s"));
    // In reach of every field: PC-relative targets just past the code,
    // absolute ones at 0x100 (below 64 KiB, 16-aligned with every addend).
    let near = EDGE_TYPES
        .iter()
        .map(|edge| {
            let value = match edge.origin {
                Absolute => 0x100,
                Place | Page => EDGE_AT + 0x40,
            };
            (edge.symbol.to_owned(), value)
        })
        .collect();
    Edges::new(Path::new(MODLOAD), object, EDGE_AT, &EDGE_TYPES, [near])
}

/// Why both linkers must refuse a value.
#[derive(Clone, Copy, Debug)]
enum Refusal {
    Range,
    Alignment,
}

impl Refusal {
    /// lld's words: `checkInt`, `checkUInt` and `checkIntUInt` say
    /// "relocation R_... out of range: V is not in [L, H]; references 'S'",
    /// `checkAlignment` says "improper alignment for relocation R_...: V is
    /// not aligned to N bytes" (without the symbol).
    fn lld_says(self, edge: &EdgeType) -> Vec<String> {
        let type_name = edge.type_name;
        match self {
            Refusal::Range => vec![
                format!("relocation {type_name} out of range"),
                format!("references '{}'", edge.symbol),
            ],
            Refusal::Alignment => vec![format!("improper alignment for relocation {type_name}")],
        }
    }

    /// modload's words for the same.
    fn modload_says(self) -> &'static str {
        match self {
            Refusal::Range => "does not fit",
            Refusal::Alignment => "misaligned",
        }
    }
}

/// Runs `check`, turning a panic into a line of `failures`, so that one
/// wrong case does not hide the others.
fn collect(failures: &mut Vec<String>, name: &str, check: impl FnOnce()) {
    if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(check)) {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|text| (*text).to_owned()))
            .unwrap_or_default();
        failures.push(format!("{name}: {message}"));
    }
}

fn word(bytes: &[u8]) -> u32 {
    u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"))
}

/// What a `MOVZ` or `MOVN` (64-bit) puts in its register.
fn movw_register(insn: u32) -> u64 {
    let shift = 16 * ((insn >> 21) & 3);
    let immediate = u64::from((insn >> 5) & 0xffff) << shift;
    match insn & 0xff80_0000 {
        0xd280_0000 => immediate,
        0x9280_0000 => !immediate,
        _ => panic!("{insn:#010x} is not a 64-bit MOVZ or MOVN"),
    }
}

/// Both links of a case that must succeed agree, every relocation was
/// compared, and each MOVW put the bits of X of its group in the register,
/// as MOVZ when X is not negative and MOVN when it is.
fn agrees_at(edges: &Edges, case: &Case, pick: impl Fn(&EdgeType) -> i64) {
    let result = oracle(case);
    let (comparison, layout) = result.assert_agree();
    eprint!("{}: {comparison}", case.name);
    let total: usize = edges.input.relocations.values().map(Vec::len).sum();
    assert_eq!(
        comparison.direct_relocations + comparison.linkage_checked,
        total as u64,
        "{}: not every relocation was compared",
        case.name
    );
    let module = &layout.modules[0];
    let ours = layout.image(0);
    let theirs = result.lld_output().expect("lld's output");
    for (symbol, shift) in MOVW_GROUPS {
        let x = pick(edges.edge(symbol));
        let (place, _) = edges.place_of(symbol);
        let at = (place - module.base) as usize;
        let lld_bytes = theirs.read(place, 4).expect("lld placed the code");
        for (who, insn) in [("modload", word(&ours[at..])), ("lld", word(&lld_bytes))] {
            let register = movw_register(insn) as i64;
            assert_eq!(
                register >> shift,
                x >> shift,
                "{}: {who}'s {insn:#010x} for {symbol} does not hold X = {x:#x}",
                case.name
            );
            let movn = insn & 0xff80_0000 == 0x9280_0000;
            assert_eq!(
                movn,
                x < 0,
                "{}: {who}'s {insn:#010x} for {symbol}",
                case.name
            );
        }
    }
}

/// Both refuse, each naming the relocation type (and modload the symbol),
/// for `refusal`'s reason.
fn both_refuse(result: &Run, edge: &EdgeType, refusal: Refusal) {
    let (ours, theirs) = result.assert_both_refuse();
    assert!(
        ours.contains(edge.type_name)
            && ours.contains(edge.symbol)
            && ours.contains(refusal.modload_says())
            && refusal
                .lld_says(edge)
                .iter()
                .all(|words| theirs.contains(words.as_str())),
        "{}: both refused, but not both for {} ({refusal:?}):\n  modload: {ours}\n  lld: {theirs}",
        result.case.name,
        edge.type_name
    );
}

/// A branch one past either end of its reach: modload branches to a veneer
/// that jumps to exactly S + A, lld to a range-extension thunk that does.
fn through_a_veneer(edges: &Edges, edge: &EdgeType, case: &Case, x: i64) {
    let result = oracle(case);
    let (comparison, layout) = result.assert_agree();
    eprint!("{}: {comparison}", case.name);
    let name = &case.name;
    let (place, addend) = edges.place_of(edge.symbol);
    let target = edges.value(edge.symbol, x).wrapping_add_signed(addend);
    let opcode = if edge.symbol == "e_call26" { BL } else { B };
    assert_eq!(addend, 0, "{name}: the fixture's branches have no addend");
    assert_eq!(layout.modules[0].stubs_used, 1, "{name}: one veneer");

    let module = &layout.modules[0];
    let image = layout.image(0);
    let at = |address: u64| (address - module.base) as usize;
    let insn = word(&image[at(place)..]);
    assert_eq!(
        insn & BRANCH_OPCODE,
        opcode,
        "{name}: modload's {insn:#010x}"
    );
    let veneer = place.wrapping_add_signed(decode::branch_offset(insn));
    let veneers = layout.loader_area(0, "stubs").expect("a veneer area");
    assert!(
        veneers.contains(veneer, 16),
        "{name}: modload branches to {veneer:#x}, not to a veneer"
    );
    assert_eq!(
        decode::veneer_target(&image[at(veneer)..at(veneer) + 16]),
        Some(target),
        "{name}: modload's veneer"
    );

    // lld 22, for an absolute (`--defsym`) target out of reach of a static
    // link's branch, neither refuses nor branches short: it makes an
    // AArch64AbsLongThunk right after the caller's section. It writes the
    // thunk short, a single `b S`, when the thunk itself is in reach of S:
    // one past the maximum (x > 0), S is just beyond 128 MiB ahead of the
    // branch, so less than that ahead of the thunk. One past the minimum S
    // is behind the branch and farther still from the thunk, and the thunk
    // is long: `ldr x16, #8; br x16; .quad S`, the code of a modload veneer.
    let lld = result.lld_output().expect("lld's output");
    let insn = word(&lld.read(place, 4).expect("lld placed the code"));
    assert_eq!(insn & BRANCH_OPCODE, opcode, "{name}: lld's {insn:#010x}");
    let thunk = place.wrapping_add_signed(decode::branch_offset(insn));
    let text = layout
        .areas_of(0)
        .find(|area| area.contains(place, 4))
        .expect("the branch's section");
    let end = text.address + text.size;
    assert!(
        (end..end + 8).contains(&thunk),
        "{name}: lld branches to {thunk:#x}, not right after the caller's section ({end:#x})"
    );
    let short = lld.read(thunk, 4).expect("lld's thunk");
    if x > 0 {
        assert_eq!(word(&short) & BRANCH_OPCODE, B, "{name}: lld's short thunk");
        assert_eq!(decode::thunk_target(&short, thunk), Some(target), "{name}");
    } else {
        let long = lld.read(thunk, 16).expect("lld's long thunk");
        assert_eq!(
            decode::veneer_target(&long),
            Some(target),
            "{name}: {long:02x?}"
        );
    }
}

/// The offset in a `TBZ`/`TBNZ` (imm14, in words), from the Arm ARM.
fn test_branch_offset(insn: u32) -> i64 {
    (i64::from((insn >> 5) & 0x3fff) << 50) >> 48
}

/// A misaligned X for a type whose alignment lld does not check: modload
/// refuses; lld links and drops the low two bits of X.
fn only_modload_refuses(edges: &Edges, edge: &EdgeType, case: &Case, x: i64) {
    let result = oracle(case);
    let name = &case.name;
    let Outcome::ModloadRefused {
        modload,
        lld: Some(lld),
    } = &result.outcome
    else {
        panic!(
            "{name}: expected only modload to refuse, got {}",
            result.outcome.summary()
        );
    };
    assert_eq!(
        lld, "linked",
        "{name}: lld did not link with modload's layout"
    );
    assert!(
        modload.contains(edge.type_name)
            && modload.contains(edge.symbol)
            && modload.contains(Refusal::Alignment.modload_says()),
        "{name}: modload refused, but not for {}'s alignment: {modload}",
        edge.type_name
    );
    let (place, _) = edges.place_of(edge.symbol);
    let output = result.lld_output().expect("lld's output");
    let insn = word(&output.read(place, 4).expect("lld placed the code"));
    let offset = match edge.symbol {
        "e_tstbr14" => test_branch_offset(insn),
        _ => decode::branch_offset(insn),
    };
    assert_eq!(offset, x & !3, "{name}: lld's {insn:#010x}");
}

#[test]
fn fields_at_the_edges_of_their_ranges() {
    let edges = edges();
    let mut failures = Vec::new();
    collect(&mut failures, "a64-edges-max", || {
        agrees_at(&edges, &edges.at_high("a64-edges-max"), |edge| edge.high)
    });
    collect(&mut failures, "a64-edges-min", || {
        agrees_at(&edges, &edges.at_low("a64-edges-min"), |edge| edge.low)
    });

    for edge in &EDGE_TYPES {
        let symbol = edge.symbol;
        // Every other symbol at the same end of its range, which links.
        let past = [
            ("max", edge.past_high(), edges.at_high("")),
            ("min", edge.past_low(), edges.at_low("")),
        ];
        for (end, x, base) in past {
            let Some(x) = x else { continue };
            let mut case = edges.moved(base, symbol, x);
            case.name = format!("a64-edges-{symbol}-past-{end}");
            let name = case.name.clone();
            if BRANCHES.contains(&symbol) {
                collect(&mut failures, &name, || {
                    through_a_veneer(&edges, edge, &case, x)
                });
            } else {
                collect(&mut failures, &name, || {
                    both_refuse(&oracle(&case), edge, Refusal::Range)
                });
            }
        }
        if let Some(x) = edge.misaligned() {
            let mut case = edges.moved(edges.at_high(""), symbol, x);
            case.name = format!("a64-edges-{symbol}-misaligned");
            let name = case.name.clone();
            collect(&mut failures, &name, || {
                if LLD_IGNORES_ALIGNMENT.contains(&symbol) {
                    only_modload_refuses(&edges, edge, &case, x)
                } else {
                    both_refuse(&oracle(&case), edge, Refusal::Alignment)
                }
            });
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
