//! Self-check of the fixtures: every fixture builds in every model it
//! supports, imports exactly what it is meant to, carries the relocation
//! types it is meant to exercise, and computes the documented values when
//! gcc links it natively. A fixture broken here would otherwise show up as a
//! puzzling loader failure.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use modload_tests::{
    assemble, compile_c, compile_cxx, compile_rust, exported_symbols, fixture, relocation_types,
    run_native, section_names, undefined_symbols, CModel, RustModel,
};

/// gas adds this to every object with a GOT relocation; the loader resolves
/// it to the module's own GOT. It is not an import, so most checks drop it.
const GOT_SYMBOL: &str = "_GLOBAL_OFFSET_TABLE_";

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|item| item.to_string()).collect()
}

fn imports(object: &Path) -> BTreeSet<String> {
    let mut names = undefined_symbols(object);
    names.remove(GOT_SYMBOL);
    names
}

fn r(types: &[&str]) -> BTreeSet<String> {
    types.iter().map(|t| format!("R_X86_64_{t}")).collect()
}

/// The C modules of the chain and the error cases, with their imports.
const C_MODULES: &[(&str, &[&str])] = &[
    ("m1.c", &["host_add"]),
    (
        "m2.c",
        &["host_mul", "m1_value", "m1_bump", "m1_square", "m1_counter"],
    ),
    (
        "m3.c",
        &[
            "host_add",
            "host_record",
            "host_counter",
            "m1_greeting",
            "m1_square",
            "m1_dispatch",
            "m2_scale",
        ],
    ),
    ("dup_m1.c", &[]),
    (
        "unresolved.c",
        &["missing_one", "missing_two", "missing_data"],
    ),
    ("weak_undef.c", &["maybe"]),
];

#[test]
fn c_modules_import_only_what_they_mean_to() {
    for model in CModel::ALL {
        for (source, expected) in C_MODULES {
            let object = compile_c(&fixture(source), model, &[]);
            assert_eq!(
                imports(&object),
                set(expected),
                "imports of {source} built {}",
                model.name()
            );
        }
    }
}

#[test]
fn c_modules_export_their_api() {
    let exports: &[(&str, &[&str])] = &[
        (
            "m1.c",
            &[
                "m1_counter",
                "m1_scratch",
                "m1_value",
                "m1_bump",
                "m1_greeting",
                "m1_square",
                "m1_fill",
                "m1_scratch_at",
                "m1_dispatch",
            ],
        ),
        (
            "m2.c",
            &[
                "m2_counter_ptr",
                "m2_scale",
                "m2_compute",
                "m2_get_fn",
                "m2_read_counter",
                "m2_set_counter",
                "m2_counter_addr",
                "m2_counter_via_ptr",
            ],
        ),
        (
            "m3.c",
            &[
                "m3_ctor_state",
                "m3_greeting_ok",
                "m3_greeting_len",
                "m3_combine",
                "m3_ticks",
            ],
        ),
        ("dup_m1.c", &["m1_value", "dup_m1_value"]),
        ("unresolved.c", &["unresolved_sum"]),
        ("weak_undef.c", &["weak_probe", "weak_call"]),
    ];
    for model in CModel::ALL {
        for (source, expected) in exports {
            let object = compile_c(&fixture(source), model, &[]);
            assert_eq!(
                exported_symbols(&object),
                set(expected),
                "exports of {source} built {}",
                model.name()
            );
        }
    }
}

