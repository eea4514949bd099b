//! The lld oracle on x86-64: objects from gcc, clang-22, rustc, gas and
//! llvm-mc, in every code model, are linked by `modload link` and by
//! `ld.lld-22` at the same addresses, and the outputs must agree (see
//! `modload_tests::oracle`). Where a value is out of range both must refuse.

use std::path::{Path, PathBuf};

use modload_tests::oracle::{
    assemble_llvm_mc, compile_c_clang, generated_source, many_relocations_source, run, Case,
    InputObject, Layout, Outcome, Run,
};
use modload_tests::{
    assemble, compile_c, compile_cxx, compile_rust, fixture, read, CModel, RustModel,
};

const MODLOAD: &str = env!("CARGO_BIN_EXE_modload");

/// Anywhere in the user half: PIC, PIE and large-model code.
const ANYWHERE: u64 = 0x5555_0000_0000;
/// Below 2 GiB: `-fno-pic` small-model code (32-bit absolute addresses).
const LOW: u64 = 0x40_0000;
/// The top 2 GiB: kernel-model code (sign-extended 32-bit addresses).
const KERNEL: u64 = 0xffff_ffff_8000_0000;

/// Where each model's modules go.
fn base_for(model: CModel) -> u64 {
    match model {
        CModel::NoPicSmall => LOW,
        CModel::Kernel => KERNEL,
        CModel::Pic | CModel::PieDefault | CModel::NoPicLarge | CModel::PicLarge => ANYWHERE,
    }
}

/// The host's exports, 256 MiB above the modules: within reach of 32-bit
/// PC-relative calls and loads, and below 4 GiB for low modules.
fn host(at: u64, names: &[&'static str]) -> Vec<(&'static str, u64)> {
    names
        .iter()
        .enumerate()
        .map(|(index, name)| (*name, at + 0x1000_0000 + 0x10 * index as u64))
        .collect()
}

/// What the m1/m2/m3 chain imports. clang turns m3's string loop into a
/// call to `strlen`.
const CHAIN_HOST: [&str; 5] = [
    "host_add",
    "host_mul",
    "host_record",
    "host_counter",
    "strlen",
];
const PROG_IMPORTS: [&str; 10] = [
    "free", "malloc", "memcpy", "printf", "putchar", "puts", "qsort", "sqrt", "strcmp", "strlen",
];

fn oracle(case: &Case) -> Run {
    run(Path::new(MODLOAD), case)
}

/// Runs every case and fails once, listing every case that disagreed, so
/// one broken model does not hide another.
fn all_agree(cases: Vec<Case>) -> Vec<Run> {
    let mut failures = Vec::new();
    let mut runs = Vec::new();
    for case in cases {
        let result = oracle(&case);
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let (comparison, _) = result.assert_agree();
            eprint!("{}: {comparison}", case.name);
        })) {
            Ok(()) => runs.push(result),
            Err(panic) => failures.push(
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_else(|| format!("{}: panicked", case.name)),
            ),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    runs
}

fn chain(compile: fn(&Path, CModel, &[&str]) -> PathBuf, model: CModel) -> Vec<PathBuf> {
    ["m1.c", "m2.c", "m3.c"]
        .iter()
        .map(|file| compile(&fixture(file), model, &["-fno-common"]))
        .collect()
}

#[test]
fn gcc_module_chain_in_every_code_model() {
    let cases = CModel::ALL
        .iter()
        .map(|&model| {
            let at = base_for(model);
            Case::new(
                &format!("gcc-chain-{}", model.name()),
                &chain(compile_c, model),
                at,
            )
            .symbols(host(at, &CHAIN_HOST))
        })
        .collect();
    let runs = all_agree(cases);
    // m3 calls m1 and m2 directly: the module-to-module calls were compared.
    assert!(runs
        .iter()
        .all(|run| run.assert_agree().1.modules.len() == 3));
}

#[test]
fn clang_module_chain_in_every_code_model() {
    let cases = CModel::ALL
        .iter()
        .map(|&model| {
            let at = base_for(model);
            Case::new(
                &format!("clang-chain-{}", model.name()),
                &chain(compile_c_clang, model),
                at,
            )
            .symbols(host(at, &CHAIN_HOST))
        })
        .collect();
    all_agree(cases);
}

