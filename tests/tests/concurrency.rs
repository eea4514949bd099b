//! The region and the namespace are shared (`spin` locks): several threads
//! load, call and unload modules at once, for a bounded time, and nothing is
//! corrupted. Then three orderings of loads and unloads that interleaving
//! threads can produce, each played out deterministically.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use modload::{ErrorKind, LoadError, Module, UnloadError};
use modload_tests::{assemble, compile_c, fixture, CModel};

const THREADS: i64 = 4;
const RUN_FOR: Duration = Duration::from_secs(3);

fn worker(n: i64) -> PathBuf {
    compile_c(
        &fixture("worker.c"),
        CModel::Pic,
        &[&format!("-DWORKER={n}")],
    )
}

/// Every thread, until the deadline: load its own worker module and check it;
/// race the others to load the shared `m1`, and `m2` on top of whichever `m1`
/// is loaded, and check `m2`'s answer, which goes through `m1`; then unload
/// what it loaded. Unloading `m1` is refused while another thread's `m2` binds
/// to it; the thread keeps it and tries again later. At the end the region is
/// back to its baseline and the namespace empty.
#[test]
fn threads_load_call_and_unload_at_once() {
    let env = Env::anywhere();
    let workers: Vec<Vec<u8>> = (1..=THREADS)
        .map(|n| modload_tests::read(&worker(n)))
        .collect();
    let m1 = modload_tests::read(&compile_c(&fixture("m1.c"), CModel::Pic, &[]));
    let m2 = modload_tests::read(&compile_c(&fixture("m2.c"), CModel::Pic, &[]));
    let rounds = AtomicU64::new(0);
    let m2_calls = AtomicU64::new(0);
    let refused_unloads = AtomicU64::new(0);
    let deadline = Instant::now() + RUN_FOR;

    let leftovers: Vec<Module<'static>> = std::thread::scope(|scope| {
        let threads: Vec<_> = (1..=THREADS)
            .map(|n| {
                let (env, workers, m1, m2) = (&env, &workers, &m1, &m2);
                let (rounds, m2_calls, refused) = (&rounds, &m2_calls, &refused_unloads);
                scope.spawn(move || {
                    let loader = env.loader();
                    let load = |name: &str, bytes: &[u8]| -> Result<Module<'static>, LoadError> {
                        // SAFETY: the fixtures are this project's own test code.
                        unsafe { loader.load(name, bytes) }
                    };
                    let mut my_m1: Option<Module<'static>> = None;
                    while Instant::now() < deadline {
                        let name = format!("worker{n}.o");
                        let module = load(&name, &workers[n as usize - 1]).unwrap();
                        let prefix = format!("worker_{n}");
                        assert_eq!(call0(&module, &format!("{prefix}_id")), n);
                        assert_eq!(call1(&module, &format!("{prefix}_add"), 100), 100 + n);

                        if my_m1.is_none() {
                            match load("m1.o", m1) {
                                Ok(loaded) => {
                                    assert_eq!(call0(&loaded, "m1_value"), 42);
                                    my_m1 = Some(loaded);
                                }
                                Err(error) => assert!(
                                    matches!(error.kind, ErrorKind::DuplicateDefinition { .. }),
                                    "m1: {error}"
                                ),
                            }
                        }
                        match load("m2.o", m2) {
                            Ok(loaded) => {
                                assert_eq!(call1(&loaded, "m2_scale", 3), 126);
                                m2_calls.fetch_add(1, Ordering::Relaxed);
                                unload(loaded);
                            }
                            // No m1 at the moment, or another thread's m2 is loaded.
                            Err(error) => assert!(
                                matches!(
                                    error.kind,
                                    ErrorKind::Unresolved { .. }
                                        | ErrorKind::DuplicateDefinition { .. }
                                ),
                                "m2: {error}"
                            ),
                        }

                        assert_eq!(call1(&module, &format!("{prefix}_table"), 3), 3 * n);
                        unload(module);
                        if let Some(loaded) = my_m1.take() {
                            if let Err(rejected) = loaded.unload() {
                                assert!(
                                    matches!(rejected.error, UnloadError::InUse { .. }),
                                    "{:?}",
                                    rejected.error
                                );
                                refused.fetch_add(1, Ordering::Relaxed);
                                my_m1 = Some(rejected.module);
                            }
                        }
                        rounds.fetch_add(1, Ordering::Relaxed);
                    }
                    my_m1
                })
            })
            .collect();
        threads
            .into_iter()
            .filter_map(|thread| thread.join().unwrap())
            .collect()
    });
    // Every m2 is gone, so no m1 is in use any more.
    for module in leftovers {
        unload(module);
    }
    let rounds = rounds.into_inner();
    eprintln!(
        "{THREADS} threads, {rounds} rounds, {} m2 loads, {} refused m1 unloads",
        m2_calls.into_inner(),
        refused_unloads.into_inner()
    );
    assert!(rounds >= THREADS as u64, "threads made no progress");
    assert!(env.namespace.modules().is_empty());
    env.assert_back_to_baseline();
}

