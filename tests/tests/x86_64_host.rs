//! The x86-64 loader on the host: real objects from gcc, g++, gas and rustc,
//! loaded one after another into one namespace and executed.

mod common;

use std::ffi::CStr;
use std::path::PathBuf;

use common::*;
use modload::{
    Definer, ErrorKind, Loader, NoProtection, Object, RelocationProblem, SectionKind, Segment,
    UnloadError, VirtAddr,
};
use modload_tests::{assemble, compile_c, compile_rust, fixture, CModel, RustModel};

fn c(name: &str, model: CModel) -> PathBuf {
    compile_c(&fixture(name), model, &[])
}

#[test]
fn three_c_modules_load_one_after_another_in_every_model() {
    for model in RUNNABLE {
        let env = Env::for_model(model);
        let m1 = env.load(&c("m1.c", model));
        assert_eq!(call0(&m1, "m1_value"), 42, "{model:?}");
        assert_eq!(
            call1(&m1, "m1_scratch_at", 5),
            0,
            "bss is zeroed ({model:?})"
        );
        // SAFETY: m1_greeting is `const char *m1_greeting(void)`.
        let greeting =
            unsafe { m1.get::<extern "C" fn() -> *const libc::c_char>("m1_greeting") }.unwrap();
        // SAFETY: it returns a NUL-terminated string constant of the module.
        assert_eq!(
            unsafe { CStr::from_ptr(greeting()) }.to_str(),
            Ok("hello from m1")
        );
        let dispatch: Vec<i64> = (0..5)
            .map(|index| call2(&m1, "m1_dispatch", index, 10))
            .collect();
        assert_eq!(dispatch, [11, 30, -10, 100, -1], "{model:?}");

        let m2 = env.load(&c("m2.c", model));
        assert_eq!(call1(&m2, "m2_scale", 3), 126);
        assert_eq!(call0(&m2, "m2_read_counter"), 7);
        assert_eq!(call1(&m2, "m2_compute", 3), 134, "{model:?}");
        assert_eq!(call0(&m2, "m2_counter_via_ptr"), 8);
        // m2 hands out a pointer into m1 and writes m1's data directly.
        // SAFETY: m2_get_fn returns `long (*)(long)`.
        let get_fn =
            unsafe { m2.get::<extern "C" fn() -> extern "C" fn(i64) -> i64>("m2_get_fn") }.unwrap();
        assert_eq!(get_fn()(9), 81);
        assert_eq!(
            Some(VirtAddr::new(get_fn() as usize as u64)),
            m1.symbol("m1_square")
        );
        assert_eq!(
            call0(&m2, "m2_counter_addr") as u64,
            m1.symbol("m1_counter").unwrap().as_u64()
        );

        take_log();
        let m3 = env.load(&c("m3.c", model));
        assert_eq!(
            take_log(),
            [300, 301],
            "constructors run by priority on load ({model:?})"
        );
        assert_eq!(call0(&m3, "m3_ctor_state"), 12);
        assert_eq!(call0(&m3, "m3_greeting_ok"), 1);
        assert_eq!(call0(&m3, "m3_greeting_len"), 13);

        // Code outlives the loader: no loader is alive here at all, and the
        // modules still answer, with state carried over.
        assert_eq!(call1(&m2, "m2_compute", 3), 135);
        assert_eq!(call0(&m1, "m1_value"), 42);

        // Unload order: users first.
        let refused = m1.unload().unwrap_err();
        match &refused.error {
            UnloadError::InUse { users } => {
                let mut users: Vec<&str> = users.iter().map(|user| &**user).collect();
                users.sort_unstable();
                assert_eq!(users, ["m2.o", "m3.o"].map(|name| name), "{model:?}")
            }
            other => panic!("unexpected {other:?}"),
        }
        let m1 = refused.module;
        let refused = m2.unload().unwrap_err();
        let m2 = refused.module;
        unload(m3);
        assert_eq!(take_log(), [302], "the destructor runs on unload");
        unload(m2);
        unload(m1);
        env.assert_back_to_baseline();
        assert!(env.namespace.modules().is_empty());
        assert_eq!(env.namespace.lookup("m1_value"), None);
    }
}

