//! Inputs the loader must refuse with a typed error, leaving everything as it was.

mod common;

use common::*;
use modload::{ErrorKind, Object, SectionProblem, SectionRef};
use modload_tests::{assemble, compile_c, fixture, CModel};

fn parse_error(bytes: &[u8]) -> ErrorKind {
    match Object::parse("bad.o", bytes) {
        Ok(_) => panic!("accepted a bad object"),
        Err(error) => {
            assert_eq!(&*error.module, "bad.o");
            error.kind
        }
    }
}

fn good_object() -> Vec<u8> {
    modload_tests::read(&compile_c(&fixture("m1.c"), CModel::Pic, &[]))
}

#[test]
fn identity_checks() {
    let good = good_object();
    assert_eq!(parse_error(b"MZ\x90\x00"), ErrorKind::NotElf);
    assert_eq!(parse_error(&[]), ErrorKind::NotElf);
    let mut class32 = good.clone();
    class32[4] = 1;
    assert_eq!(
        parse_error(&class32),
        ErrorKind::UnsupportedClass { class: 1 }
    );
    let mut big_endian = good.clone();
    big_endian[5] = 2;
    assert_eq!(
        parse_error(&big_endian),
        ErrorKind::UnsupportedEndian { data: 2 }
    );
    let mut executable = good.clone();
    executable[16] = 2; // e_type = ET_EXEC
    assert_eq!(
        parse_error(&executable),
        ErrorKind::NotRelocatable { e_type: 2 }
    );
    let mut riscv = good.clone();
    riscv[18] = 243; // e_machine = EM_RISCV
    assert_eq!(
        parse_error(&riscv),
        ErrorKind::UnsupportedMachine { e_machine: 243 }
    );
}

#[test]
fn truncated_files_are_malformed_not_panics() {
    let good = good_object();
    for len in [6, 16, 63, 64, 65, good.len() / 2, good.len() - 1] {
        let kind = parse_error(&good[..len]);
        assert!(
            matches!(
                kind,
                ErrorKind::NotElf
                    | ErrorKind::Malformed { .. }
                    | ErrorKind::UnsupportedClass { .. }
                    | ErrorKind::Section { .. }
            ),
            "length {len}: {kind:?}"
        );
    }
}

#[test]
fn section_problems_name_the_section() {
    let good = good_object();
    let text = section_index(&good, ".text");
    let header = section_header(&good, text);

    let mut past_end = good.clone();
    past_end[header + 24..header + 32].copy_from_slice(&(good.len() as u64).to_le_bytes()); // sh_offset
    assert_eq!(
        parse_error(&past_end),
        ErrorKind::Section {
            section: SectionRef {
                index: text,
                name: ".text".into()
            },
            problem: SectionProblem::OutOfBounds
        }
    );

    let mut odd_alignment = good.clone();
    odd_alignment[header + 48..header + 56].copy_from_slice(&3u64.to_le_bytes()); // sh_addralign
    assert_eq!(
        parse_error(&odd_alignment),
        ErrorKind::Section {
            section: SectionRef {
                index: text,
                name: ".text".into()
            },
            problem: SectionProblem::BadAlignment { align: 3 }
        }
    );

    // Writable and executable at once is refused at planning, like Linux's strict RWX.
    let mut writable_text = good.clone();
    writable_text[header + 8] |= 1; // SHF_WRITE
    let env = Env::anywhere();
    let object = Object::parse("wx.o", &writable_text).unwrap();
    let error = env.loader().plan(object).err().unwrap();
    assert_eq!(
        error.kind,
        ErrorKind::Section {
            section: SectionRef {
                index: text,
                name: ".text".into()
            },
            problem: SectionProblem::WritableAndExecutable
        }
    );
    env.assert_back_to_baseline();
}

#[test]
fn unsupported_relocation_types_are_named() {
    // Rewrite the first relocation of a real object into a TLS type.
    let good = modload_tests::read(&assemble(&fixture("far_call.s")));
    let rela = section_index(&good, ".rela.text");
    let header = section_header(&good, rela);
    let offset = u64::from_le_bytes(good[header + 24..header + 32].try_into().unwrap()) as usize;
    let mut tls = good.clone();
    tls[offset + 8..offset + 12].copy_from_slice(&19u32.to_le_bytes()); // R_X86_64_TLSGD
    let env = Env::anywhere();
    let error = env
        .loader()
        .plan(Object::parse("tls.o", &tls).unwrap())
        .err()
        .unwrap();
    assert!(error.to_string().contains("R_X86_64_TLSGD"), "{error}");
    let ErrorKind::Relocation(failure) = error.kind else {
        panic!("not a relocation error")
    };
    assert_eq!(failure.r_type.name(), Some("R_X86_64_TLSGD"));
    assert_eq!(failure.problem, modload::RelocationProblem::Unsupported);
    assert_eq!(&*failure.symbol, "far_function");
}

#[test]
fn common_symbols_are_allocated_and_shared() {
    let env = Env::anywhere();
    let owner = env.load(&compile_c(&fixture("common.c"), CModel::Pic, &["-fcommon"]));
    assert_eq!(call1(&owner, "common_touch", 5), 10);
    assert_eq!(call0(&owner, "common_align"), 1);
    let user = env.load(&compile_c(
        &fixture("common_user.c"),
        CModel::Pic,
        &["-fcommon"],
    ));
    assert_eq!(
        call0(&user, "common_user_read"),
        5,
        "the second tentative definition binds to the first"
    );
    assert!(owner.unload().is_err(), "common_user depends on common");
    let owner = Module::from_id(env.namespace, env.namespace.modules()[0].0).unwrap();
    unload(user);
    unload(owner);
    env.assert_back_to_baseline();
}

use modload::Module;

/// Every prefix of a real object either fails with an error or loads; none
/// panics, and none leaves memory behind. Nothing is executed.
#[test]
fn every_truncation_fails_cleanly() {
    let good = good_object();
    let env = Env::anywhere();
    let loader = modload::Loader::new(env.namespace, env.region, &modload::NoProtection);
    for len in 0..good.len() {
        let Ok(object) = Object::parse("cut.o", &good[..len]) else {
            continue;
        };
        if let Ok(planned) = loader.plan(object) {
            if let Ok(placed) = planned.allocate() {
                drop(placed.relocate());
            }
        }
        assert_eq!(
            env.region.usage(),
            env.baseline,
            "prefix of {len} bytes leaked"
        );
    }
}
