//! Late binding on the host: modules that call functions no module defines
//! yet load, report calls through the namespace's hook, and are bound when a
//! definer arrives (`Loader::late_binding`).

mod common;

use std::path::PathBuf;
use std::sync::Mutex;

use common::*;
use modload::{ErrorKind, ImportStatus, UnboundCall, UnloadError};
use modload_tests::{compile_c, fixture, CModel};

/// Calls the hook saw, as `(module name, symbol)`, from every test: each test
/// uses module names of its own, and filters by them.
static CALLS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

fn record_call(call: &UnboundCall<'_>) {
    CALLS
        .lock()
        .unwrap()
        .push((call.module_name.to_string(), call.symbol.to_string()));
}

/// The calls to pending imports of `module` the hook has seen, emptied.
fn calls_from(module: &str) -> Vec<String> {
    let mut calls = CALLS.lock().unwrap();
    let (mine, others): (Vec<_>, Vec<_>) = calls.drain(..).partition(|(name, _)| name == module);
    *calls = others;
    mine.into_iter().map(|(_, symbol)| symbol).collect()
}

fn c(name: &str, model: CModel, extra: &[&str]) -> PathBuf {
    compile_c(&fixture(name), model, extra)
}

/// Loads `path` under `name` with late binding.
fn load_late(
    env: &Env,
    path: &std::path::Path,
    name: &str,
) -> Result<modload::Module<'static>, modload::LoadError> {
    let bytes = modload_tests::read(path);
    // SAFETY: the fixtures are this project's own test code.
    unsafe { env.loader().late_binding().load(name, &bytes) }
}

/// Each way a call can reach a pending import: a PLT32 call through a stub
/// (`-fPIC`, `-fno-pic`), and an indirect call through the GOT (`-fno-plt`).
const WAYS: [(CModel, &[&str], &str); 3] = [
    (CModel::Pic, &[], "pic"),
    (CModel::NoPicSmall, &[], "nopic"),
    (CModel::Pic, &["-fno-plt"], "noplt"),
];

#[test]
fn a_call_before_the_definer_reaches_the_hook_and_after_it_the_definition() {
    for (model, extra, label) in WAYS {
        let env = Env::for_model(model);
        env.namespace.set_unbound_hook(Some(record_call));
        let caller_name = format!("caller-{label}.o");
        let caller = load_late(&env, &c("late_caller.c", model, extra), &caller_name)
            .unwrap_or_else(|error| panic!("{label}: {error}"));
        assert_eq!(
            caller.imports(),
            ImportStatus {
                pending: 3,
                bound_later: 0
            },
            "{label}"
        );
        let pending: Vec<(String, Vec<modload::ModuleId>)> = env
            .namespace
            .pending_imports()
            .into_iter()
            .map(|(name, modules)| (name.to_string(), modules))
            .collect();
        assert_eq!(
            pending,
            ["late_scale", "late_sum", "late_twice"]
                .map(|name| (name.to_string(), vec![caller.id()])),
            "{label}"
        );

        // Unbound: the hook hears of each call, and the call returns 0.
        assert_eq!(call1(&caller, "caller_twice", 20), 1, "{label}");
        assert_eq!(call1(&caller, "caller_sum", 7), 0, "{label}");
        assert_eq!(call1(&caller, "caller_scale", 4), 0, "{label}");
        assert_eq!(
            calls_from(&caller_name),
            ["late_twice", "late_sum", "late_scale"],
            "{label}"
        );

        // A definer whose own load fails changes nothing.
        let used = env.used();
        let broken = load_late(
            &env,
            &c("late_broken_definer.c", model, extra),
            &format!("broken-{label}.o"),
        )
        .unwrap_err();
        match &broken.kind {
            ErrorKind::Unresolved { names } => {
                assert_eq!(
                    names.iter().map(|n| &**n).collect::<Vec<_>>(),
                    ["late_nowhere_data"]
                )
            }
            other => panic!("{label}: unexpected {other:?}"),
        }
        assert_eq!(env.used(), used, "{label}");
        assert_eq!(caller.imports().pending, 3, "{label}");
        assert_eq!(call1(&caller, "caller_twice", 20), 1, "{label}");
        assert_eq!(calls_from(&caller_name), ["late_twice"], "{label}");

        // The definer binds every waiting slot: the same calls now reach it,
        // arguments in registers and on the stack, and floating point, intact.
        let definer = env.load(&c("late_definer.c", model, extra));
        assert_eq!(
            caller.imports(),
            ImportStatus {
                pending: 0,
                bound_later: 3
            },
            "{label}"
        );
        assert!(env.namespace.pending_imports().is_empty(), "{label}");
        assert_eq!(call1(&caller, "caller_twice", 20), 41, "{label}");
        assert_eq!(call1(&caller, "caller_sum", 7), 7_123_456, "{label}");
        assert_eq!(call1(&caller, "caller_scale", 4), 10, "{label}");
        assert!(calls_from(&caller_name).is_empty(), "{label}");

        // The binding is a dependency: the definer stays while the caller does.
        let refused = definer.unload().unwrap_err();
        match &refused.error {
            UnloadError::InUse { users } => {
                assert_eq!(
                    users.iter().map(|u| &**u).collect::<Vec<_>>(),
                    [caller_name.as_str()]
                )
            }
            other => panic!("{label}: unexpected {other:?}"),
        }
        unload(caller);
        unload(refused.module);
        env.assert_back_to_baseline();
        assert!(env.namespace.modules().is_empty());
    }
}

