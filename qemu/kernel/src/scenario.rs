//! The scenario both kernels run, reported line by line:
//! `STEP n PASS name` or `STEP n FAIL name: why`, then `SCENARIO PASS|FAIL`.
//! The runner on the host fails the run on any failed or missing step.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use modload::{
    ErrorKind, ImportStatus, LoadError, Loader, Module, Namespace, Object, Region, RegionUsage,
    RelocationProblem, Segment, Symbol, UnboundCall, UnloadError, VirtAddr,
};

use crate::arch::{self, Access};
use crate::exports::{ALLOCATED, COUNTER, FINI_NOTES, PRINTS};

/// The architecture's name, as the runner expects it.
#[cfg(target_arch = "x86_64")]
pub const ARCH: &str = "x86_64";
/// The architecture's name, as the runner expects it.
#[cfg(target_arch = "aarch64")]
pub const ARCH: &str = "aarch64";

/// Module memory near the kernel (direct calls reach it).
static NEAR: Region = Region::new();
/// Module memory beyond direct reach of the kernel, where there is one
/// (AArch64: more than 128 MiB away, so calls into the kernel use veneers).
static FAR: Region = Region::new();
/// Every module and the kernel's exports: outlives every loader. The fault
/// reports name module addresses through it.
pub(crate) static NAMESPACE: Namespace = Namespace::new();

mod fault_step;

type Step = Result<String, String>;

/// Runs every step, even after a failure, so the report shows them all.
pub fn run() -> bool {
    let mut passed = true;
    let mut report = |number: u32, name: &str, outcome: Step| match outcome {
        Ok(detail) => println!("STEP {number} PASS {name}: {detail}"),
        Err(why) => {
            passed = false;
            println!("STEP {number} FAIL {name}: {why}");
        }
    };
    let mut state = match setup() {
        Ok(state) => state,
        Err(why) => {
            println!("SETUP FAIL: {why}");
            println!("SCENARIO FAIL");
            return false;
        }
    };
    report(1, "load A and call it", step1(&mut state));
    report(2, "load B and C against A", step2(&mut state));
    report(3, "modules outlive the loader", step3(&state));
    report(4, "W^X faults", step4(&state));
    report(5, "relocate for an alias address", step5(&mut state));
    report(6, "errors leave no trace", step6(&state));
    report(7, "unload in dependency order", step7(&mut state));
    report(8, "200 loads and unloads", step8(&state));
    report(9, "packed modules share pages", step9(&state));
    report(10, "grouped segments", step10(&state));
    report(11, "late binding: E calls F before F loads", step11(&state));
    report(12, "signed modules", step12());
    report(
        13,
        "a fault in a module is reported",
        fault_step::step13(&state),
    );
    println!("SCENARIO {}", if passed { "PASS" } else { "FAIL" });
    passed
}

struct State {
    near_baseline: RegionUsage,
    far_baseline: Option<RegionUsage>,
    a: Option<Module<'static>>,
    b: Option<Module<'static>>,
    c: Option<Module<'static>>,
    d: Option<Module<'static>>,
    d_alias: Option<(u64, u64)>,
}

fn setup() -> Result<State, String> {
    crate::debugger::install(&NAMESPACE);
    let (near, far) = arch::module_regions();
    // SAFETY: the linker script reserves these ranges for modules alone, the
    // architecture layer maps them read-write, and each is handed to one region once.
    unsafe { NEAR.init(near.start as *mut u8, (near.end - near.start) as usize) }
        .map_err(|error| format!("near region: {error:?}"))?;
    let far_baseline = if far.is_empty() {
        None
    } else {
        // SAFETY: as above, for the far reservation.
        unsafe { FAR.init(far.start as *mut u8, (far.end - far.start) as usize) }
            .map_err(|error| format!("far region: {error:?}"))?;
        Some(FAR.usage())
    };
    let count = crate::exports::publish(&NAMESPACE)?;
    println!(
        "kernel: {count} exports; near region {:#x}..{:#x}; far region {:#x}..{:#x}",
        near.start, near.end, far.start, far.end
    );
    Ok(State {
        near_baseline: NEAR.usage(),
        far_baseline,
        a: None,
        b: None,
        c: None,
        d: None,
        d_alias: None,
    })
}

