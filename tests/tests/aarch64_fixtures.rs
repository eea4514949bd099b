//! Self-check of the AArch64 fixtures, read with llvm-readelf-22 and never
//! with modload: every fixture builds, is an AArch64 relocatable object,
//! imports exactly what its source declares, and together they carry every
//! relocation type modload's AArch64 backend must handle.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::OnceLock;

use modload_tests::aarch64::{
    comdat_groups, fixture, fixtures, machine_and_type, relocation_types, relocations,
    undefined_symbols, CModel, Fixture, Model, RustModel, ASM_SOURCES, CLANG, C_SOURCES,
    RELOCATION_TYPES, RUST_SOURCES,
};

/// Built once per test process; every test reads the same list.
fn all() -> &'static [Fixture] {
    static ALL: OnceLock<Vec<Fixture>> = OnceLock::new();
    ALL.get_or_init(fixtures)
}

fn find(name: &str) -> &'static Fixture {
    all()
        .iter()
        .find(|fixture| fixture.name == name)
        .unwrap_or_else(|| panic!("no fixture {name}"))
}

fn short(types: &BTreeSet<String>) -> Vec<&str> {
    types
        .iter()
        .map(|kind| kind.strip_prefix("R_AARCH64_").unwrap_or(kind))
        .collect()
}

#[test]
fn there_are_enough_fixtures_with_unique_names() {
    let fixtures = all();
    let expected = C_SOURCES.len() * CModel::ALL.len()
        + CModel::ALL.len()
        + RUST_SOURCES.len() * RustModel::ALL.len()
        + ASM_SOURCES.len();
    assert_eq!(fixtures.len(), expected);
    assert!(fixtures.len() >= 30, "only {} fixtures", fixtures.len());
    assert!(C_SOURCES.len() + 1 >= 12, "at least 12 C sources");

    let names: BTreeSet<&str> = fixtures.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names.len(), fixtures.len(), "fixture names are not unique");
    let paths: BTreeSet<_> = fixtures.iter().map(|f| &f.path).collect();
    assert_eq!(paths.len(), fixtures.len(), "two fixtures share an object");

    // `after` names stems of fixtures that exist in the same model.
    for fixture in fixtures {
        for stem in fixture.after {
            let wanted = match fixture.model {
                Model::Assembly => stem.to_string(),
                model => format!("{stem}-{}", model.name()),
            };
            assert!(
                names.contains(wanted.as_str()),
                "{}: no {wanted}",
                fixture.name
            );
        }
    }
}

#[test]
fn every_fixture_is_an_aarch64_relocatable_object() {
    for fixture in all() {
        let (machine, kind) = machine_and_type(&fixture.path);
        assert_eq!(machine, "AArch64", "{}", fixture.name);
        assert!(kind.starts_with("REL "), "{}: type {kind}", fixture.name);
    }
}

#[test]
fn every_relocation_type_appears() {
    let mut seen: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for fixture in all() {
        for kind in relocation_types(&fixture.path) {
            seen.entry(kind).or_default().push(&fixture.name);
        }
    }
    let missing: Vec<&&str> = RELOCATION_TYPES
        .iter()
        .filter(|kind| !seen.contains_key(**kind))
        .collect();
    assert!(missing.is_empty(), "no fixture has {missing:?}");

    // Nothing unexpected either: a type outside the list would be one the
    // loader is not known to be tested against.
    let unexpected: Vec<&String> = seen
        .keys()
        .filter(|kind| !RELOCATION_TYPES.contains(&kind.as_str()))
        .collect();
    assert!(unexpected.is_empty(), "unlisted types {unexpected:?}");
}

#[test]
fn assembly_fixtures_carry_exactly_their_relocation_types() {
    for source in ASM_SOURCES {
        let stem = source
            .file
            .trim_start_matches("asm/")
            .trim_end_matches(".s");
        let fixture = find(stem);
        let expected: BTreeSet<String> = source
            .relocations
            .iter()
            .map(|kind| format!("R_AARCH64_{kind}"))
            .collect();
        let actual = relocation_types(&fixture.path);
        assert_eq!(short(&actual), short(&expected), "{}", fixture.name);
    }
}