#[test]
fn without_late_binding_the_caller_is_refused_as_before() {
    let env = Env::anywhere();
    let error = env
        .try_load(&c("late_caller.c", CModel::Pic, &[]))
        .unwrap_err();
    match &error.kind {
        ErrorKind::Unresolved { names } => assert_eq!(
            names.iter().map(|n| &**n).collect::<Vec<_>>(),
            ["late_scale", "late_sum", "late_twice"]
        ),
        other => panic!("unexpected {other:?}"),
    }
    env.assert_back_to_baseline();
}

#[test]
fn data_cannot_wait_and_is_named() {
    for model in [CModel::Pic, CModel::NoPicSmall] {
        let env = Env::for_model(model);
        let error = load_late(&env, &c("late_data_user.c", model, &[]), "data_user.o").unwrap_err();
        match &error.kind {
            // The function could wait; the variable cannot, and only it is named.
            ErrorKind::Unresolved { names } => assert_eq!(
                names.iter().map(|n| &**n).collect::<Vec<_>>(),
                ["late_missing_counter"],
                "{model:?}"
            ),
            other => panic!("{model:?}: unexpected {other:?}"),
        }
        env.assert_back_to_baseline();
        assert!(env.namespace.pending_imports().is_empty());
    }
}

#[test]
fn a_host_export_added_later_binds_waiting_modules() {
    extern "C" fn host_twice(value: i64) -> i64 {
        value * 3
    }
    let env = Env::anywhere();
    let caller = load_late(&env, &c("late_caller.c", CModel::Pic, &[]), "host-late.o").unwrap();
    assert_eq!(call1(&caller, "caller_twice", 5), 1);
    env.namespace
        .add_host_export("late_twice", address(host_twice as *const ()))
        .unwrap();
    assert_eq!(call1(&caller, "caller_twice", 5), 16);
    assert_eq!(
        caller.imports(),
        ImportStatus {
            pending: 2,
            bound_later: 1
        }
    );
    unload(caller);
    env.assert_back_to_baseline();
    assert!(env.namespace.pending_imports().is_empty());
}

#[test]
fn unloading_a_waiting_module_forgets_what_it_waited_for() {
    let env = Env::anywhere();
    let caller = load_late(&env, &c("late_caller.c", CModel::Pic, &[]), "forget.o").unwrap();
    assert_eq!(env.namespace.pending_imports().len(), 3);
    let report_plan = caller.imports();
    assert_eq!(report_plan.pending, 3);
    unload(caller);
    assert!(env.namespace.pending_imports().is_empty());
    // A definer loaded now binds nothing and can go at once.
    let definer = env.load(&c("late_definer.c", CModel::Pic, &[]));
    unload(definer);
    env.assert_back_to_baseline();
}