#[test]
fn large_models_reach_a_host_anywhere() {
    // 64-bit references reach a host 2^47 away from kernel-space modules.
    let cases = [CModel::NoPicLarge, CModel::PicLarge]
        .iter()
        .flat_map(|&model| {
            [
                (compile_c as fn(&Path, CModel, &[&str]) -> PathBuf, "gcc"),
                (compile_c_clang, "clang"),
            ]
            .map(|(compile, compiler)| {
                let far: Vec<(&str, u64)> = CHAIN_HOST
                    .iter()
                    .enumerate()
                    .map(|(index, name)| (*name, 0x7fff_0000_0000 + 0x40 * index as u64))
                    .collect();
                Case::new(
                    &format!("{compiler}-far-host-{}", model.name()),
                    &chain(compile, model),
                    KERNEL,
                )
                .symbols(far)
            })
        })
        .collect();
    all_agree(cases);
}

#[test]
fn rust_modules_in_every_code_model() {
    let cases = RustModel::ALL
        .iter()
        .map(|&model| {
            let c_model = match model {
                RustModel::Pic => CModel::Pic,
                RustModel::Static => CModel::NoPicSmall,
                RustModel::StaticKernel => CModel::Kernel,
                RustModel::StaticLarge => CModel::NoPicLarge,
            };
            let at = base_for(c_model);
            let objects = [
                compile_c(&fixture("m1.c"), c_model, &["-fno-common"]),
                compile_rust(&fixture("r1.rs"), model),
            ];
            Case::new(&format!("rust-{}", model.name()), &objects, at)
                .symbols(host(at, &CHAIN_HOST))
        })
        .collect();
    all_agree(cases);
}

#[test]
fn assembly_for_every_relocation_type() {
    let anywhere = [
        assemble(&fixture("relocs.s")),
        assemble(&fixture("relocs_data.s")),
        assemble(&fixture("relocs_small.s")),
    ];
    // llvm-mc has no @GOTPLT, so it assembles the other files only.
    let mc = [
        assemble_llvm_mc(&fixture("relocs_data.s"), "x86_64"),
        assemble_llvm_mc(&fixture("relocs_small.s"), "x86_64"),
        assemble_llvm_mc(&fixture("relocs_abs32.s"), "x86_64"),
    ];
    let low = [assemble(&fixture("relocs_abs32.s"))];
    let runs = all_agree(vec![
        Case::new("asm-relocs", &anywhere, ANYWHERE).symbols(host(ANYWHERE, &["host_add"])),
        Case::new("asm-relocs-kernel", &anywhere, KERNEL).symbols(host(KERNEL, &["host_add"])),
        Case::new("asm-abs32", &low, LOW),
        Case::new("asm-mc", &mc, LOW).symbols(host(LOW, &["host_add"])),
    ]);
    // Every GOT flavour went through the linkage comparison, not byte equality.
    let (comparison, _) = runs[0].assert_agree();
    assert!(comparison.linkage_checked >= 20, "{comparison}");
}

#[test]
fn comdat_groups_resolve_like_lld() {
    let asm = [
        assemble(&fixture("comdat_a.s")),
        assemble(&fixture("comdat_b.s")),
    ];
    let cxx = |model| {
        [
            compile_cxx(&fixture("comdat_a.cpp"), model, &["-fno-common"]),
            compile_cxx(&fixture("comdat_b.cpp"), model, &["-fno-common"]),
        ]
    };
    all_agree(vec![
        Case::new("comdat-asm", &asm, ANYWHERE),
        Case::new("comdat-cxx-pic", &cxx(CModel::Pic), ANYWHERE),
        Case::new("comdat-cxx-small", &cxx(CModel::NoPicSmall), LOW),
    ]);
}

#[test]
fn weak_imports_resolve_like_lld() {
    let gcc = [compile_c(&fixture("weak_undef.c"), CModel::Pic, &[])];
    let clang = [compile_c_clang(
        &fixture("weak_undef.c"),
        CModel::PieDefault,
        &[],
    )];
    all_agree(vec![
        // Unresolved, both linkers give the weak import address 0; low, so
        // that a direct call to 0 is in reach.
        Case::new("weak-unresolved-gcc", &gcc, LOW),
        Case::new("weak-unresolved-clang", &clang, LOW),
        Case::new("weak-resolved-gcc", &gcc, ANYWHERE).symbols(host(ANYWHERE, &["maybe"])),
        Case::new("weak-resolved-clang", &clang, ANYWHERE).symbols(host(ANYWHERE, &["maybe"])),
    ]);
}