fn near_loader() -> Loader<'static> {
    Loader::new(&NAMESPACE, &NEAR, arch::protection())
}

/// The far loader where there is a far region, else the near one.
fn far_loader(state: &State) -> Loader<'static> {
    match state.far_baseline {
        Some(_) => Loader::new(&NAMESPACE, &FAR, arch::protection()),
        None => near_loader(),
    }
}

fn module_bytes(name: &str) -> Result<&'static [u8], String> {
    crate::archive::member(name).ok_or_else(|| format!("{name} is not in the module archive"))
}

fn load(loader: Loader<'static>, name: &str) -> Result<Module<'static>, String> {
    let bytes = module_bytes(name)?;
    // SAFETY: the archive's modules are built for this kernel and its exports.
    let module = unsafe { loader.load(name, bytes) }.map_err(|error| format!("{error}"))?;
    crate::debugger::loaded(&module, bytes);
    Ok(module)
}

/// A module's function, typed.
fn function<'m, F: Copy>(
    module: &'m Option<Module<'static>>,
    name: &str,
) -> Result<Symbol<'m, F>, String> {
    let module = module.as_ref().ok_or("module not loaded")?;
    // SAFETY: each call site names the signature the module's source declares.
    unsafe { module.get::<F>(name) }.ok_or_else(|| format!("no symbol {name}"))
}

fn symbol(module: &Option<Module<'static>>, name: &str) -> Result<u64, String> {
    let module = module.as_ref().ok_or("module not loaded")?;
    module
        .symbol(name)
        .map(VirtAddr::as_u64)
        .ok_or_else(|| format!("no symbol {name}"))
}

fn expect<T: PartialEq + core::fmt::Debug>(what: &str, got: T, want: T) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: got {got:?}, want {want:?}"))
    }
}

type Void = extern "C" fn();
type Int = extern "C" fn() -> i32;
type Long = extern "C" fn() -> i64;
type Unary = extern "C" fn(u64) -> u64;

fn step1(state: &mut State) -> Step {
    state.a = Some(load(near_loader(), "a.o")?);
    let prints = PRINTS.load(Ordering::Relaxed);
    function::<Void>(&state.a, "a_hello")?();
    expect(
        "lines printed by A",
        PRINTS.load(Ordering::Relaxed),
        prints + 1,
    )?;
    expect(
        "a_value (its constructor ran)",
        function::<Int>(&state.a, "a_value")?(),
        42,
    )?;
    Ok(format!("A at {:#x}", symbol(&state.a, "a_value")?))
}

fn step2(state: &mut State) -> Step {
    // B goes through the staged API so its plan and veneer use can be shown.
    let loader = far_loader(state);
    let object = Object::parse("b.o", module_bytes("b.o")?).map_err(|error| format!("{error}"))?;
    let planned = loader.plan(object).map_err(|error| format!("{error}"))?;
    let planned_stubs = planned.plan().stub_slots();
    let relocated = planned
        .allocate()
        .and_then(|placed| placed.relocate())
        .map_err(|error| format!("{error}"))?;
    let used = relocated.report().stubs_used;
    let finalized = relocated.finalize().map_err(|error| format!("{error}"))?;
    // SAFETY: built for this kernel; it runs where it was loaded.
    let b = unsafe { finalized.start() }.map_err(|error| format!("{error}"))?;
    crate::debugger::loaded(&b, module_bytes("b.o")?);
    state.b = Some(b);
    let counter = COUNTER.load(Ordering::Relaxed);
    expect(
        "b_compute (A's value * 2 + 1)",
        function::<Long>(&state.b, "b_compute")?(),
        85,
    )?;
    expect(
        "kernel counter bumped by B",
        COUNTER.load(Ordering::Relaxed),
        counter + 1,
    )?;
    if state.far_baseline.is_some() && used == 0 {
        return Err("B sits beyond direct reach but used no veneer".into());
    }
    if used > planned_stubs {
        return Err(format!("{used} stubs used, only {planned_stubs} planned"));
    }
    state.c = Some(load(near_loader(), "c.o")?);
    expect(
        "c_run (A's function through C's pointer)",
        function::<Int>(&state.c, "c_run")?(),
        42,
    )?;
    expect(
        "A's data after C wrote it",
        function::<Int>(&state.a, "a_get_data")?(),
        99,
    )?;
    Ok(format!(
        "B at {:#x} ({used} of {planned_stubs} stubs/veneers used), C at {:#x}",
        symbol(&state.b, "b_compute")?,
        symbol(&state.c, "c_run")?
    ))
}