/// Each model must really change the code: if a flag got lost, two models
/// would produce the same relocations and half the loader tests would test
/// nothing new.
#[test]
fn c_models_produce_their_typical_relocations() {
    for model in CModel::ALL {
        let mut types = BTreeSet::new();
        for source in ["m1.c", "m2.c", "m3.c"] {
            types.extend(relocation_types(&compile_c(&fixture(source), model, &[])));
        }
        let name = model.name();
        match model {
            CModel::Pic => {
                assert!(
                    types.contains("R_X86_64_REX_GOTPCRELX"),
                    "{name}: {types:?}"
                );
                assert!(!types.contains("R_X86_64_32S"), "{name}: {types:?}");
            }
            CModel::PieDefault => {
                assert!(types.contains("R_X86_64_PC32"), "{name}: {types:?}");
                assert!(!types.contains("R_X86_64_32"), "{name}: {types:?}");
                assert!(!types.contains("R_X86_64_32S"), "{name}: {types:?}");
            }
            CModel::NoPicSmall => {
                assert!(types.contains("R_X86_64_32"), "{name}: {types:?}");
                assert!(types.contains("R_X86_64_32S"), "{name}: {types:?}");
            }
            CModel::Kernel => {
                assert!(types.contains("R_X86_64_32S"), "{name}: {types:?}");
                assert!(!types.contains("R_X86_64_32"), "{name}: {types:?}");
            }
            CModel::NoPicLarge => assert_eq!(types, r(&["64"]), "{name}"),
            CModel::PicLarge => {
                for t in ["GOTPC64", "GOTOFF64", "GOT64", "PLTOFF64"] {
                    assert!(
                        types.contains(&format!("R_X86_64_{t}")),
                        "{name}: {types:?}"
                    );
                }
                assert!(!types.contains("R_X86_64_PC32"), "{name}: {types:?}");
            }
        }
    }
}

#[test]
fn m3_has_ordered_constructors_and_a_destructor() {
    for model in CModel::ALL {
        let sections = section_names(&compile_c(&fixture("m3.c"), model, &[]));
        for wanted in [".init_array.00200", ".init_array", ".fini_array"] {
            assert!(
                sections.contains(wanted),
                "{} lacks {wanted}: {sections:?}",
                model.name()
            );
        }
    }
}

#[test]
fn rust_module_imports_only_what_it_means_to() {
    for model in RustModel::ALL {
        let object = compile_rust(&fixture("r1.rs"), model);
        let name = model.name();
        assert_eq!(
            undefined_symbols(&object),
            set(&["host_add", "m1_value"]),
            "{name}"
        );
        assert_eq!(
            exported_symbols(&object),
            set(&[
                "R1_STATE",
                "R1_TABLE",
                "r1_sum",
                "r1_bump",
                "r1_table_sum",
                "r1_apply",
                "r1_select",
            ]),
            "{name}"
        );
        let types = relocation_types(&object);
        let sections = section_names(&object);
        match model {
            RustModel::Pic => {
                assert!(types.contains("R_X86_64_GOTPCREL"), "{name}: {types:?}");
                assert!(
                    sections.contains(".data.rel.ro.R1_TABLE"),
                    "{name}: {sections:?}"
                );
            }
            RustModel::Static | RustModel::StaticKernel => {
                assert!(types.contains("R_X86_64_32S"), "{name}: {types:?}");
                assert!(types.contains("R_X86_64_64"), "{name}: {types:?}");
            }
            RustModel::StaticLarge => {
                assert!(!types.contains("R_X86_64_32S"), "{name}: {types:?}");
                assert!(!types.contains("R_X86_64_PLT32"), "{name}: {types:?}");
                assert!(
                    sections.contains(".lrodata.r1_select"),
                    "{name}: {sections:?}"
                );
            }
        }
        // The jump table of r1_select needs relocations in every model.
        let jump_table = sections
            .iter()
            .any(|s| s == ".rela.rodata.r1_select" || s == ".rela.lrodata.r1_select");
        assert!(jump_table, "{name}: no relocated jump table: {sections:?}");
    }
}