#[test]
fn a_multi_file_program() {
    let sources = [
        "prog/main.c",
        "prog/state.c",
        "prog/numbers.c",
        "prog/words.c",
        "prog/commands.c",
    ];
    let build = |compile: fn(&Path, CModel, &[&str]) -> PathBuf, model| -> Vec<PathBuf> {
        // state.c defines what the others use, so it loads first after main's
        // dependencies: modload binds only to earlier modules.
        let mut objects: Vec<PathBuf> = sources
            .iter()
            .map(|file| compile(&fixture(file), model, &["-fno-common"]))
            .collect();
        let main = objects.remove(0);
        objects.push(main);
        objects
    };
    all_agree(vec![
        Case::new(
            "prog-gcc-pie",
            &build(compile_c, CModel::PieDefault),
            ANYWHERE,
        )
        .symbols(host(ANYWHERE, &PROG_IMPORTS)),
        Case::new("prog-gcc-small", &build(compile_c, CModel::NoPicSmall), LOW)
            .symbols(host(LOW, &PROG_IMPORTS)),
        Case::new(
            "prog-clang-pic",
            &build(compile_c_clang, CModel::Pic),
            ANYWHERE,
        )
        .symbols(host(ANYWHERE, &PROG_IMPORTS)),
    ]);
}

#[test]
fn an_object_with_more_than_ten_thousand_relocations() {
    let source = generated_source("many_relocations.c", &many_relocations_source(2000));
    let object = compile_c(&source, CModel::Pic, &["-fno-common"]);
    let input = InputObject::parse("many_relocations", &read(&object));
    let total: usize = input.relocations.values().map(Vec::len).sum();
    assert!(total > 10_000, "only {total} relocations");
    let runs = all_agree(vec![Case::new("many-relocations", &[object], ANYWHERE)
        .symbols(host(ANYWHERE, &["many_import", "many_import_data"]))]);
    let (comparison, layout) = runs[0].assert_agree();
    assert_eq!(layout.modules[0].relocations, total as u64);
    assert!(comparison.direct_relocations + comparison.linkage_checked >= total as u64);
}

/// The place and addend of the relocation against `symbol` in `object`, at
/// the addresses of `layout` (module 0).
fn place_of(object: &InputObject, layout: &Layout, symbol: &str) -> (u64, i64) {
    for (section, relocations) in &object.relocations {
        for relocation in relocations {
            if object.symbol_name(relocation.symbol) == symbol {
                let area = layout
                    .section_area(0, *section)
                    .unwrap_or_else(|| panic!("section {section} was not loaded"));
                return (area.address + relocation.offset, relocation.addend);
            }
        }
    }
    panic!("no relocation against {symbol}");
}

/// The edge symbols, and how to compute each one's value from the largest or
/// smallest field value it must produce.
struct Edges {
    object: PathBuf,
    input: InputObject,
    layout_symbols: Vec<(String, u64)>,
    layout: Layout,
    _run: Run,
}

/// Above 4 GiB, so that a symbol 2 GiB below a field is still an address.
const EDGE_AT: u64 = 0x1_0000_0000;

/// Each edge symbol and the range of values its relocation's field accepts
/// (psABI: PC32, PLT32 and 32S signed 32 bits, 32 unsigned, 16 and 8 either
/// signed or unsigned, PC16 and PC8 signed, 64 and PC64 anything).
const EDGE_RANGES: [(&str, i64, i64); 11] = [
    ("e_pc32", i32::MIN as i64, i32::MAX as i64),
    ("e_plt32", i32::MIN as i64, i32::MAX as i64),
    ("e_32", 0, u32::MAX as i64),
    ("e_32s", i32::MIN as i64, i32::MAX as i64),
    ("e_64", i64::MIN, i64::MAX),
    ("e_16", i16::MIN as i64, u16::MAX as i64),
    ("e_8", i8::MIN as i64, u8::MAX as i64),
    ("e_pc16", i16::MIN as i64, i16::MAX as i64),
    ("e_pc8", i8::MIN as i64, i8::MAX as i64),
    ("e_pc64", i64::MIN, i64::MAX),
    ("e_pc32d", i32::MIN as i64, i32::MAX as i64),
];

fn is_pc_relative(symbol: &str) -> bool {
    matches!(
        symbol,
        "e_pc32" | "e_plt32" | "e_pc16" | "e_pc8" | "e_pc64" | "e_pc32d"
    )
}