#[test]
fn dropping_the_loader_leaves_modules_running() {
    let env = Env::anywhere();
    // The loader and the object's bytes live only inside this block. The module
    // outlives both, which the borrow checker proves: it borrows neither.
    let m1 = {
        let loader: Loader<'static> = env.loader();
        let bytes = modload_tests::read(&c("m1.c", CModel::Pic));
        // SAFETY: the fixture is this project's test code.
        unsafe { loader.load("m1.o", &bytes) }.unwrap()
    };
    let first = call1(&m1, "m1_bump", 1);
    assert_eq!(call1(&m1, "m1_bump", 1), first + 1);
    // A second loader over the same namespace sees the module and binds to it.
    let m2 = env.load(&c("m2.c", CModel::Pic));
    assert_eq!(call0(&m2, "m2_read_counter"), first + 1);
    unload(m2);
    unload(m1);
    env.assert_back_to_baseline();
}

#[test]
fn rust_modules_bind_to_c_modules_in_every_model() {
    for model in [RustModel::Pic, RustModel::Static, RustModel::StaticLarge] {
        let env = if model == RustModel::Static {
            Env::low()
        } else {
            Env::anywhere()
        };
        let m1 = env.load(&c(
            "m1.c",
            if model == RustModel::Static {
                CModel::NoPicSmall
            } else {
                CModel::Pic
            },
        ));
        let r1 = env.load(&compile_rust(&fixture("r1.rs"), model));
        assert_eq!(call1(&r1, "r1_sum", 0), 42, "{model:?}");
        assert_eq!(call1(&r1, "r1_sum", 4), 48);
        assert_eq!(call1(&r1, "r1_bump", 1), 6);
        assert_eq!(call0(&r1, "r1_table_sum"), 42);
        let apply: Vec<i64> = (0..4).map(|op| call2(&r1, "r1_apply", op, 5)).collect();
        assert_eq!(apply, [6, 10, 25, -1]);
        let select: Vec<i64> = (0..11)
            .map(|selector| call2(&r1, "r1_select", selector, 100))
            .collect();
        assert_eq!(
            select,
            [
                101,
                300,
                155,
                400,
                93,
                33,
                356,
                25600,
                18446744073709551515u64 as i64,
                10000,
                0
            ],
            "jump table ({model:?})"
        );
        unload(r1);
        unload(m1);
        env.assert_back_to_baseline();
    }
}