#[test]
fn assembly_fixtures_import_and_relocate_as_documented() {
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "relocs.s",
            &["host_add", GOT_SYMBOL],
            &[
                "64",
                "PC32",
                "PLT32",
                "GOTPCREL",
                "GOTPCRELX",
                "REX_GOTPCRELX",
                "GOTPC32",
                "GOTOFF64",
                "GOTPC64",
                "GOT32",
                "GOT64",
                "GOTPLT64",
                "GOTPCREL64",
                "PLTOFF64",
                "SIZE32",
                "SIZE64",
            ],
        ),
        ("relocs_abs32.s", &[], &["32", "32S", "PC32"]),
        (
            "relocs_data.s",
            &["host_add"],
            &["64", "PC32", "PC64", "PLT32"],
        ),
        ("relocs_small.s", &[], &["8", "16", "PC8", "PC16", "PC32"]),
        (
            "far_ref.s",
            &["far_symbol", "far_function"],
            &["32", "PC32"],
        ),
        ("far_abs32.s", &["far_symbol"], &["32"]),
        ("far_call.s", &["far_function"], &["PC32"]),
        ("far_plt.s", &["far_function"], &["PLT32"]),
        ("pc32_data.s", &["far_data"], &["PC32"]),
        ("comdat_a.s", &[], &["PC32", "PLT32"]),
        ("comdat_b.s", &[], &["PC32", "PLT32"]),
    ];
    for (source, expected_imports, expected_types) in cases {
        let object = assemble(&fixture(source));
        assert_eq!(
            undefined_symbols(&object),
            set(expected_imports),
            "imports of {source}"
        );
        assert_eq!(
            relocation_types(&object),
            r(expected_types),
            "relocation types of {source}"
        );
    }
}

#[test]
fn comdat_fixtures_carry_their_groups() {
    for source in ["comdat_a.s", "comdat_b.s"] {
        let object = assemble(&fixture(source));
        let sections = section_names(&object);
        assert!(sections.contains(".group"), "{source}: {sections:?}");
        assert!(
            sections.contains(".text.shared_fn"),
            "{source}: {sections:?}"
        );
        assert!(
            sections.contains(".data.shared_fn"),
            "{source}: {sections:?}"
        );
    }
    for model in CModel::ALL {
        for source in ["comdat_a.cpp", "comdat_b.cpp"] {
            let object = compile_cxx(&fixture(source), model, &[]);
            assert_eq!(
                imports(&object),
                set(&[]),
                "{source} built {}",
                model.name()
            );
            let sections = section_names(&object);
            assert!(sections.contains(".group"), "{source}: {sections:?}");
            assert!(
                sections.contains(".text._Z13cxx_shared_fnl"),
                "{source}: {sections:?}"
            );
        }
    }
}

const CHAIN_OUTPUT: &str = "\
record 300
record 301
m1_value() = 42
m1_counter = 7
m1_bump(1) = 8
m2_set_counter(7) = 8
m1_greeting() = hello from m1
m1_square(9) = 81
m1_scratch_at(5) = 0
m1_fill(2) = 152
m1_scratch_at(5) = 7
m1_scratch_at(16) = -1
m1_dispatch(0, 10) = 11
m1_dispatch(1, 10) = 30
m1_dispatch(2, 10) = -10
m1_dispatch(3, 10) = 100
m1_dispatch(4, 10) = -1
m2_scale(3) = 126
m2_read_counter() = 7
m2_compute(3) = 134
m2_compute(3) = 135
m2_get_fn() == m1_square: 1
m2_get_fn()(9) = 81
m2_counter_addr() == &m1_counter: 1
m2_counter_via_ptr() = 9
m2_set_counter(100) = 9
m1_counter = 100
m3_ctor_state() = 12
m3_greeting_ok() = 1
m3_greeting_len() = 13
m3_combine(2) = 94
m3_ticks() = 1
R1_STATE = 5
r1_sum(0) = 42
r1_sum(4) = 48
r1_bump(1) = 6
r1_table_sum() = 42
R1_TABLE = 11 31
r1_apply(0, 5) = 6
r1_apply(1, 5) = 10
r1_apply(2, 5) = 25
r1_apply(3, 5) = 18446744073709551615
r1_select(0, 100) = 101
r1_select(1, 100) = 300
r1_select(2, 100) = 155
r1_select(3, 100) = 400
r1_select(4, 100) = 93
r1_select(5, 100) = 33
r1_select(6, 100) = 356
r1_select(7, 100) = 25600
r1_select(8, 100) = 18446744073709551515
r1_select(9, 100) = 10000
r1_select(10, 100) = 0
weak_probe() = 0
weak_call() = -1
record 302
";