#[test]
fn undefined_symbols_are_the_declared_ones() {
    for fixture in all() {
        let actual = undefined_symbols(&fixture.path);
        let names: BTreeSet<String> = actual.iter().map(|(name, _)| name.clone()).collect();
        let weak: BTreeSet<String> = actual
            .iter()
            .filter(|(_, binding)| binding == "WEAK")
            .map(|(name, _)| name.clone())
            .collect();
        assert_eq!(names, fixture.undefined, "undefined in {}", fixture.name);
        assert_eq!(weak, fixture.weak_undefined, "weak in {}", fixture.name);
    }
}

#[test]
fn external_targets_are_referenced_by_relocations() {
    // Each assembly fixture's imports are there to be placed by a test: every
    // one of them must be the symbol of at least one relocation.
    for fixture in all().iter().filter(|f| f.model == Model::Assembly) {
        let used: BTreeSet<String> = relocations(&fixture.path)
            .into_iter()
            .map(|relocation| relocation.symbol)
            .collect();
        for name in &fixture.undefined {
            assert!(used.contains(name), "{}: {name} unused", fixture.name);
        }
    }
}

#[test]
fn local_targets_are_relocated_too() {
    // Relocations against symbols defined in the object itself (local
    // labels or section symbols), per assembly fixture that has local
    // references, by type.
    let expect: &[(&str, &[&str])] = &[
        ("data", &["ABS64", "ABS32", "PREL64", "PREL32", "PREL16"]),
        ("branches", &["CALL26", "JUMP26", "CONDBR19", "TSTBR14"]),
        (
            "pcrel",
            &[
                "LD_PREL_LO19",
                "ADR_PREL_LO21",
                "ADR_PREL_PG_HI21",
                "ADD_ABS_LO12_NC",
            ],
        ),
        ("ldst", &["LDST8_ABS_LO12_NC", "LDST128_ABS_LO12_NC"]),
        (
            "got",
            &["ADR_GOT_PAGE", "LD64_GOT_LO12_NC", "GOT_LD_PREL19"],
        ),
        ("got_page", &["LD64_GOTPAGE_LO15"]),
        ("movw_uabs", &["MOVW_UABS_G3", "MOVW_UABS_G0_NC"]),
        ("movw_prel", &["MOVW_PREL_G3", "MOVW_PREL_G0_NC"]),
        ("none", &["NONE"]),
    ];
    for (name, kinds) in expect {
        let fixture = find(name);
        let local: BTreeSet<String> = relocations(&fixture.path)
            .into_iter()
            .filter(|relocation| !fixture.undefined.contains(&relocation.symbol))
            .map(|relocation| relocation.kind)
            .collect();
        for kind in *kinds {
            let kind = format!("R_AARCH64_{kind}");
            assert!(local.contains(&kind), "{name}: no local {kind}");
        }
    }
}

#[test]
fn always_failing_fixtures_have_misaligned_local_targets() {
    let failing: Vec<&Fixture> = all().iter().filter(|f| f.always_fails).collect();
    assert_eq!(failing.len(), 2);
    let ldst = find("misaligned_ldst_local");
    let misaligned: Vec<_> = relocations(&ldst.path)
        .into_iter()
        .filter(|r| r.kind == "R_AARCH64_LDST64_ABS_LO12_NC")
        .collect();
    assert_eq!(misaligned.len(), 1);
    assert_eq!(misaligned[0].symbol, ".data");
    assert_eq!(misaligned[0].addend % 8, 4);

    let branch = find("misaligned_branch_local");
    let calls: Vec<_> = relocations(&branch.path)
        .into_iter()
        .filter(|r| r.kind == "R_AARCH64_CALL26")
        .collect();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].symbol, ".text.odd");
    assert_eq!(calls[0].addend % 4, 2);
}