fn step3(state: &State) -> Step {
    // Every loader above was a temporary and is gone; only the static region
    // and namespace remain, and the modules with them.
    expect("a_value", function::<Int>(&state.a, "a_value")?(), 42)?;
    expect("b_compute", function::<Long>(&state.b, "b_compute")?(), 85)?;
    expect("c_run", function::<Int>(&state.c, "c_run")?(), 42)?;
    expect("modules in the namespace", NAMESPACE.modules().len(), 3)?;
    Ok("A, B and C answer as before with no loader alive".into())
}

fn step4(state: &State) -> Step {
    let text = symbol(&state.a, "a_value")?;
    let data = symbol(&state.a, "a_data")?;
    let rodata = symbol(&state.a, "a_rodata")?;
    let cases = [
        ("write A's text", Access::Write, text),
        ("execute A's data", Access::Execute, data),
        ("write A's rodata", Access::Write, rodata),
    ];
    let detail = expect_permission_faults(&cases)?;
    // Reads of rodata and calls into text still work after the faults.
    expect(
        "read A's rodata",
        arch::probe(Access::Read, rodata).is_none(),
        true,
    )?;
    expect(
        "a_value after the faults",
        function::<Int>(&state.a, "a_value")?(),
        42,
    )?;
    Ok(detail)
}

/// Each `(what, access, address)` must fault for page permissions; the
/// faults, described.
fn expect_permission_faults(cases: &[(&str, Access, u64)]) -> Result<String, String> {
    let mut detail = String::new();
    for &(what, access, address) in cases {
        match arch::probe(access, address) {
            Some(fault) if !is_permission_fault(fault.syndrome) => {
                return Err(format!(
                    "{what} at {address:#x} faulted, but not for permissions (syndrome {:#x})",
                    fault.syndrome
                ));
            }
            Some(fault) => {
                detail.push_str(&format!(
                    "{what}: {:?} fault at {:#x} (syndrome {:#x}); ",
                    fault.access, fault.address, fault.syndrome
                ));
            }
            None => return Err(format!("{what} at {address:#x} did not fault")),
        }
    }
    Ok(detail)
}

/// Whether a fault came from page permissions rather than a missing mapping:
/// the page-fault error code's P bit on x86-64, a permission fault status code
/// (DFSC/IFSC `0b0011xx`) in ESR_EL1 on AArch64.
fn is_permission_fault(syndrome: u64) -> bool {
    if cfg!(target_arch = "x86_64") {
        syndrome & 1 == 1
    } else {
        syndrome & 0x3c == 0x0c
    }
}