/// The documented values of m1, m2, m3, r1 and weak_undef, checked by
/// linking them natively in every C model; the Rust models rotate along.
#[test]
fn chain_computes_the_documented_values_natively() {
    for (i, model) in CModel::ALL.into_iter().enumerate() {
        let rust_model = RustModel::ALL[i % RustModel::ALL.len()];
        let mut objects = vec![compile_c(
            &fixture("native/chain_driver.c"),
            CModel::PieDefault,
            &[],
        )];
        for source in ["m1.c", "m2.c", "m3.c", "weak_undef.c"] {
            objects.push(compile_c(&fixture(source), model, &[]));
        }
        objects.push(compile_rust(&fixture("r1.rs"), rust_model));
        let (stdout, code) = run_native(&objects, &[]);
        assert_eq!(code, 0, "C {} / Rust {}", model.name(), rust_model.name());
        assert_eq!(
            stdout,
            CHAIN_OUTPUT,
            "C {} / Rust {}",
            model.name(),
            rust_model.name()
        );
    }
}

#[test]
fn relocation_fixtures_compute_the_documented_values_natively() {
    let mut objects = vec![compile_c(
        &fixture("native/relocs_driver.c"),
        CModel::PieDefault,
        &[],
    )];
    for source in [
        "relocs.s",
        "relocs_abs32.s",
        "relocs_data.s",
        "relocs_small.s",
    ] {
        objects.push(assemble(&fixture(source)));
    }
    let (stdout, code) = run_native(&objects, &[]);
    assert_eq!(code, 0);
    assert_eq!(
        stdout,
        "\
rel_abs64 = 6401
rel_pc32 = 3201
rel_call_local = 3202
rel_plt32_global = 3203
rel_plt32_extern = 1024
rel_gotpcrel = 909
rel_gotpcrelx = 2022
rel_gotpcrelx_tail = 3033
rel_rex_gotpcrelx = 909
rel_gotpc32 = 2525
rel_gotpc64 = 2526
rel_got32 = 909
rel_got64 = 909
rel_gotplt64 = 909
rel_gotpcrel64 = 909
rel_pltoff64 = 4044
rel_size32 = 24
rel_size64 = 32
rel_abs32 = 320
rel_abs32s = 321
rel_abs32_data = 322
rel_abs32s_imm = 323
rd_abs64 = 10
rd_abs64_addend = 30
rd_pc32_data = 20
rd_pc64_data = 40
rd_call_via_data = 11
rd_sum = 111
rel_abs8 = 90
rel_abs16 = 4660
rel_pc8 = 88
rel_pc16 = 1616
"
    );
}

#[test]
fn comdat_fixtures_share_one_copy_natively() {
    for model in CModel::ALL {
        let objects = vec![
            compile_c(&fixture("native/comdat_driver.c"), CModel::PieDefault, &[]),
            assemble(&fixture("comdat_a.s")),
            assemble(&fixture("comdat_b.s")),
            compile_cxx(&fixture("comdat_a.cpp"), model, &[]),
            compile_cxx(&fixture("comdat_b.cpp"), model, &[]),
        ];
        let (stdout, code) = run_native(&objects, &[]);
        assert_eq!(code, 0, "{}", model.name());
        assert_eq!(
            stdout,
            "\
comdat_a_call() = 1235
comdat_b_call() = 1236
comdat_a_bump() = 1
comdat_b_bump() = 2
same shared_fn: 1
comdat_cxx_a_call() = 1235
comdat_cxx_b_call() = 1236
comdat_cxx_a_bump() = 1
comdat_cxx_b_bump() = 2
same cxx_shared_counter: 1
",
            "{}",
            model.name()
        );
    }
}