impl Edges {
    fn new() -> Edges {
        let object = assemble_llvm_mc(&fixture("oracle/edges_x86_64.s"), "x86_64");
        let input = InputObject::parse("edges", &read(&object));
        // Everything in reach links and shows where each field is. The 8-
        // and 16-bit PC-relative fields reach only their own page, and where
        // the data page is shows only after a link, so try each of the first.
        let (run, layout_symbols) = (0..4u64)
            .find_map(|page| {
                let mut case = Case::new("edges-layout", std::slice::from_ref(&object), EDGE_AT);
                for (name, _, _) in EDGE_RANGES {
                    let near = match name {
                        "e_pc8" | "e_pc16" => EDGE_AT + page * 0x1000 + 0x40,
                        _ if is_pc_relative(name) => EDGE_AT + 0x40,
                        _ => 0x10,
                    };
                    case = case.symbol(name, near);
                }
                let run = oracle(&case);
                matches!(run.outcome, Outcome::Compared { .. }).then(|| (run, case.symbols))
            })
            .expect("the edge object links with every symbol in reach");
        let layout = run.assert_agree().1.clone();
        Edges {
            object,
            input,
            layout_symbols,
            layout,
            _run: run,
        }
    }

    /// The value of `symbol` that makes its field hold `field`: S = field - A
    /// for absolute types, S = field + P - A for PC-relative ones.
    fn value(&self, symbol: &str, field: i64) -> u64 {
        let (place, addend) = place_of(&self.input, &self.layout, symbol);
        let base = if is_pc_relative(symbol) { place } else { 0 };
        base.wrapping_add_signed(field).wrapping_sub(addend as u64)
    }

    /// A case with every symbol at the field value `pick(type range)` gives.
    fn case(&self, name: &str, pick: impl Fn(i64, i64) -> i64) -> Case {
        let mut case = Case::new(name, std::slice::from_ref(&self.object), EDGE_AT)
            .laid_out_with(&self.layout_symbols);
        for (symbol, low, high) in EDGE_RANGES {
            case = case.symbol(symbol, self.value(symbol, pick(low, high)));
        }
        case
    }
}

#[test]
fn fields_at_the_edges_of_their_ranges() {
    let edges = Edges::new();
    all_agree(vec![
        edges.case("edges-max", |_, high| high),
        edges.case("edges-min", |low, _| low),
    ]);

    // One past either end of each checked type: both linkers refuse. A call
    // is different: modload goes through a stub, which lld does not make.
    let checked = [
        ("e_pc32", "R_X86_64_PC32"),
        ("e_32", "R_X86_64_32"),
        ("e_32s", "R_X86_64_32S"),
        ("e_16", "R_X86_64_16"),
        ("e_8", "R_X86_64_8"),
        ("e_pc16", "R_X86_64_PC16"),
        ("e_pc8", "R_X86_64_PC8"),
        ("e_pc32d", "R_X86_64_PC32"),
    ];
    let mut failures = Vec::new();
    for (symbol, type_name) in checked {
        for (end, step) in [("max", 1i64), ("min", -1)] {
            let name = format!("edges-{symbol}-past-{end}");
            // Every other symbol at the same end of its range, which links.
            let mut case = edges.case(&name, |low, high| if step > 0 { high } else { low });
            let past = |field: i64| edges.value(symbol, field + step);
            let (low, high) = case_range(symbol);
            for entry in &mut case.symbols {
                if entry.0 == symbol {
                    entry.1 = past(if step > 0 { high } else { low });
                }
            }
            let result = oracle(&case);
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let (ours, theirs) = result.assert_both_refuse();
                assert!(
                    ours.contains(type_name) && theirs.contains(type_name),
                    "{name}: both refused, but not both for {type_name}:\n  modload: {ours}\n  lld: {theirs}"
                );
            })) {
                Ok(()) => {}
                Err(panic) => failures.push(
                    panic
                        .downcast_ref::<String>()
                        .cloned()
                        .unwrap_or_else(|| format!("{name} panicked")),
                ),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));

    // A call one past either end: lld refuses, modload's call goes through
    // a stub that jumps exactly to the symbol.
    for (end, field) in [
        ("max", i64::from(i32::MAX) + 1),
        ("min", i64::from(i32::MIN) - 1),
    ] {
        let mut case = edges.case(&format!("edges-plt32-past-{end}"), |low, high| {
            if end == "max" {
                high
            } else {
                low
            }
        });
        let target = edges.value("e_plt32", field);
        for entry in &mut case.symbols {
            if entry.0 == "e_plt32" {
                entry.1 = target;
            }
        }
        let result = oracle(&case);
        let (layout, lld) = result.assert_only_lld_refuses();
        assert!(lld.contains("R_X86_64_PLT32"), "{lld}");
        assert_eq!(layout.modules[0].stubs_used, 1);
        let (place, addend) = place_of(&edges.input, layout, "e_plt32");
        let image = layout.image(0);
        let module = &layout.modules[0];
        let at = |address: u64| (address - module.base) as usize;
        let displacement = i32::from_le_bytes(image[at(place)..at(place) + 4].try_into().unwrap());
        // call rel32: the destination is the end of the field plus the displacement.
        let destination = place
            .wrapping_add(4)
            .wrapping_add_signed(displacement.into());
        assert_eq!(addend, -4);
        let stubs = layout.loader_area(0, "stubs").expect("a stub area");
        assert!(
            stubs.contains(destination, 16),
            "{destination:#x} is not a stub"
        );
        let stub = &image[at(destination)..at(destination) + 16];
        assert_eq!(stub[..6], [0xff, 0x25, 0, 0, 0, 0], "jmp *0(%rip)");
        assert_eq!(u64::from_le_bytes(stub[6..14].try_into().unwrap()), target);
    }
}