fn step5(state: &mut State) -> Step {
    let object = Object::parse("d.o", module_bytes("d.o")?).map_err(|error| format!("{error}"))?;
    let planned = near_loader()
        .plan(object)
        .map_err(|error| format!("{error}"))?;
    let plan = planned.plan().clone();
    let window = arch::alias_window();
    if window.end - window.start < plan.size() {
        return Err("alias window too small".into());
    }
    let alias = window.start;
    let mut placed = planned.allocate().map_err(|error| format!("{error}"))?;
    let staging = placed.load_address().as_u64();
    placed
        .map_module(VirtAddr::new(alias))
        .map_err(|error| format!("{error}"))?;
    let finalized = placed
        .relocate()
        .and_then(|relocated| relocated.finalize())
        .map_err(|error| format!("{error}"))?;
    // The alias views the same physical pages with each segment's permissions.
    for segment in Segment::ALL {
        let extent = plan.segment(segment);
        if extent.size > 0 {
            arch::map_alias(
                alias + extent.offset,
                staging + extent.offset,
                extent.size,
                segment.permissions(),
            )
            .map_err(|why| format!("map alias: {why}"))?;
        }
    }
    state.d_alias = Some((alias, plan.size()));
    // SAFETY: the code is present and executable at the alias, mapped above.
    let d = unsafe { finalized.start() }.map_err(|error| format!("{error}"))?;
    // Its debug object puts it at the alias, where it runs.
    crate::debugger::loaded(&d, module_bytes("d.o")?);
    state.d = Some(d);
    let compute = symbol(&state.d, "d_compute")?;
    if !window.contains(&compute) {
        return Err(format!(
            "d_compute at {compute:#x} is outside the alias window"
        ));
    }
    expect(
        "d_where (its own address, taken in D)",
        function::<Long>(&state.d, "d_where")?() as u64,
        compute,
    )?;
    expect(
        "d_compute(4) (constructor set 10)",
        function::<Unary>(&state.d, "d_compute")?(4),
        42,
    )?;
    Ok(format!("staged at {staging:#x}, running at {alias:#x}"))
}

fn step6(state: &State) -> Step {
    let near = NEAR.usage();
    let far = state.far_baseline.map(|_| FAR.usage());
    let modules = NAMESPACE.modules();
    let error = load_error(near_loader(), "unresolved.o")?;
    match &error.kind {
        ErrorKind::Unresolved { names }
            if names.iter().any(|name| &**name == "no_such_function") => {}
        other => return Err(format!("unresolved.o: expected Unresolved, got {other:?}")),
    }
    let error = load_error(far_loader(state), "overflow.o")?;
    let problem = match &error.kind {
        ErrorKind::Relocation(failure) => failure.problem,
        other => {
            return Err(format!(
                "overflow.o: expected a relocation error, got {other:?}"
            ))
        }
    };
    if !matches!(problem, RelocationProblem::Overflow { .. }) {
        return Err(format!("overflow.o: expected Overflow, got {problem:?}"));
    }
    expect("near region usage", NEAR.usage(), near)?;
    expect(
        "far region usage",
        state.far_baseline.map(|_| FAR.usage()),
        far,
    )?;
    expect("namespace modules", NAMESPACE.modules(), modules)?;
    Ok(format!("refused: {error}"))
}

fn load_error(loader: Loader<'static>, name: &str) -> Result<LoadError, String> {
    let bytes = module_bytes(name)?;
    // SAFETY: as in `load`; this module is expected to be refused.
    match unsafe { loader.load(name, bytes) } {
        Ok(_) => Err(format!("{name} loaded but should have been refused")),
        Err(error) => Ok(error),
    }
}

fn step7(state: &mut State) -> Step {
    let a = state.a.take().ok_or("A is not loaded")?;
    let a = match a.unload() {
        Ok(()) => return Err("A unloaded while B and C use it".into()),
        Err(refused) => match refused.error {
            UnloadError::InUse { .. } => refused.module,
            other => return Err(format!("A: expected InUse, got {other:?}")),
        },
    };
    FINI_NOTES.store(0, Ordering::Relaxed);
    for (name, module) in [
        ("C", state.c.take()),
        ("B", state.b.take()),
        ("D", state.d.take()),
        ("A", Some(a)),
    ] {
        let module = module.ok_or_else(|| format!("{name} is not loaded"))?;
        module
            .unload()
            .map_err(|refused| format!("{name}: {:?}", refused.error))?;
    }
    if let Some((alias, size)) = state.d_alias.take() {
        arch::unmap_alias(alias, size);
    }
    // A notes bit 1, B bit 2, C bit 3, D bit 4.
    expect(
        "destructors that ran",
        FINI_NOTES.load(Ordering::Relaxed),
        0b1_1110,
    )?;
    expect("near region usage", NEAR.usage(), state.near_baseline)?;
    if let Some(baseline) = state.far_baseline {
        expect("far region usage", FAR.usage(), baseline)?;
    }
    expect("modules left", NAMESPACE.modules().len(), 0)?;
    expect(
        "kernel_alloc bytes outstanding",
        ALLOCATED.load(Ordering::Relaxed),
        0,
    )?;
    Ok("A refused while in use; C, B, D, A unloaded; fini ran; regions back to boot usage".into())
}