#[test]
fn error_case_fixtures_are_correct_code_natively() {
    for model in CModel::ALL {
        let mut objects = vec![compile_c(
            &fixture("native/misc_driver.c"),
            CModel::PieDefault,
            &[],
        )];
        for source in [
            "far_ref.s",
            "far_abs32.s",
            "far_call.s",
            "far_plt.s",
            "pc32_data.s",
        ] {
            objects.push(assemble(&fixture(source)));
        }
        for source in ["dup_m1.c", "unresolved.c", "weak_undef.c"] {
            objects.push(compile_c(&fixture(source), model, &[]));
        }
        let (stdout, code) = run_native(&objects, &[]);
        assert_eq!(code, 0, "{}", model.name());
        assert_eq!(
            stdout,
            "\
far_ref_abs32() == &far_symbol: 1
far_ref_call() = 777
far_ref_lea() == far_function: 1
far_abs32() == &far_symbol: 1
far_call() = 777
far_plt() = 777
pc32_data_load() = 4242
dup_m1_value() = 99
unresolved_sum() = 6
weak_probe() = 1
weak_call() = 5
",
            "{}",
            model.name()
        );
    }
}

const PROG_SOURCES: &[&str] = &[
    "prog/main.c",
    "prog/commands.c",
    "prog/numbers.c",
    "prog/words.c",
    "prog/state.c",
];

/// What the program needs from libc and libm once its own files are linked.
const PROG_LIBC_IMPORTS: &[&str] = &[
    "free", "malloc", "memcpy", "printf", "putchar", "puts", "qsort", "sqrt", "strcmp", "strlen",
];

const PROG_MODELS: [CModel; 3] = [CModel::PieDefault, CModel::Pic, CModel::NoPicSmall];

fn prog_objects(model: CModel) -> Vec<PathBuf> {
    PROG_SOURCES
        .iter()
        .map(|source| compile_c(&fixture(source), model, &[]))
        .collect()
}

#[test]
fn program_imports_only_libc() {
    for model in PROG_MODELS {
        let objects = prog_objects(model);
        let mut undefined = BTreeSet::new();
        let mut defined = BTreeSet::new();
        for object in &objects {
            undefined.extend(imports(object));
            defined.extend(exported_symbols(object));
        }
        let external: BTreeSet<String> = undefined.difference(&defined).cloned().collect();
        assert_eq!(external, set(PROG_LIBC_IMPORTS), "{}", model.name());
        assert!(defined.contains("main"), "{}", model.name());
    }
}

#[test]
fn program_runs_natively() {
    for model in PROG_MODELS {
        let objects = prog_objects(model);

        let (stdout, code) = run_native(&objects, &["alpha", "beta"]);
        assert_eq!(
            stdout,
            "\
prog: modload-prog
init: 1234
args: 2
arg 1: alpha
arg 2: beta
sort: 3 4 12 84
norm: 85.000
join: alpha+beta (10 chars)
calls: 3 (sort 1, norm 1, join 1)
",
            "{}",
            model.name()
        );
        assert_eq!(code, 3, "{}", model.name());

        let (stdout, code) = run_native(&objects, &[]);
        assert_eq!(
            stdout,
            "\
prog: modload-prog
init: 1234
args: 0
sort: 3 4 12 84
norm: 85.000
join: (none)
calls: 3 (sort 1, norm 1, join 1)
",
            "{}",
            model.name()
        );
        assert_eq!(code, 3, "{}", model.name());
    }
}

#[test]
fn compiler_errors_panic_with_the_compiler_message() {
    let source = Path::new(env!("CARGO_TARGET_TMPDIR")).join("broken_fixture.c");
    std::fs::write(&source, "long broken(void) { return undeclared_name; }\n")
        .expect("write the broken source");
    let result = std::panic::catch_unwind(|| compile_c(&source, CModel::Pic, &[]));
    let payload = result.expect_err("a broken source must not compile");
    let message = payload
        .downcast_ref::<String>()
        .expect("the panic carries a formatted message");
    assert!(message.contains("undeclared_name"), "{message}");
}