#[test]
fn generated_source_has_over_10000_relocations_in_every_model() {
    for model in CModel::ALL {
        let fixture = find(&format!("many_relocs-{}", model.name()));
        let count = relocations(&fixture.path).len();
        assert!(count > 10_000, "{}: only {count}", fixture.name);
    }
}

#[test]
fn small_models_load_and_store_every_width() {
    let ldst: BTreeSet<String> = [8, 16, 32, 64, 128]
        .iter()
        .map(|bits| format!("R_AARCH64_LDST{bits}_ABS_LO12_NC"))
        .collect();
    for model in [CModel::SmallPic, CModel::SmallStatic] {
        let fixture = find(&format!("widths-{}", model.name()));
        let types = relocation_types(&fixture.path);
        assert!(
            types.is_superset(&ldst),
            "{}: {:?}",
            fixture.name,
            short(&types)
        );
    }
}

#[test]
fn models_give_their_characteristic_relocations() {
    // One type per model that only that addressing style produces, for the
    // C module `base` and the Rust module `ra1`.
    let c: &[(CModel, &str)] = &[
        (CModel::TinyPic, "GOT_LD_PREL19"),
        (CModel::TinyStatic, "LD_PREL_LO19"),
        (CModel::SmallPic, "LD64_GOT_LO12_NC"),
        (CModel::SmallStatic, "LDST64_ABS_LO12_NC"),
        (CModel::LargeStatic, "MOVW_UABS_G3"),
    ];
    for (model, kind) in c {
        let fixture = find(&format!("base-{}", model.name()));
        let types = relocation_types(&fixture.path);
        assert!(
            types.contains(&format!("R_AARCH64_{kind}")),
            "{}: {:?}",
            fixture.name,
            short(&types)
        );
    }
    let rust: &[(RustModel, &str)] = &[
        (RustModel::TinyPic, "GOT_LD_PREL19"),
        (RustModel::TinyStatic, "LD_PREL_LO19"),
        (RustModel::SmallPic, "LD64_GOT_LO12_NC"),
        (RustModel::SmallStatic, "LDST64_ABS_LO12_NC"),
        (RustModel::LargePic, "PREL64"),
        (RustModel::LargeStatic, "MOVW_UABS_G3"),
    ];
    for (model, kind) in rust {
        let fixture = find(&format!("ra1-{}", model.name()));
        let types = relocation_types(&fixture.path);
        assert!(
            types.contains(&format!("R_AARCH64_{kind}")),
            "{}: {:?}",
            fixture.name,
            short(&types)
        );
    }
}

#[test]
fn constructors_and_comdat_groups_are_there() {
    for model in CModel::ALL {
        let ctors = find(&format!("ctors-{}", model.name()));
        let sections: BTreeSet<String> = relocations(&ctors.path)
            .into_iter()
            .map(|r| r.section)
            .collect();
        for section in [
            ".rela.init_array.200",
            ".rela.init_array.300",
            ".rela.init_array",
            ".rela.fini_array",
            ".rela.fini_array.250",
        ] {
            assert!(sections.contains(section), "{}: {section}", ctors.name);
        }

        for (stem, group) in [
            ("comdat_a", "comdat_shared"),
            ("comdat_b", "comdat_shared"),
            ("comdat_fn_a", "_Z13cxx_shared_fnl"),
            ("comdat_fn_b", "_Z13cxx_shared_fnl"),
        ] {
            let fixture = find(&format!("{stem}-{}", model.name()));
            let groups = comdat_groups(&fixture.path);
            assert!(groups.contains(group), "{}: {groups:?}", fixture.name);
        }
    }
}

#[test]
fn clang_rejects_large_pic() {
    // Why CModel has no LargePic: the driver refuses the combination.
    let output = Command::new(CLANG)
        .args([
            "--target=aarch64-none-elf",
            "-c",
            "-mcmodel=large",
            "-fPIC",
            "-o",
            "/dev/null",
        ])
        .arg(fixture("c/strings.c"))
        .env("LC_ALL", "C")
        .output()
        .expect("clang-22 runs");
    assert!(!output.status.success(), "clang now accepts large + PIC");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("-mcmodel=large"), "{stderr}");
}