fn step8(state: &State) -> Step {
    let before = (NEAR.usage(), state.far_baseline.map(|_| FAR.usage()));
    for round in 0..200u64 {
        let loader = if round % 2 == 0 {
            near_loader()
        } else {
            far_loader(state)
        };
        let module = Some(load(loader, "stress.o")?);
        let value = function::<Unary>(&module, "stress_value")?(round);
        expect("stress_value", value, round + 1)?;
        if let Some(module) = module {
            module
                .unload()
                .map_err(|refused| format!("round {round}: {:?}", refused.error))?;
        }
    }
    let after = (NEAR.usage(), state.far_baseline.map(|_| FAR.usage()));
    expect("region usage after 200 rounds", after, before)?;
    Ok("usage unchanged".into())
}

/// A and C packed (`Loader::packed`): their code shares a page that stays
/// read+execute while each is written into it through the alias writer, W^X
/// faults still hold, 50 packed loads and unloads leave usage as it was, and
/// unloading C zeroes its code while A keeps running from the same page.
fn step9(state: &State) -> Step {
    let loader = near_loader().packed(&crate::writer::WRITER);
    let a = Some(load(loader, "a.o")?);
    let c = Some(load(loader, "c.o")?);
    expect("a_value", function::<Int>(&a, "a_value")?(), 42)?;
    expect("c_run", function::<Int>(&c, "c_run")?(), 42)?;
    let page = |address: u64| address & !0xfff;
    let (a_text, c_text) = (symbol(&a, "a_value")?, symbol(&c, "c_run")?);
    if page(a_text) != page(c_text) {
        return Err(format!(
            "A's code at {a_text:#x} and C's at {c_text:#x} share no page"
        ));
    }
    expect_permission_faults(&[
        ("write the shared code page", Access::Write, a_text),
        ("execute A's data", Access::Execute, symbol(&a, "a_data")?),
        ("write A's rodata", Access::Write, symbol(&a, "a_rodata")?),
    ])?;
    let before = NEAR.usage();
    stress_rounds(loader, 50)?;
    expect("region usage after 50 packed rounds", NEAR.usage(), before)?;
    let c = c.ok_or("C is not loaded")?;
    c.unload()
        .map_err(|refused| format!("C: {:?}", refused.error))?;
    // SAFETY: A keeps the page mapped read+execute; these bytes are read,
    // not run.
    let left = unsafe { core::slice::from_raw_parts(c_text as *const u8, 16) };
    if left.iter().any(|byte| *byte != 0) {
        return Err(format!("C's code left in the shared page: {left:02x?}"));
    }
    expect("a_value with C gone", function::<Int>(&a, "a_value")?(), 42)?;
    let a = a.ok_or("A is not loaded")?;
    a.unload()
        .map_err(|refused| format!("A: {:?}", refused.error))?;
    expect("near region usage", NEAR.usage(), state.near_baseline)?;
    expect("packed pieces left", NEAR.packed_usage().pieces, 0)?;
    expect("modules left", NAMESPACE.modules().len(), 0)?;
    Ok(format!(
        "A at {a_text:#x} and C at {c_text:#x} in one code page; 50 packed rounds; usage back at boot value"
    ))
}