#[test]
fn the_plan_counts_pending_imports_and_the_report_agrees() {
    let env = Env::anywhere();
    let bytes = modload_tests::read(&c("late_caller.c", CModel::Pic, &[]));
    let loader = env.loader().late_binding();
    let planned = loader
        .plan(loader.parse("counted.o", &bytes).unwrap())
        .unwrap();
    let plan = planned.plan().clone();
    assert_eq!(plan.pending_imports(), 3);
    // Each: a GOT slot and a two-word context; a stub for its calls and a
    // 16-byte lazy entry.
    assert_eq!(plan.got_slots(), 3);
    assert_eq!(plan.kind(modload::SectionKind::Got).size, 3 * 8 + 3 * 16);
    assert_eq!(plan.stub_slots(), 3);
    assert_eq!(plan.kind(modload::SectionKind::Stubs).size, 3 * 16 + 3 * 16);
    let relocated = planned.allocate().unwrap().relocate().unwrap();
    assert_eq!(relocated.report().pending_imports, 3);
    assert_eq!(relocated.report().got_slots_used, plan.got_slots());

    // Defined between planning and relocation: bound at once, nothing pending.
    let definer = env.load(&c("late_definer.c", CModel::Pic, &[]));
    let planned = loader
        .plan(loader.parse("counted.o", &bytes).unwrap())
        .unwrap();
    assert_eq!(
        planned.plan().pending_imports(),
        0,
        "defined now: nothing to wait for"
    );
    drop(relocated);
    drop(planned);
    unload(definer);
    env.assert_back_to_baseline();
}

/// One thread keeps calling through a module's pending slots while another
/// loads the definer (binding them mid-call), loads a definer that fails,
/// and unloads both modules between rounds. Every call reaches either the
/// hook (and returns 0) or the definition, never anything else, and the hook
/// hears of exactly the calls that returned the unbound answer.
#[test]
fn calls_race_binding_and_each_reaches_the_hook_or_the_definition() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::RwLock;

    const ROUNDS: usize = 60;
    const NAME: &str = "stress-caller.o";
    let env = Env::anywhere();
    env.namespace.set_unbound_hook(Some(record_call));
    let caller_bytes = modload_tests::read(&c("late_caller.c", CModel::Pic, &[]));
    let definer_bytes = modload_tests::read(&c("late_definer.c", CModel::Pic, &[]));
    let broken_bytes = modload_tests::read(&c("late_broken_definer.c", CModel::Pic, &[]));
    let loader = env.loader().late_binding();

    // The caller's entry, while loaded; the writer lock keeps calls out while
    // modules come and go.
    let current: RwLock<Option<extern "C" fn(i64) -> i64>> = RwLock::new(None);
    let done = AtomicBool::new(false);
    let (unbound, bound) = (AtomicU64::new(0), AtomicU64::new(0));
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::Acquire) {
                let entry = current.read().unwrap();
                if let Some(function) = *entry {
                    match function(20) {
                        1 => unbound.fetch_add(1, Ordering::Relaxed),
                        41 => bound.fetch_add(1, Ordering::Relaxed),
                        other => {
                            panic!("a call reached neither the hook nor the definition: {other}")
                        }
                    };
                }
            }
        });
        for round in 0..ROUNDS {
            // SAFETY: the fixtures are this project's own test code.
            let caller = unsafe { loader.load(NAME, &caller_bytes) }.unwrap();
            // SAFETY: caller_twice is `long caller_twice(long)`, and the other
            // thread's copy is taken back (set to None) before the unload below.
            let function = unsafe {
                caller
                    .get::<extern "C" fn(i64) -> i64>("caller_twice")
                    .unwrap()
                    .into_raw()
            };
            *current.write().unwrap() = Some(function);
            // Let some unbound calls happen, then bind under the caller's feet.
            while unbound.load(Ordering::Relaxed) == 0 {
                std::thread::yield_now();
            }
            if round % 3 == 0 {
                // SAFETY: as above; this one is refused and must change nothing.
                let broken = unsafe { loader.load("stress-broken.o", &broken_bytes) };
                assert!(broken.is_err());
            }
            // SAFETY: as above.
            let definer = unsafe { loader.load("stress-definer.o", &definer_bytes) }.unwrap();
            assert_eq!(caller.imports().pending, 0);
            let seen = bound.load(Ordering::Relaxed);
            while bound.load(Ordering::Relaxed) == seen {
                std::thread::yield_now();
            }
            *current.write().unwrap() = None;
            unload(caller);
            unload(definer);
        }
        done.store(true, Ordering::Release);
    });
    let unbound = unbound.load(Ordering::Relaxed);
    let bound = bound.load(Ordering::Relaxed);
    assert!(
        unbound > 0 && bound >= ROUNDS as u64,
        "{unbound} unbound, {bound} bound"
    );
    let heard = calls_from(NAME);
    assert_eq!(
        heard.len() as u64,
        unbound,
        "the hook heard every unbound call"
    );
    assert!(heard.iter().all(|symbol| symbol == "late_twice"));
    env.assert_back_to_baseline();
    assert!(env.namespace.modules().is_empty());
    assert!(env.namespace.pending_imports().is_empty());
}