fn weak_def() -> Vec<u8> {
    modload_tests::read(&compile_c(&fixture("weak_def.c"), CModel::Pic, &[]))
}

fn strong_def() -> Vec<u8> {
    modload_tests::read(&compile_c(&fixture("strong_def.c"), CModel::Pic, &[]))
}

fn address_from(module: &Module<'_>, function: &str) -> u64 {
    // SAFETY: the fixtures declare these as `long *f(void)`.
    let f = unsafe { module.get::<extern "C" fn() -> *const i64>(function) }.unwrap();
    f() as u64
}

/// A weak definition that yielded at planning to another module's definition,
/// which is unloaded before the load resolves its names (another thread can
/// do that: nothing pins a module between plan and relocate). The module must
/// then use its own copy, not address 0.
#[test]
fn a_weak_definition_whose_winner_unloads_before_relocation_uses_its_own_copy() {
    let env = Env::anywhere();
    let strong = env.load(&compile_c(&fixture("strong_def.c"), CModel::Pic, &[]));
    let bytes = weak_def();
    let loader = env.loader();
    let planned = loader
        .plan(loader.parse("weak_def.o", &bytes).unwrap())
        .unwrap();
    unload(strong);
    // SAFETY: the fixture is this project's own test code.
    let weak = unsafe {
        planned
            .allocate()
            .unwrap()
            .relocate()
            .unwrap()
            .finalize()
            .unwrap()
            .start()
    }
    .unwrap();
    let bound = address_from(&weak, "weak_def_addr");
    assert_ne!(bound, 0, "shared_value resolved to address 0");
    // SAFETY: a non-null address of the module's own `long`.
    assert_eq!(unsafe { *(bound as *const i64) }, 2);
    unload(weak);
    env.assert_back_to_baseline();
}

/// A weak definition that lost at publish (another module published the name
/// between this module's plan and its start) is promoted when the winner
/// unloads: the name stays defined while a module defines it.
#[test]
fn a_definition_that_lost_at_publish_is_promoted_when_the_winner_unloads() {
    let env = Env::anywhere();
    let bytes = weak_def();
    let loader = env.loader();
    // Planned while nothing defines shared_value: the module keeps its own.
    let finalized = loader
        .plan(loader.parse("weak_def.o", &bytes).unwrap())
        .unwrap()
        .allocate()
        .unwrap()
        .relocate()
        .unwrap()
        .finalize()
        .unwrap();
    let strong = env.load(&compile_c(&fixture("strong_def.c"), CModel::Pic, &[]));
    // SAFETY: the fixture is this project's own test code.
    let weak = unsafe { finalized.start() }.unwrap();
    let own = address_from(&weak, "weak_def_addr");
    // SAFETY: the module's own `long`, loaded.
    assert_eq!(unsafe { *(own as *const i64) }, 2);
    assert_eq!(
        env.namespace.lookup("shared_value").unwrap().as_u64(),
        address_from(&strong, "strong_def_addr"),
        "the first published definition wins"
    );
    unload(strong);
    assert_eq!(
        env.namespace.lookup("shared_value").map(|a| a.as_u64()),
        Some(own),
        "the remaining definition must take over the name"
    );
    // A module loaded now binds to it, and pins it.
    let user = env.load(&compile_c(&fixture("shared_user.c"), CModel::Pic, &[]));
    assert_eq!(address_from(&user, "shared_user_addr"), own);
    let weak = match weak.unload() {
        Err(refused) => refused.module,
        Ok(()) => panic!("unloaded while another module binds to it"),
    };
    unload(user);
    unload(weak);
    assert_eq!(env.namespace.lookup("shared_value"), None);
    env.assert_back_to_baseline();
}