/// A and C grouped (`Loader::grouped`): each segment in pages of its own,
/// among other modules' segments of the same permissions. They run, C
/// through A's function pointers; the W^X faults hold for both; 50 grouped
/// loads and unloads leave usage as it was; and unloading both gives every
/// page and chunk back.
fn step10(state: &State) -> Step {
    let loader = near_loader().grouped();
    let a = Some(load(loader, "a.o")?);
    let c = Some(load(loader, "c.o")?);
    expect("a_value", function::<Int>(&a, "a_value")?(), 42)?;
    expect("c_run", function::<Int>(&c, "c_run")?(), 42)?;
    let (a_text, c_text) = (symbol(&a, "a_value")?, symbol(&c, "c_run")?);
    expect_permission_faults(&[
        ("write A's code", Access::Write, a_text),
        ("write C's code", Access::Write, c_text),
        ("execute A's data", Access::Execute, symbol(&a, "a_data")?),
        ("write A's rodata", Access::Write, symbol(&a, "a_rodata")?),
    ])?;
    let before = NEAR.usage();
    stress_rounds(loader, 50)?;
    expect("region usage after 50 grouped rounds", NEAR.usage(), before)?;
    let segments = NEAR.grouped_usage().segments;
    for (name, module) in [("C", c), ("A", a)] {
        module
            .ok_or("not loaded")?
            .unload()
            .map_err(|refused| format!("{name}: {:?}", refused.error))?;
    }
    expect("near region usage", NEAR.usage(), state.near_baseline)?;
    expect(
        "grouped usage",
        NEAR.grouped_usage(),
        modload::GroupedUsage::default(),
    )?;
    expect("modules left", NAMESPACE.modules().len(), 0)?;
    Ok(format!(
        "A's code at {a_text:#x}, C's at {c_text:#x}; {segments} B of segments; 50 grouped rounds; usage back at boot value"
    ))
}

/// Loads `stress.o` through `loader`, calls it and unloads it, `rounds` times.
fn stress_rounds(loader: Loader<'static>, rounds: u64) -> Result<(), String> {
    for round in 0..rounds {
        let module = Some(load(loader, "stress.o")?);
        expect(
            "stress_value",
            function::<Unary>(&module, "stress_value")?(round),
            round + 1,
        )?;
        if let Some(module) = module {
            module
                .unload()
                .map_err(|refused| format!("round {round}: {:?}", refused.error))?;
        }
    }
    Ok(())
}

/// Calls module E made to F's functions while they were unbound, as the
/// namespace's hook reported them: bit 0 `f_square`, bit 1 `f_offset`,
/// counted in the bits above.
static UNBOUND_CALLS: AtomicU64 = AtomicU64::new(0);

/// The kernel's hook for calls to pending imports: notes E's, prints each.
fn note_unbound_call(call: &UnboundCall<'_>) {
    println!(
        "kernel: {} called {}, which no module defines yet",
        call.module_name, call.symbol
    );
    let bit = match (call.module_name, call.symbol) {
        ("e.o", "f_square") => 1,
        ("e.o", "f_offset") => 2,
        _ => 0,
    };
    UNBOUND_CALLS.fetch_or(bit, Ordering::Relaxed);
    UNBOUND_CALLS.fetch_add(1 << 8, Ordering::Relaxed);
}