/// The accepted field range of an edge symbol's relocation type.
fn case_range(symbol: &str) -> (i64, i64) {
    EDGE_RANGES
        .iter()
        .find(|(name, _, _)| *name == symbol)
        .map(|(_, low, high)| (*low, *high))
        .unwrap_or_else(|| panic!("no edge symbol {symbol}"))
}

#[test]
fn far_references_are_refused_by_both() {
    let far = 0x7fff_0000_0000u64;
    // Values that link, to learn the layout: near the module, or low for
    // the 32-bit absolute reference.
    let layout_near = |name: &str| {
        let near = if name == "far_symbol" {
            0x1000
        } else {
            ANYWHERE + 0x1000_0000
        };
        vec![(name.to_owned(), near)]
    };
    let mut failures = Vec::new();
    for (file, symbol) in [
        ("far_call.s", "far_function"),
        ("pc32_data.s", "far_data"),
        ("far_abs32.s", "far_symbol"),
    ] {
        let object = assemble(&fixture(file));
        let case = Case::new(&format!("far-{file}"), &[object], ANYWHERE)
            .symbol(symbol, far)
            .laid_out_with(&layout_near(symbol));
        let result = oracle(&case);
        if !matches!(result.outcome, Outcome::BothRefused { .. }) {
            failures.push(format!("{file}: {}", result.outcome.summary()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Near, the same objects link the same way.
    all_agree(
        ["far_call.s", "pc32_data.s", "far_plt.s"]
            .iter()
            .map(|file| {
                Case::new(
                    &format!("near-{file}"),
                    &[assemble(&fixture(file))],
                    ANYWHERE,
                )
                .symbols(host(ANYWHERE, &["far_function", "far_data"]))
            })
            .collect(),
    );
    all_agree(vec![Case::new(
        "near-far_abs32",
        &[assemble(&fixture("far_abs32.s"))],
        LOW,
    )
    .symbols(host(LOW, &["far_symbol"]))]);
}

#[test]
fn relaxed_got_loads_keep_their_meaning() {
    // `movl gx_target@GOTPCREL+4(%rip)` loads half of the slot: relaxing it
    // to `lea` changes the value. lld keeps both loads here (--no-relax).
    let objects = [assemble(&fixture("oracle/gotpcrelx_addend.s"))];
    all_agree(vec![Case::new("gotpcrelx-addend", &objects, ANYWHERE)]);
}

#[test]
fn the_oracle_notices_wrong_bytes_slots_and_stubs() {
    // A correct link first, then one corruption at a time: each must show.
    let objects = chain(compile_c, CModel::Pic);
    let case = Case::new("self-check", &objects, ANYWHERE).symbols(host(ANYWHERE, &CHAIN_HOST));
    let result = oracle(&case);
    let (_, layout) = result.assert_agree();
    let layout = layout.clone();
    let module = 1; // m2: GOT slots and stubs
    let image_path = layout.dir.join(&layout.modules[module].file);
    let pristine = read(&image_path);
    let text = layout.section_area(module, 1).expect("m2's .text").clone();
    let got = layout
        .loader_area(module, "got")
        .expect("m2 has GOT slots")
        .clone();
    let base = layout.modules[module].base;
    let corruptions: [(&str, u64); 2] = [
        ("a code byte", text.address + 1),
        ("a GOT slot", got.address + 2),
    ];
    for (what, address) in corruptions {
        let mut image = pristine.clone();
        image[(address - base) as usize] ^= 0x40;
        std::fs::write(&image_path, &image).unwrap();
        let comparison = result.compare_again();
        assert!(
            !comparison.mismatches.is_empty(),
            "corrupting {what} at {address:#x} went unnoticed"
        );
    }
    std::fs::write(&image_path, &pristine).unwrap();
    assert!(result.compare_again().mismatches.is_empty());
}