/// A strong definition shadowed at publish by an earlier weak one is promoted
/// too, ahead of other weak ones.
#[test]
fn a_shadowed_strong_definition_is_promoted_before_weak_ones() {
    let env = Env::anywhere();
    let loader = env.loader();
    let weak_bytes = weak_def();
    let weak2_bytes = modload_tests::read(&compile_c(
        &fixture("weak_def.c"),
        CModel::Pic,
        &["-DWEAK_DEF_ADDR=weak_def2_addr"],
    ));
    let strong_bytes = strong_def();
    let finish = |name: &str, bytes: &[u8]| {
        let finalized = loader
            .plan(loader.parse(name, bytes).unwrap())
            .unwrap()
            .allocate()
            .unwrap()
            .relocate()
            .unwrap()
            .finalize()
            .unwrap();
        finalized
    };
    // All three planned and relocated while the name is free.
    let first = finish("weak1.o", &weak_bytes);
    let second = finish("weak2.o", &weak2_bytes);
    let strong = finish("strong.o", &strong_bytes);
    // SAFETY: the fixtures are this project's own test code.
    let (first, second, strong) = unsafe { (first.start(), second.start(), strong.start()) };
    let (first, second, strong) = (first.unwrap(), second.unwrap(), strong.unwrap());
    let first_own = address_from(&first, "weak_def_addr");
    // A second strong definition is a duplicate of the one waiting in line,
    // even though the name is exported by a weak one.
    let strong2 = compile_c(
        &fixture("strong_def.c"),
        CModel::Pic,
        &["-DSTRONG_DEF_ADDR=strong_def2_addr"],
    );
    let error = env.try_load(&strong2).err().unwrap();
    assert_eq!(
        error.kind,
        ErrorKind::DuplicateDefinition {
            name: "shared_value".into(),
            existing: modload::Definer::Module("strong.o".into())
        }
    );
    assert_eq!(
        env.namespace.lookup("shared_value").unwrap().as_u64(),
        first_own
    );
    unload(first);
    assert_eq!(
        env.namespace.lookup("shared_value").unwrap().as_u64(),
        address_from(&strong, "strong_def_addr"),
        "the strong definition takes over"
    );
    unload(strong);
    assert_eq!(
        env.namespace.lookup("shared_value").unwrap().as_u64(),
        address_from(&second, "weak_def2_addr")
    );
    unload(second);
    assert_eq!(env.namespace.lookup("shared_value"), None);
    env.assert_back_to_baseline();
}

/// Where the `jmp rel32` at `address` lands, following an x86-64 stub
/// (`jmp *0(%rip)` and its 8-byte target) if it lands on one. Reads code only.
fn jump_target(address: u64) -> u64 {
    // SAFETY: `address` is a loaded function's entry; its first 5 bytes are
    // mapped and readable, and so is a stub's 14 if it jumps to one.
    unsafe {
        let code = address as *const u8;
        assert_eq!(*code, 0xe9, "not a jmp rel32");
        let rel = (code.add(1) as *const i32).read_unaligned();
        let target = address.wrapping_add(5).wrapping_add_signed(i64::from(rel));
        let stub = target as *const u8;
        if *stub == 0xff && *stub.add(1) == 0x25 {
            (stub.add(6) as *const u64).read_unaligned()
        } else {
            target
        }
    }
}

/// COMDAT group `hidden_fn` whose symbol is hidden (and weak, as C++ inline
/// functions are under -fvisibility=hidden): the second module's copy is
/// discarded, so its call must bind to the first module's copy even though
/// that is not exported. Today the discarded copy's symbol is looked up among
/// the exports, is not found, and being weak resolves to 0: the module loads
/// and its call jumps to address 0. The check reads the jump instead of making
/// it, so the test fails instead of crashing.
#[test]
fn a_discarded_comdat_copy_binds_to_a_hidden_first_copy() {
    let env = Env::anywhere();
    let a = env.load(&assemble(&fixture("comdat_hidden_a.s")));
    assert_eq!(call0(&a, "comdat_hidden_a_call"), 7);
    let first_copy = a.symbol("hidden_fn").unwrap().as_u64();
    let b = env.load(&assemble(&fixture("comdat_hidden_b.s")));
    let call = b.symbol("comdat_hidden_b_call").unwrap().as_u64();
    assert_eq!(
        jump_target(call),
        first_copy,
        "the discarded copy's call must reach the first copy"
    );
    assert_eq!(call0(&b, "comdat_hidden_b_call"), 7);
    let a = match a.unload() {
        Err(refused) => refused.module,
        Ok(()) => panic!("b uses a's copy of the group"),
    };
    unload(b);
    unload(a);
    env.assert_back_to_baseline();
}