/// `__dso_handle` is an address of each module's own, so that C++ code can
/// register destructors per module with `__cxa_atexit`.
#[test]
fn each_module_has_a_dso_handle_of_its_own() {
    let env = Env::anywhere();
    let path = c("dso_handle.c", CModel::Pic, &[]);
    let bytes = modload_tests::read(&path);
    let first = env.load(&path);
    // A second copy in its own namespace-free name: same code, other module.
    let other_env = Env::anywhere();
    // SAFETY: the fixture is this project's own test code.
    let second = unsafe { other_env.loader().load("dso_handle.o", &bytes) }.unwrap();
    let handle = |module: &modload::Module<'_>| call0(module, "dso_handle_address") as u64;
    assert_eq!(Some(handle(&first)), first.dso_handle().map(|a| a.as_u64()));
    assert_eq!(
        Some(handle(&second)),
        second.dso_handle().map(|a| a.as_u64())
    );
    assert_ne!(handle(&first), handle(&second));
    // Inside the module's own memory, and not exported.
    assert_eq!(env.namespace.lookup("__dso_handle"), None);
    unload(first);
    unload(second);
    env.assert_back_to_baseline();
    other_env.assert_back_to_baseline();
}

/// Grouped and packed modules bind the same way: the GOT slot lies in a
/// read-only page of their own (grouped) or shared with other modules'
/// read-only pieces (packed), made writable (never executable) for the store.
#[test]
fn grouped_and_packed_callers_are_bound_too() {
    use modload_platform::host::{new_packed_region, Placement, HOST_PROTECTION};
    let env = Env::anywhere();
    let packed = new_packed_region(8 << 20, Placement::Anywhere).expect("packed region");
    let packed_baseline = packed.region.usage();
    let grouped = env.loader().grouped().late_binding();
    let packing = modload::Loader::new(env.namespace, packed.region, &HOST_PROTECTION)
        .packed(packed.writer)
        .late_binding();
    for (loader, label) in [(grouped, "grouped"), (packing, "packed")] {
        let bytes = modload_tests::read(&c("late_caller.c", CModel::Pic, &[]));
        // SAFETY: the fixtures are this project's own test code.
        let caller = unsafe { loader.load(&format!("caller-{label}.o"), &bytes) }.unwrap();
        assert_eq!(call1(&caller, "caller_twice", 4), 1, "{label}");
        let definer = env.load(&c("late_definer.c", CModel::Pic, &[]));
        assert_eq!(call1(&caller, "caller_twice", 4), 9, "{label}");
        assert_eq!(call1(&caller, "caller_sum", 1), 1_123_456, "{label}");
        assert_eq!(caller.imports().bound_later, 3, "{label}");
        unload(caller);
        unload(definer);
    }
    env.assert_back_to_baseline();
    assert_eq!(packed.region.usage(), packed_baseline);
    assert_eq!(packed.region.packed_usage().pieces, 0);
}