/// Code built for the kernel code model must sit in the top 2 GiB. The host
/// cannot run there, but the loader can link it there.
#[test]
fn kernel_model_links_for_the_top_2gib() {
    let env = Env::anywhere();
    let loader = Loader::new(env.namespace, env.region, &NoProtection);
    let objects = [
        c("m1.c", CModel::Kernel),
        c("m2.c", CModel::Kernel),
        compile_rust(&fixture("r1.rs"), RustModel::StaticKernel),
    ];
    let bytes: Vec<Vec<u8>> = objects
        .iter()
        .map(|path| modload_tests::read(path))
        .collect();
    // The same module linked for an address outside both 2 GiB windows
    // overflows its 32S fields, and says where.
    let mut placed = loader
        .plan(Object::parse("m1.o", &bytes[0]).unwrap())
        .unwrap()
        .allocate()
        .unwrap();
    placed.map_module(VirtAddr::new(0x1_0000_0000)).unwrap();
    let error = placed.relocate().err().expect("32S cannot reach 4 GiB");
    assert_eq!(&*error.module, "m1.o");
    match error.kind {
        ErrorKind::Relocation(failure) => {
            assert_eq!(failure.r_type.name(), Some("R_X86_64_32S"));
            assert!(matches!(
                failure.problem,
                RelocationProblem::Overflow { .. }
            ));
            assert!(
                failure.section.name.starts_with(".text"),
                "{}",
                failure.section
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    let mut base = 0xffff_ffff_c000_0000u64;
    let mut started = Vec::new();
    for (path, bytes) in objects.iter().zip(&bytes) {
        let name = module_name(path);
        let mut placed = loader
            .plan(Object::parse(&name, bytes).unwrap())
            .unwrap()
            .allocate()
            .unwrap();
        placed.map_module(VirtAddr::new(base)).unwrap();
        let finalized = placed
            .relocate()
            .unwrap_or_else(|error| panic!("{error}"))
            .finalize()
            .unwrap();
        // SAFETY: these modules have no constructors, so start runs no code.
        started.push(unsafe { finalized.start() }.unwrap());
        base += 0x10_0000;
    }
    // Symbols resolve to where the code will run.
    let m1_value = started[0].symbol("m1_value").unwrap().as_u64();
    assert!(m1_value >= 0xffff_ffff_c000_0000, "{m1_value:#x}");

    for module in started.into_iter().rev() {
        unload(module);
    }
    env.assert_back_to_baseline();
}

#[test]
fn every_relocation_type_runs_correctly() {
    let env = Env::anywhere();
    let relocs = env.load(&assemble(&fixture("relocs.s")));
    let expected = [
        ("rel_abs64", 6401),
        ("rel_pc32", 3201),
        ("rel_call_local", 3202),
        ("rel_plt32_global", 3203),
        ("rel_plt32_extern", 1024),
        ("rel_gotpcrel", 909),
        ("rel_gotpcrelx", 2022),
        ("rel_gotpcrelx_tail", 3033),
        ("rel_rex_gotpcrelx", 909),
        ("rel_gotpc32", 2525),
        ("rel_gotpc64", 2526),
        ("rel_got32", 909),
        ("rel_got64", 909),
        ("rel_gotplt64", 909),
        ("rel_gotpcrel64", 909),
        ("rel_pltoff64", 4044),
        ("rel_size32", 24),
        ("rel_size64", 32),
    ];
    for (name, value) in expected {
        assert_eq!(call0(&relocs, name), value, "{name}");
    }
    let data = env.load(&assemble(&fixture("relocs_data.s")));
    for (name, value) in [
        ("rd_abs64", 10),
        ("rd_abs64_addend", 30),
        ("rd_pc32_data", 20),
        ("rd_pc64_data", 40),
        ("rd_call_via_data", 11),
        ("rd_sum", 111),
    ] {
        assert_eq!(call0(&data, name), value, "{name}");
    }
    let small = env.load(&assemble(&fixture("relocs_small.s")));
    for (name, value) in [
        ("rel_abs8", 90),
        ("rel_abs16", 4660),
        ("rel_pc8", 88),
        ("rel_pc16", 1616),
    ] {
        assert_eq!(call0(&small, name), value, "{name}");
    }
    let low = Env::low();
    let abs32 = low.load(&assemble(&fixture("relocs_abs32.s")));
    for (name, value) in [
        ("rel_abs32", 320),
        ("rel_abs32s", 321),
        ("rel_abs32_data", 322),
        ("rel_abs32s_imm", 323),
    ] {
        assert_eq!(call0(&abs32, name), value, "{name}");
    }
}

/// The list of types, each seen in a plan of a real object that the
/// tests above load and run.
#[test]
fn every_listed_type_appears_in_the_fixtures() {
    let env = Env::anywhere();
    let loader = env.loader();
    let mut objects = vec![
        assemble(&fixture("relocs.s")),
        assemble(&fixture("relocs_data.s")),
        assemble(&fixture("relocs_small.s")),
        assemble(&fixture("relocs_abs32.s")),
        compile_rust(&fixture("r1.rs"), RustModel::StaticLarge),
    ];
    for model in CModel::ALL {
        objects.push(c("m1.c", model));
    }
    let mut seen = std::collections::BTreeSet::new();
    for path in &objects {
        let bytes = modload_tests::read(path);
        let planned = loader.plan(Object::parse("x.o", &bytes).unwrap()).unwrap();
        for (r_type, count) in planned.plan().relocation_counts() {
            assert!(*count > 0);
            seen.insert(r_type.name().unwrap().to_string());
        }
    }
    for name in [
        "64",
        "PC32",
        "PLT32",
        "32",
        "32S",
        "PC64",
        "GOTPCREL",
        "GOTPCRELX",
        "REX_GOTPCRELX",
        "GOTOFF64",
        "GOTPC32",
        "GOTPC64",
        "SIZE32",
        "SIZE64",
    ] {
        assert!(
            seen.contains(&format!("R_X86_64_{name}")),
            "no fixture uses R_X86_64_{name}: {seen:?}"
        );
    }
}

#[test]
fn overflow_is_an_error_that_names_the_relocation_and_changes_nothing() {
    let env = Env::anywhere();
    let before = env.load(&c("m1.c", CModel::Pic));
    let used = env.used();
    let modules = env.namespace.modules();
    // Above 4 GiB and far from the region.
    env.namespace
        .add_host_export("far_symbol", VirtAddr::new(0x7000_0000_0000))
        .unwrap();
    env.namespace
        .add_host_export("far_function", VirtAddr::new(0x7000_0000_1000))
        .unwrap();
    env.namespace
        .add_host_export("far_data", VirtAddr::new(0x7000_0000_2000))
        .unwrap();
    for (file, r_type, symbol) in [
        ("far_abs32.s", "R_X86_64_32", "far_symbol"),
        ("far_call.s", "R_X86_64_PC32", "far_function"),
        ("pc32_data.s", "R_X86_64_PC32", "far_data"),
    ] {
        let error = env
            .try_load(&assemble(&fixture(file)))
            .err()
            .unwrap_or_else(|| panic!("{file} must overflow"));
        let ErrorKind::Relocation(ref failure) = error.kind else {
            panic!("{file}: {error}")
        };
        assert_eq!(failure.r_type.name(), Some(r_type), "{file}");
        assert_eq!(&*failure.symbol, symbol);
        assert_eq!(&*failure.section.name, ".text");
        assert!(matches!(
            failure.problem,
            RelocationProblem::Overflow { .. }
        ));
        assert!(
            error
                .to_string()
                .contains("compile it with -fPIC, or with -mcmodel=large"),
            "{file}: {error}"
        );
        assert!(
            error.module.starts_with(file.trim_end_matches(".s")),
            "{}",
            error.module
        );
        assert_eq!(env.used(), used, "{file}: a failed load frees its memory");
        assert_eq!(env.namespace.modules(), modules);
    }
    // The same far call through PLT32 goes through a stub instead.
    let far_plt = modload_tests::read(&assemble(&fixture("far_plt.s")));
    let planned = env
        .loader()
        .plan(Object::parse("far_plt.o", &far_plt).unwrap())
        .unwrap();
    assert_eq!(planned.plan().stub_slots(), 1);
    let relocated = planned.allocate().unwrap().relocate().unwrap();
    assert_eq!(relocated.report().stubs_used, 1);
    drop(relocated);
    assert_eq!(env.used(), used);
    assert_eq!(
        call0(&before, "m1_value"),
        42,
        "the earlier module is undisturbed"
    );
}

#[test]
fn duplicate_strong_definitions_are_refused() {
    let env = Env::anywhere();
    let m1 = env.load(&c("m1.c", CModel::Pic));
    let used = env.used();
    let error = env.try_load(&c("dup_m1.c", CModel::Pic)).unwrap_err();
    assert_eq!(
        error.kind,
        ErrorKind::DuplicateDefinition {
            name: "m1_value".into(),
            existing: Definer::Module("m1.o".into())
        }
    );
    assert_eq!(env.used(), used);
    // A host export counts too.
    env.namespace
        .add_host_export("dup_m1_value", VirtAddr::new(0x1000))
        .unwrap();
    unload(m1);
    let error = env.try_load(&c("dup_m1.c", CModel::Pic)).unwrap_err();
    assert_eq!(
        error.kind,
        ErrorKind::DuplicateDefinition {
            name: "dup_m1_value".into(),
            existing: Definer::Host
        }
    );
    env.assert_back_to_baseline();
}

#[test]
fn unresolved_symbols_are_listed_together_and_change_nothing() {
    let env = Env::anywhere();
    let m1 = env.load(&c("m1.c", CModel::Pic));
    let used = env.used();
    let error = env.try_load(&c("unresolved.c", CModel::Pic)).unwrap_err();
    assert!(error.module.starts_with("unresolved"), "{}", error.module);
    assert_eq!(
        error.kind,
        ErrorKind::Unresolved {
            names: vec![
                "missing_data".into(),
                "missing_one".into(),
                "missing_two".into()
            ]
        }
    );
    assert_eq!(env.used(), used);
    assert_eq!(env.namespace.modules().len(), 1);
    // A fallback resolver supplies them.
    static MISSING: [i64; 1] = [3];
    let fallback = |name: &str| match name {
        "missing_one" => Some(address(one as *const ())),
        "missing_two" => Some(address(two as *const ())),
        "missing_data" => Some(VirtAddr::from_ptr(MISSING.as_ptr())),
        _ => None,
    };
    extern "C" fn one() -> i64 {
        1
    }
    extern "C" fn two() -> i64 {
        2
    }
    let bytes = modload_tests::read(&c("unresolved.c", CModel::Pic));
    // SAFETY: the fixture is this project's test code.
    let module = unsafe {
        env.loader()
            .with_fallback(&fallback)
            .load("unresolved.o", &bytes)
    }
    .unwrap();
    assert_eq!(call0(&module, "unresolved_sum"), 6);
    unload(module);
    unload(m1);
    env.assert_back_to_baseline();
}

#[test]
fn weak_undefined_symbols_resolve_to_zero() {
    for model in [CModel::Pic, CModel::PieDefault, CModel::NoPicSmall] {
        let env = Env::for_model(model);
        let module = env.load(&c("weak_undef.c", model));
        assert_eq!(call0(&module, "weak_probe"), 0, "{model:?}");
        assert_eq!(call0(&module, "weak_call"), -1);
        unload(module);
        extern "C" fn maybe() -> i64 {
            77
        }
        env.namespace
            .add_host_export("maybe", address(maybe as *const ()))
            .unwrap();
        if model == CModel::NoPicSmall {
            // `maybe` now has a real address, in the test binary far above
            // 4 GiB: its 32-bit absolute address cannot be encoded.
            let error = env.try_load(&c("weak_undef.c", model)).unwrap_err();
            let ErrorKind::Relocation(failure) = error.kind else {
                panic!("{error}")
            };
            assert_eq!(
                (failure.r_type.name(), &*failure.symbol),
                (Some("R_X86_64_32"), "maybe")
            );
            env.assert_back_to_baseline();
            continue;
        }
        let module = env.load(&c("weak_undef.c", model));
        assert_eq!(call0(&module, "weak_probe"), 1);
        assert_eq!(call0(&module, "weak_call"), 77);
        unload(module);
        env.assert_back_to_baseline();
    }
}

#[test]
fn comdat_groups_load_once_and_bind_to_the_first_copy() {
    let pairs = comdat_pairs();
    for (a_path, b_path, prefix) in pairs {
        let env = Env::anywhere();
        let loader = env.loader();
        let a_bytes = modload_tests::read(&a_path);
        let b_bytes = modload_tests::read(&b_path);
        let alone = loader
            .plan(Object::parse("b.o", &b_bytes).unwrap())
            .unwrap()
            .plan()
            .clone();
        let a = env.load(&a_path);
        let b_planned = loader
            .plan(Object::parse("b.o", &b_bytes).unwrap())
            .unwrap();
        // The group is discarded from b's plan.
        assert!(
            b_planned.plan().kind(SectionKind::Text).size < alone.kind(SectionKind::Text).size,
            "{prefix}: {:?} vs {:?}",
            b_planned.plan().kind(SectionKind::Text),
            alone.kind(SectionKind::Text)
        );
        // SAFETY: the fixture is this project's test code.
        let b = unsafe {
            b_planned
                .allocate()
                .unwrap()
                .relocate()
                .unwrap()
                .finalize()
                .unwrap()
                .start()
        }
        .unwrap();
        assert_eq!(call0(&a, &format!("{prefix}_a_call")), 1235);
        assert_eq!(call0(&b, &format!("{prefix}_b_call")), 1236);
        assert_eq!(call0(&a, &format!("{prefix}_a_bump")), 1);
        assert_eq!(
            call0(&b, &format!("{prefix}_b_bump")),
            2,
            "{prefix}: one shared copy"
        );
        // b now depends on a.
        let refused = a.unload().unwrap_err();
        assert!(matches!(refused.error, UnloadError::InUse { .. }));
        unload(b);
        unload(refused.module);
        env.assert_back_to_baseline();
        drop(a_bytes);
    }
}

/// The plan is exact: the allocation is the plan's size, every GOT slot is
/// used, and stubs are used only as far as planned.
#[test]
fn allocations_match_the_plan_exactly() {
    let env = Env::anywhere();
    let loader = env.loader();
    let mut objects = vec![
        c("m1.c", CModel::Pic),
        assemble(&fixture("relocs.s")),
        assemble(&fixture("relocs_data.s")),
        compile_rust(&fixture("r1.rs"), RustModel::Pic),
    ];
    objects.extend([c("m2.c", CModel::Pic), c("m3.c", CModel::Pic)]);
    let mut loaded = Vec::new();
    for path in &objects {
        let bytes = modload_tests::read(path);
        let name = &module_name(path);
        let planned = loader.plan(Object::parse(name, &bytes).unwrap()).unwrap();
        let plan = planned.plan().clone();
        // Segments are page-aligned, in order, and hold their kinds.
        let mut end = 0;
        for segment in Segment::ALL {
            let extent = plan.segment(segment);
            if extent.size == 0 {
                continue;
            }
            assert_eq!(extent.offset % 4096, 0);
            assert_eq!(extent.size % 4096, 0);
            assert!(extent.offset >= end);
            end = extent.offset + extent.size;
        }
        assert_eq!(plan.size(), end.max(4096), "{name}");
        for kind in SectionKind::ALL {
            let extent = plan.kind(kind);
            let segment = plan.segment(kind.segment());
            assert!(
                extent.size == 0
                    || (extent.offset >= segment.offset
                        && extent.offset + extent.size <= segment.offset + segment.size),
                "{name} {kind:?}"
            );
        }
        assert_eq!(
            plan.kind(SectionKind::Got).size,
            u64::from(plan.got_slots()) * 8
        );
        assert_eq!(
            plan.kind(SectionKind::Stubs).size,
            u64::from(plan.stub_slots()) * 16
        );

        let before = env.used();
        let placed = planned.allocate().unwrap();
        assert_eq!(
            (env.used() - before) as u64,
            plan.size(),
            "{name}: the region gave exactly the plan's size"
        );
        let relocated = placed.relocate().unwrap();
        let report = relocated.report();
        assert_eq!(report.reserved, plan.size());
        assert_eq!(report.got_slots_used, plan.got_slots());
        assert!(report.stubs_used <= plan.stub_slots());
        assert_eq!(report.relocations_applied, plan.relocation_total());
        // SAFETY: the fixtures are this project's test code.
        loaded.push(unsafe { relocated.finalize().unwrap().start() }.unwrap());
    }
    // m1 -fPIC calls host_add, which lives in the test binary, far from the
    // mmap'd region: that call needs its stub.
    let bytes = modload_tests::read(&c("m1.c", CModel::Pic));
    let relocated = Loader::new(env.namespace, env.region, &NoProtection)
        .plan(Object::parse("m1-again.o", &bytes).unwrap())
        .unwrap()
        .allocate()
        .unwrap()
        .relocate();
    // m1 is already loaded, so its strong symbols are duplicates now.
    assert!(matches!(
        relocated.err().map(|error| error.kind),
        Some(ErrorKind::DuplicateDefinition { .. })
    ));
    for module in loaded.into_iter().rev() {
        unload(module);
    }
    env.assert_back_to_baseline();
}

#[test]
fn relaxed_got_loads_take_no_slot() {
    // m1 -fPIC reads its own m1_counter through REX_GOTPCRELX: relaxed to lea.
    let env = Env::anywhere();
    let bytes = modload_tests::read(&c("m1.c", CModel::Pic));
    let planned = env
        .loader()
        .plan(Object::parse("m1.o", &bytes).unwrap())
        .unwrap();
    let counts = planned.plan().relocation_counts();
    assert!(counts
        .iter()
        .any(|(r_type, _)| r_type.name() == Some("R_X86_64_REX_GOTPCRELX")));
    assert_eq!(
        planned.plan().got_slots(),
        0,
        "every GOT load in m1 targets m1 itself"
    );
    // m2 -fPIC reads m1's counter: another module, so it keeps its slot.
    let m1 = env.load(&c("m1.c", CModel::Pic));
    let bytes = modload_tests::read(&c("m2.c", CModel::Pic));
    let planned = env
        .loader()
        .plan(Object::parse("m2.o", &bytes).unwrap())
        .unwrap();
    assert!(planned.plan().got_slots() >= 1);
    drop(planned);
    unload(m1);
}

#[test]
fn abandoned_stages_free_their_memory() {
    let env = Env::anywhere();
    let bytes = modload_tests::read(&c("m3.c", CModel::Pic));
    let m1 = env.load(&c("m1.c", CModel::Pic));
    let m2 = env.load(&c("m2.c", CModel::Pic));
    let used = env.used();
    let loader = env.loader();
    drop(
        loader
            .plan(Object::parse("m3.o", &bytes).unwrap())
            .unwrap()
            .allocate()
            .unwrap(),
    );
    assert_eq!(env.used(), used);
    drop(
        loader
            .plan(Object::parse("m3.o", &bytes).unwrap())
            .unwrap()
            .allocate()
            .unwrap()
            .relocate()
            .unwrap(),
    );
    assert_eq!(env.used(), used);
    // Finalized pages are protected; dropping must make them writable again
    // before the region reuses them, or the next load would fault.
    let finalized = loader
        .plan(Object::parse("m3.o", &bytes).unwrap())
        .unwrap()
        .allocate()
        .unwrap()
        .relocate()
        .unwrap()
        .finalize()
        .unwrap();
    // m2 and m1 are pinned by the load in progress.
    let refused = m2.unload().unwrap_err();
    drop(finalized);
    assert_eq!(env.used(), used);
    take_log();
    let m3 = env.load(&c("m3.c", CModel::Pic));
    assert_eq!(take_log(), [300, 301]);
    unload(m3);
    unload(refused.module);
    unload(m1);
    env.assert_back_to_baseline();
}

fn page_permissions(address: u64) -> String {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let range = fields.next().unwrap();
        let permissions = fields.next().unwrap();
        let (start, end) = range.split_once('-').unwrap();
        let (start, end) = (
            u64::from_str_radix(start, 16).unwrap(),
            u64::from_str_radix(end, 16).unwrap(),
        );
        if (start..end).contains(&address) {
            return permissions[..3].to_string();
        }
    }
    panic!("{address:#x} is not mapped");
}

#[test]
fn finalized_pages_are_never_writable_and_executable() {
    let env = Env::anywhere();
    let m1 = env.load(&c("m1.c", CModel::Pic));
    assert_eq!(
        page_permissions(m1.symbol("m1_value").unwrap().as_u64()),
        "r-x"
    );
    assert_eq!(
        page_permissions(m1.symbol("m1_counter").unwrap().as_u64()),
        "rw-"
    );
    // SAFETY: m1_greeting is `const char *m1_greeting(void)`.
    let greeting =
        unsafe { m1.get::<extern "C" fn() -> *const libc::c_char>("m1_greeting") }.unwrap();
    assert_eq!(
        page_permissions(greeting() as u64),
        "r--",
        "strings are read-only"
    );
    unload(m1);
    // Freed pages are writable again (the region reuses them).
    env.assert_back_to_baseline();
    assert_eq!(page_permissions(env.region.start().as_u64()), "rw-");
}

/// Relocate for another address: link at a destination, copy the finished
/// bytes there after finalization, and run them there.
#[test]
fn modules_run_where_they_were_mapped_to() {
    let env = Env::anywhere();
    let bytes = modload_tests::read(&c("m1.c", CModel::Pic));
    let planned = env
        .loader()
        .plan(Object::parse("m1.o", &bytes).unwrap())
        .unwrap();
    let size = planned.plan().size() as usize;
    // SAFETY: a fresh anonymous mapping; nothing else uses it.
    let destination = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(destination, libc::MAP_FAILED);
    let mut placed = planned.allocate().unwrap();
    let staging = placed.load_address();
    placed.map_module(VirtAddr::from_ptr(destination)).unwrap();
    let finalized = placed.relocate().unwrap().finalize().unwrap();
    // SAFETY: both ranges are `size` bytes and do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(finalized.bytes().as_ptr(), destination.cast::<u8>(), size)
    };
    // SAFETY: the destination mapping is ours; the whole copy becomes r-x.
    assert_eq!(
        unsafe { libc::mprotect(destination, size, libc::PROT_READ | libc::PROT_EXEC) },
        0
    );
    // SAFETY: the code is now at its target addresses; m1 has no constructors.
    let m1 = unsafe { finalized.start() }.unwrap();
    let at = m1.symbol("m1_value").unwrap();
    assert!(at.as_u64() >= destination as u64 && at.as_u64() < destination as u64 + size as u64);
    assert!(
        at.checked_offset_from(staging)
            .is_none_or(|offset| offset >= size as u64),
        "symbols point at the target, not the staging copy"
    );
    assert_eq!(call0(&m1, "m1_value"), 42);
    unload(m1);
    env.assert_back_to_baseline();
}

#[test]
fn mapping_moves_only_what_it_names_and_fails_atomically() {
    let env = Env::anywhere();
    let bytes = modload_tests::read(&c("m1.c", CModel::Pic));
    let mut placed = env
        .loader()
        .plan(Object::parse("m1.o", &bytes).unwrap())
        .unwrap()
        .allocate()
        .unwrap();
    let before = placed.pieces();
    let load = placed.load_address().as_u64();
    assert!(
        before
            .iter()
            .all(|piece| piece.target.as_u64() == load + piece.offset),
        "targets start at the load address"
    );

    let code_start = placed.plan().segment(Segment::Code).offset;
    placed
        .map_segment(Segment::Code, VirtAddr::new(0x5000_0000))
        .unwrap();
    for (old, new) in before.iter().zip(placed.pieces()) {
        if new.kind.segment() == Segment::Code {
            assert_eq!(
                new.target.as_u64(),
                0x5000_0000 + new.offset - code_start,
                "{}",
                new.name
            );
        } else {
            assert_eq!(new.target, old.target, "{} must not move", new.name);
        }
    }
    let moved = placed.pieces();
    // Past the end of the address space: refused, and nothing moves.
    let error = placed
        .map_segment(Segment::Writable, VirtAddr::new(u64::MAX - 8))
        .unwrap_err();
    assert!(matches!(error.kind, ErrorKind::ModuleTooLarge { .. }));
    assert_eq!(placed.pieces(), moved);
    // A section that is not loaded cannot be mapped.
    assert_eq!(
        placed
            .map_section(0, VirtAddr::new(0x1000))
            .unwrap_err()
            .kind,
        ErrorKind::SectionNotLoaded { index: 0 }
    );
    let text = moved
        .iter()
        .find(|piece| piece.name.as_ref() == ".text")
        .unwrap()
        .section
        .unwrap();
    placed
        .map_section(text, VirtAddr::new(0x6000_0000))
        .unwrap();
    assert_eq!(
        placed
            .pieces()
            .iter()
            .find(|piece| piece.section == Some(text))
            .unwrap()
            .target,
        VirtAddr::new(0x6000_0000)
    );
    drop(placed);
    env.assert_back_to_baseline();
}
