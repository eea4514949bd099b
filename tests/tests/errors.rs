//! Every public error type composes with `?` into `Box<dyn Error>`, says
//! what went wrong when displayed, and chains to its cause where it has one.

mod common;

use std::error::Error;

use common::Env;
use modload::{
    Definer, DuplicateExport, ErrorKind, LoadError, ProtectionError, Refused, RegionError,
    RelocationFailure, RelocationProblem, SectionProblem, SignatureProblem, SymbolProblem,
    UnloadError, VirtAddr,
};
use modload_tests::{compile_c, fixture, CModel};

/// Host data that a module reads: in the test binary, far from the region.
#[no_mangle]
#[allow(non_upper_case_globals)]
static host_value: i64 = 4242;

/// Passes `result` on with `?`, as a caller's function would.
fn propagate<E: Error + 'static>(result: Result<(), E>) -> Result<(), Box<dyn Error>> {
    result?;
    Ok(())
}

/// `?` on each public error type, written out so that a type losing its
/// `Error` impl fails to compile here.
#[allow(clippy::too_many_arguments)]
fn each_type_with_question_mark(
    load: Result<(), LoadError>,
    kind: Result<(), ErrorKind>,
    relocation: Result<(), RelocationFailure>,
    problem: Result<(), RelocationProblem>,
    section: Result<(), SectionProblem>,
    symbol: Result<(), SymbolProblem>,
    signature: Result<(), SignatureProblem>,
    unload: Result<(), UnloadError>,
    refused: Result<(), Refused<'static>>,
    region: Result<(), RegionError>,
    protection: Result<(), ProtectionError>,
    key: Result<(), modload::signature::InvalidKey>,
    export: Result<(), DuplicateExport>,
) -> Result<(), Box<dyn Error>> {
    load?;
    kind?;
    relocation?;
    problem?;
    section?;
    symbol?;
    signature?;
    unload?;
    refused?;
    region?;
    protection?;
    key?;
    export?;
    Ok(())
}

#[test]
fn every_public_error_type_goes_through_question_mark_with_a_message() {
    let parse = modload::Object::parse("junk.o", b"not an elf").map(drop);
    let Err(load) = parse.clone() else {
        panic!("junk parsed")
    };
    assert_eq!(load.to_string(), "junk.o: not an ELF file");
    let errors: Vec<Box<dyn Error>> = vec![
        propagate(parse).unwrap_err(),
        propagate(Err(load.kind.clone())).unwrap_err(),
        propagate(Err(RelocationProblem::OutOfBounds)).unwrap_err(),
        propagate(Err(SectionProblem::ThreadLocal)).unwrap_err(),
        propagate(Err(SymbolProblem::BadName)).unwrap_err(),
        propagate(Err(SignatureProblem::Unsigned)).unwrap_err(),
        propagate(Err(UnloadError::NotLoaded)).unwrap_err(),
        propagate(Err(RegionError::AlreadyInitialized)).unwrap_err(),
        propagate(Err(ProtectionError { code: 13 })).unwrap_err(),
        propagate(Err(modload::signature::InvalidKey)).unwrap_err(),
    ];
    for error in &errors {
        assert!(!error.to_string().is_empty(), "{error:?} says nothing");
    }
    assert_eq!(
        errors[8].to_string(),
        "the platform refused to change page permissions (code 13)"
    );
    assert!(each_type_with_question_mark(
        Ok(()),
        Ok(()),
        Ok(()),
        Ok(()),
        Ok(()),
        Ok(()),
        Ok(()),
        Ok(()),
        Ok(()),
        Ok(()),
        Ok(()),
        Err(modload::signature::InvalidKey),
        Ok(()),
    )
    .is_err());
}

/// What a kernel's boot path looks like with `?`.
fn export_twice(namespace: &modload::Namespace) -> Result<(), Box<dyn Error>> {
    namespace.add_host_export("kernel_print", VirtAddr::new(0x1000))?;
    namespace.add_host_export("kernel_print", VirtAddr::new(0x2000))?;
    Ok(())
}

#[test]
fn a_duplicate_host_export_goes_through_question_mark_naming_the_definer() {
    let namespace = modload::Namespace::new();
    let error = export_twice(&namespace).expect_err("the second is refused");
    assert_eq!(
        error.downcast_ref::<DuplicateExport>(),
        Some(&DuplicateExport {
            name: "kernel_print".into(),
            existing: Definer::Host
        })
    );
    assert_eq!(
        error.to_string(),
        "host export kernel_print is already defined by the host"
    );
    assert_eq!(
        namespace.lookup("kernel_print"),
        Some(VirtAddr::new(0x1000))
    );
}

/// What a kernel's unload path looks like with `?`.
fn unload_with_question_mark(module: modload::Module<'static>) -> Result<(), Box<dyn Error>> {
    module.unload()?;
    Ok(())
}

#[test]
fn a_refused_unload_goes_through_question_mark_and_its_source_says_why() {
    let env = Env::anywhere();
    let m1 = env.load(&compile_c(&fixture("m1.c"), CModel::Pic, &[]));
    let m2 = env.load(&compile_c(&fixture("m2.c"), CModel::Pic, &[]));
    let m1_id = m1.id();

    let error = unload_with_question_mark(m1).expect_err("m2 uses m1");
    assert_eq!(error.to_string(), "unloading module m1.o was refused");
    let refused = error.downcast_ref::<Refused>().expect("a Refused");
    assert_eq!(refused.module.id(), m1_id, "the handle comes back");
    let source = error.source().expect("the reason is the source");
    assert_eq!(
        source.downcast_ref::<UnloadError>(),
        Some(&UnloadError::InUse {
            users: vec!["m2.o".into()]
        })
    );
    assert_eq!(source.to_string(), "module is in use by: m2.o");

    let m1 = error.downcast::<Refused>().expect("a Refused").module;
    unload_with_question_mark(m2).unwrap();
    unload_with_question_mark(m1).unwrap();
    env.assert_back_to_baseline();
}

#[test]
fn an_overflow_of_a_default_model_object_says_which_flag_fixes_it() {
    let env = Env::anywhere();
    env.namespace
        .add_host_export("host_value", VirtAddr::from_ptr(&raw const host_value))
        .unwrap();
    let default = compile_c(&fixture("host_data_user.c"), CModel::PieDefault, &[]);
    let error = env
        .try_load(&default)
        .expect_err("host data is beyond 2 GiB");
    let ErrorKind::Relocation(failure) = &error.kind else {
        panic!("{error}")
    };
    assert_eq!(failure.r_type.name(), Some("R_X86_64_PC32"));
    assert!(matches!(
        failure.problem,
        RelocationProblem::Overflow { .. }
    ));
    let advice = failure.code_model_advice().expect("advice for PC32");
    assert!(advice.contains("-fPIC") && advice.contains("-mcmodel=large"));
    let message = error.to_string();
    assert!(message.contains(advice), "{message}");
    assert!(
        message.starts_with("host_data_user.o: section .text"),
        "{message}"
    );

    // The advice is right: the same source built with -fPIC loads and reads it.
    let pic = env.load(&compile_c(&fixture("host_data_user.c"), CModel::Pic, &[]));
    assert_eq!(common::call0(&pic, "read_host_value"), 4242);
    common::unload(pic);
    env.assert_back_to_baseline();
}