/// E loads with late binding before F: its calls into F reach the kernel's
/// hook and return 0, and the kernel keeps running. F then loads and binds
/// E's slots (a store to E's read-only GOT page, made writable, never
/// executable, for the store): the same call reaches F. E's GOT page and
/// code still fault for writes and its GOT for execution; F cannot go
/// while E is bound to it; both unload and usage is back at boot value.
fn step11(state: &State) -> Step {
    NAMESPACE.set_unbound_hook(Some(note_unbound_call));
    UNBOUND_CALLS.store(0, Ordering::Relaxed);
    let e = Some(load(near_loader().late_binding(), "e.o")?);
    let imports = |module: &Option<Module<'static>>| module.as_ref().map(Module::imports);
    expect(
        "E's imports after its load",
        imports(&e),
        Some(ImportStatus {
            pending: 2,
            bound_later: 0,
        }),
    )?;
    expect(
        "e_call(6) with F absent",
        function::<Unary>(&e, "e_call")?(6),
        0,
    )?;
    expect(
        "unbound calls seen by the hook (count << 8 | which)",
        UNBOUND_CALLS.load(Ordering::Relaxed),
        2 << 8 | 0b11,
    )?;
    let f = Some(load(near_loader(), "f.o")?);
    expect(
        "E's imports after F's load",
        imports(&e),
        Some(ImportStatus {
            pending: 0,
            bound_later: 2,
        }),
    )?;
    expect(
        "e_call(6) with F bound (36 + 7)",
        function::<Unary>(&e, "e_call")?(6),
        43,
    )?;
    expect(
        "unbound calls after binding",
        UNBOUND_CALLS.load(Ordering::Relaxed) >> 8,
        2,
    )?;
    let slot = e
        .as_ref()
        .and_then(|module| module.import_slot("f_square"))
        .ok_or("E has no slot for f_square")?
        .as_u64();
    let faults = expect_permission_faults(&[
        ("write E's bound GOT slot", Access::Write, slot),
        ("execute E's GOT page", Access::Execute, slot),
        ("write E's code", Access::Write, symbol(&e, "e_call")?),
    ])?;
    let f = match f.ok_or("F is not loaded")?.unload() {
        Ok(()) => return Err("F unloaded while E is bound to it".into()),
        Err(refused) => match refused.error {
            UnloadError::InUse { .. } => refused.module,
            other => return Err(format!("F: expected InUse, got {other:?}")),
        },
    };
    for (name, module) in [("E", e), ("F", Some(f))] {
        module
            .ok_or("not loaded")?
            .unload()
            .map_err(|refused| format!("{name}: {:?}", refused.error))?;
    }
    NAMESPACE.set_unbound_hook(None);
    expect("near region usage", NEAR.usage(), state.near_baseline)?;
    expect("modules left", NAMESPACE.modules().len(), 0)?;
    expect("pending imports left", NAMESPACE.pending_imports().len(), 0)?;
    Ok(format!(
        "2 calls reported while unbound, then bound to F; slot {slot:#x}: {faults}"
    ))
}

/// Signed modules on bare metal (feature `signature`): the stress module,
/// signed here with a test key, loads once the key is trusted; a tampered
/// copy and the unsigned original are refused before anything is parsed or
/// allocated. Ed25519 and SHA-512 run in the kernel, on both machines.
fn step12() -> Step {
    use modload::signature::{public_key, sign, TrustedKeys};
    use modload::SignatureProblem;

    // A test key, in the clear: what matters is that the kernel checks it.
    const SECRET: [u8; 32] = [0x5a; 32];
    let unsigned = module_bytes("stress.o")?;
    let mut signed = Vec::from(unsigned);
    signed.extend_from_slice(&sign(unsigned, &SECRET));
    let mut tampered = signed.clone();
    let middle = unsigned.len() / 2;
    let byte = tampered.get_mut(middle).ok_or("stress.o is empty")?;
    *byte ^= 1;

    let mut keys = TrustedKeys::new();
    keys.add(&public_key(&SECRET))
        .map_err(|error| format!("{error}"))?;
    let loader = Loader::new(&NAMESPACE, &NEAR, arch::protection()).require_signatures(&keys);
    let usage = NEAR.usage();
    for (what, bytes, want) in [
        ("unsigned", unsigned, SignatureProblem::Unsigned),
        ("tampered", &tampered[..], SignatureProblem::BadSignature),
    ] {
        // SAFETY: the archive's module, built for this kernel; refused here.
        match unsafe { loader.load("stress.o", bytes) } {
            Ok(_) => return Err(format!("the {what} module loaded")),
            Err(error) => match error.kind {
                ErrorKind::Signature { problem } if problem == want => {}
                other => return Err(format!("{what}: expected {want:?}, got {other:?}")),
            },
        }
        expect("region usage after a refusal", NEAR.usage(), usage)?;
    }
    // SAFETY: as above, and signed by the trusted key.
    let module = unsafe { loader.load("stress.o", &signed) }.map_err(|e| format!("{e}"))?;
    crate::debugger::loaded(&module, &signed);
    {
        // SAFETY: `stress_value` is `unsigned long stress_value(unsigned long)`.
        let stress_value =
            unsafe { module.get::<Unary>("stress_value") }.ok_or("no symbol stress_value")?;
        expect("stress_value of the signed module", stress_value(41), 42)?;
    }
    module
        .unload()
        .map_err(|refused| format!("{:?}", refused.error))?;
    expect("region usage after unload", NEAR.usage(), usage)?;
    Ok("unsigned and tampered copies refused before parsing; the signed one loads and runs".into())
}
