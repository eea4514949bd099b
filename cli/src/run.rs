//! `modload run`: load objects into this process and call their entry point,
//! like a tiny dynamic linker for `.o` files.
//!
//! Undefined names resolve from the shared libraries (`crate::dl`; `-l NAME`
//! as the toolchain finds it, `crate::libsearch`), except library data and
//! functions that `-fno-pic` objects cannot reach with their 32-bit fields:
//! those resolve to copies and stubs beside the module region, which the
//! libraries are made to use too, as copy relocations and PLT entries do
//! for a non-PIE executable (`crate::copies`).

use std::ffi::{c_char, c_int, c_void, CString, OsString};
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use modload::{Constructors, ErrorKind, Loader, Module, Namespace, PageSize, Region, UnboundCall};
use modload_platform::host::{
    host_page_size, new_region_with_page_size, Placement, HOST_PROTECTION,
};

use crate::args::RunArgs;
use crate::copies::Copies;
use crate::dl::SharedLibraries;
use crate::order;
use crate::Failure;

/// The modules of this run. A `static` so the exit handler can reach it.
static NAMESPACE: Namespace = Namespace::new();

/// Where `-fno-pic` small-model code needs its region: low enough that every
/// module address fits a sign-extended 32-bit immediate.
const LOW_REGION_HINT: u64 = 0x4000_0000;
const LOW_LIMIT: u64 = 0x8000_0000;

/// A C `main`. The environment is passed as a third argument: C allows
/// `main(int, char **, char **)`, and the SysV ABI makes the extra argument
/// harmless to a two-argument `main`.
type EntryPoint = extern "C" fn(c_int, *const *const c_char, *const *const c_char) -> c_int;

/// Runs `modload run`. On success it does not return: the process exits with
/// the entry point's return value.
pub fn command(args: &RunArgs) -> Result<(), Failure> {
    let objects = crate::read_objects(&args.objects)?;
    crate::debugger::enable(&NAMESPACE, args.gdb);

    // With trusted keys, every signature is checked before any object is
    // parsed, here to fail early; the loader checks again as it loads.
    let trusted = crate::sign::trusted_keys(&args.trusted_keys)?;
    if let Some(keys) = &trusted {
        for (name, bytes) in &objects {
            modload::signature::verify(bytes, keys).map_err(|problem| {
                Failure::message(format!("{name}: signature refused: {problem}"))
            })?;
        }
    }
    let page = host_page_size()
        .map_err(|error| Failure::io("cannot protect module memory here", &error))?;
    // One read of each object's symbols and relocations tells where the
    // region goes, which library data needs copies and which objects must
    // load as one set for hidden names (`order::survey`).
    let mut survey = order::survey(&objects)?;
    let placement = choose_placement(&survey);
    // Open the libraries before mapping the region, so that `mmap` puts the
    // region next to them and 32-bit PC-relative references to their data reach.
    let libraries = SharedLibraries::open(&args.libraries).map_err(Failure::message)?;
    let region = map_region(args.region_size, placement, page)?;
    prefault(region, args.region_size, &survey);
    // Library data the objects' 32-bit fields cannot reach from the region
    // gets a copy beside it, as copy relocations give a non-PIE executable.
    let region_start = region.start().as_u64();
    let copies = Copies::prepare(
        &survey,
        &libraries,
        region_start..region_start.saturating_add(args.region_size as u64),
    )?;
    // Late binding needs a loader that lives as long as the program: what
    // it resolves through stays for the rest of the process anyway.
    let libraries: &'static SharedLibraries = Box::leak(Box::new(libraries));
    let copies: &'static Copies = Box::leak(Box::new(copies));
    let resolver: &'static Resolver = Box::leak(Box::new(Resolver { copies, libraries }));
    let trusted = trusted.map(|keys| &*Box::leak(Box::new(keys)));
    NAMESPACE.set_unbound_hook(Some(report_unbound_call));

    let mut loader = Loader::new(&NAMESPACE, region, &HOST_PROTECTION)
        .with_fallback(resolver)
        .late_binding()
        .keep_unwind_tables();
    if let Some(keys) = trusted {
        loader = loader.require_signatures(keys);
    }
    let (modules, constructors) = load_all(&loader, &objects, &mut survey, args.verbose)?;
    // Every object is in: a name still awaited is defined nowhere, which a
    // static link would refuse too, so refuse it before anything runs.
    if let Some(failure) = order::still_unresolved(&NAMESPACE) {
        return Err(failure);
    }
    if args.perf_map {
        crate::perf_map::write(&modules)?;
    }
    // A fault in module code, from the first constructor on, gets a report
    // naming the module and function (`crate::crash`).
    crate::crash::install(&NAMESPACE).map_err(Failure::message)?;
    // Registered before any module code runs, so that handlers the modules
    // register with `atexit` run first, while their code is still mapped.
    // SAFETY: `unload_all` is an `extern "C" fn()` that never unwinds.
    if unsafe { libc::atexit(unload_all) } != 0 {
        return Err(Failure::message(String::from(
            "cannot register the exit handler",
        )));
    }
    // As a static link does: every object's constructors, in the order the
    // objects were given, once all of them are in place.
    for (_, constructors) in constructors {
        // SAFETY: running the objects' code is what the user asked for; each
        // module is loaded and mapped with W^X permissions.
        unsafe { constructors.run() };
    }

    let entry = find_entry(&args.entry, &modules)?;
    let program = args
        .objects
        .first()
        .ok_or_else(|| Failure::usage(String::from("run needs at least one object file")))?;
    let argv_words = argv(program, &args.program_args)?;
    let mut argv: Vec<*const c_char> = argv_words.iter().map(|word| word.as_ptr()).collect();
    argv.push(std::ptr::null());
    let argc = c_int::try_from(argv_words.len())
        .map_err(|_| Failure::message(String::from("too many program arguments")))?;
    // SAFETY: glibc's `environ` is the process environment, a NULL-terminated
    // array; it is only read here, before the program can change it.
    let envp = unsafe { libc::environ }
        .cast_const()
        .cast::<*const c_char>();

    let status = entry(argc, argv.as_ptr(), envp);

    // The program's output sits in C stdio buffers; exit flushes them too, but
    // flushing first keeps its output ahead of anything written at exit.
    // SAFETY: fflush(NULL) flushes every open C stream; it takes no pointers of ours.
    unsafe { libc::fflush(std::ptr::null_mut()) };
    let _ = std::io::stdout().flush();
    std::process::exit(status)
}

/// What modules resolve names through: the copies, then the libraries.
struct Resolver {
    copies: &'static Copies,
    libraries: &'static SharedLibraries,
}

impl modload::SymbolResolver for Resolver {
    fn resolve(&self, name: &str) -> Option<modload::VirtAddr> {
        self.copies
            .resolve(name)
            .or_else(|| self.libraries.resolve(name))
    }
}

/// Loads the objects one at a time, in the order given, with late binding:
/// a call to a function of a later object waits in its slot until that
/// object loads. Objects whose references cannot wait form cycles only
/// through data (or hidden names); each smallest set that closes such a
/// cycle loads as one module set ([`order::units_of`]; `-v` says which and
/// why). A unit that needs, at load, a name a later unit defines waits for
/// it ([`order::load_in_order`]). A failed load changes nothing, so trying
/// again is safe.
///
/// Returns the modules and their constructors, which nothing has run: in
/// the order of each unit's first object.
fn load_all(
    loader: &Loader<'static>,
    objects: &[(String, crate::ObjectBytes)],
    survey: &mut [order::Names],
    verbose: bool,
) -> Result<LoadedUnits, Failure> {
    let units = order::units_of(survey, objects)?;
    if verbose {
        for unit in units.iter().filter(|unit| unit.members.len() > 1) {
            eprintln!("{}", order::describe(unit, objects));
        }
    }
    let loaded = order::load_in_order(&units, verbose, |unit, late| {
        let loader = match late {
            true => *loader,
            false => loader.without_late_binding(),
        };
        match load_unit(&loader, unit, objects) {
            Ok(loaded) => Ok(Ok(loaded)),
            Err(error) if matches!(error.kind, ErrorKind::Unresolved { .. }) => Ok(Err(error)),
            Err(error) => Err(Failure::load(&error)),
        }
    })?;
    let mut modules = Vec::with_capacity(loaded.len());
    let mut constructors = Vec::with_capacity(loaded.len());
    for (unit, (module, init)) in loaded {
        modules.push(module);
        constructors.push((unit.members.first().copied().unwrap_or(0), init));
    }
    constructors.sort_by_key(|(first, _)| *first);
    Ok((modules, constructors))
}

/// The modules `load_all` loaded, and their constructors with the position
/// of each unit's first object.
type LoadedUnits = (Vec<Module<'static>>, Vec<(usize, Constructors)>);

/// Loads one object, or a set of them as one module, and publishes it; its
/// constructors are returned to run once every object is in.
fn load_unit(
    loader: &Loader<'static>,
    unit: &order::Unit,
    objects: &[(String, crate::ObjectBytes)],
) -> Result<(Module<'static>, Constructors), modload::LoadError> {
    let members: Vec<(&str, &[u8])> = unit
        .members
        .iter()
        .filter_map(|&index| objects.get(index))
        .map(|(name, bytes)| (name.as_str(), bytes.as_slice()))
        .collect();
    let object = match members.as_slice() {
        [(name, bytes)] => loader.parse(name, bytes)?,
        _ => loader.parse_set(&order::set_name(&members), &members)?,
    };
    let finalized = loader.plan(object)?.allocate()?.relocate()?.finalize()?;
    // Exceptions thrown through module code (constructors' included) need
    // the unwinder to know the module's frames before it runs.
    let tables = finalized.unwind_tables().to_vec();
    for table in &tables {
        // SAFETY: each table is the module's zero-terminated `.eh_frame`,
        // relocated and mapped read-only where the module runs; it stays
        // there until `unload_with_finalize` deregisters it.
        unsafe { __register_frame(table.as_u64() as usize as *const c_void) };
    }
    // SAFETY: running the objects' code is what the user asked for; the
    // loader mapped it with W^X permissions where it runs.
    unsafe { finalized.start_later() }
        .inspect(|(module, _)| crate::debugger::loaded(module, &members))
        .inspect_err(|_| deregister_frames(&tables))
}

extern "C" {
    /// libgcc's unwinder: adds the frames of a zero-terminated `.eh_frame`.
    fn __register_frame(begin: *const c_void);
    /// libgcc's unwinder: forgets what `__register_frame` added.
    fn __deregister_frame(begin: *const c_void);
    /// glibc: runs the `__cxa_atexit` handlers registered under `handle`.
    fn __cxa_finalize(handle: *mut c_void);
}

fn deregister_frames(tables: &[modload::VirtAddr]) {
    for table in tables {
        // SAFETY: registered by `load_unit` and still mapped.
        unsafe { __deregister_frame(table.as_u64() as usize as *const c_void) };
    }
}

/// Reports a call to a function no object defines (yet): the program asked
/// for something that is not there, as a dynamic linker would say.
fn report_unbound_call(call: &UnboundCall<'_>) {
    eprintln!(
        "modload: {} called {}, which no loaded object defines; the call returns 0",
        call.module_name, call.symbol
    );
}

/// Near the shared libraries, unless some object has 32-bit absolute
/// relocations (`-fno-pic`, small code model), which need the low 2 GiB.
fn choose_placement(survey: &[order::Names]) -> Placement {
    if survey.iter().any(|object| object.absolute_32) {
        Placement::Near(LOW_REGION_HINT)
    } else {
        Placement::Anywhere
    }
}

/// Asks the kernel to give the region's first pages, about as many as the
/// modules will take, memory at once (`MADV_POPULATE_WRITE`): filling them
/// then takes no page fault per page (a 1 MB module took ~250). Modules
/// are placed from the region's start. Only a hint: a kernel before 5.14
/// refuses it, and the pages then fault in as they are written.
fn prefault(region: &Region, region_size: usize, survey: &[order::Names]) {
    let wanted = survey
        .iter()
        .fold(0u64, |sum, object| sum.saturating_add(object.loaded_bytes));
    let page = region.page_size().bytes();
    let len = wanted.min(region_size as u64) / page * page;
    let (Ok(start), Ok(len)) = (
        usize::try_from(region.start().as_u64()),
        usize::try_from(len),
    ) else {
        return;
    };
    if len == 0 {
        return;
    }
    // SAFETY: the range is the start of the region, mapped read-write and
    // still unused; populating pages changes no contents (they stay zero).
    unsafe { libc::madvise(start as *mut c_void, len, libc::MADV_POPULATE_WRITE) };
}

/// The region, of `size` bytes rounded up to the host's pages (`page`),
/// which it is protected in: on an AArch64 kernel built for 16 or 64 KiB
/// pages, modules are laid out in those.
fn map_region(
    size: usize,
    placement: Placement,
    page: PageSize,
) -> Result<&'static Region, Failure> {
    let size = usize::try_from(page.bytes())
        .ok()
        .and_then(|page| size.checked_next_multiple_of(page))
        .ok_or_else(|| Failure::message(format!("--region-size {size} is too large")))?;
    let region = new_region_with_page_size(size, placement, page)
        .map_err(|error| Failure::io(&format!("cannot map {size} bytes for modules"), &error))?;
    if placement != Placement::Anywhere {
        let start = region.start().as_u64();
        let fits = start
            .checked_add(size as u64)
            .is_some_and(|end| end <= LOW_LIMIT);
        if !fits {
            return Err(Failure::message(format!(
                "cannot place {size} bytes of module memory below 2 GiB (got {start:#x}), \
                 as objects with R_X86_64_32/R_X86_64_32S relocations need; \
                 try a smaller --region-size or build them with -fpic"
            )));
        }
    }
    Ok(region)
}

/// The entry point's address: an export of the namespace, else a hidden
/// global of one of the modules (in load order).
fn find_entry(name: &str, modules: &[Module<'_>]) -> Result<EntryPoint, Failure> {
    let address = NAMESPACE
        .lookup(name)
        .or_else(|| modules.iter().find_map(|module| module.symbol(name)))
        .and_then(|address| usize::try_from(address.as_u64()).ok())
        .filter(|address| *address != 0)
        .ok_or_else(|| {
            Failure::message(format!(
                "entry symbol `{name}` is not defined by any loaded object"
            ))
        })?;
    // SAFETY: `address` is non-zero and names a global the user chose as the
    // entry point; the user asserts it is a C function taking (argc, argv).
    // Function pointers and `usize` have the same size on this host.
    Ok(unsafe { std::mem::transmute::<usize, EntryPoint>(address) })
}

/// argv for the program: the first object's path, then the words after `--`.
fn argv(program: &Path, rest: &[OsString]) -> Result<Vec<CString>, Failure> {
    std::iter::once(program.as_os_str())
        .chain(rest.iter().map(|word| word.as_os_str()))
        .map(|word| {
            CString::new(word.as_bytes()).map_err(|_| {
                Failure::message(format!(
                    "program argument `{}` contains a NUL byte",
                    word.to_string_lossy()
                ))
            })
        })
        .collect()
}

/// Unloads every module, newest first, when the process exits: their
/// destructors (`.fini_array`) run as a linked program's would. Registered
/// before any module loads, so handlers that modules register with `atexit`
/// run first, while module code is still mapped.
///
/// Late binding can make an earlier module use a later one, so newest first
/// is only the first try: rounds go on while any module could go.
extern "C" fn unload_all() {
    loop {
        let mut unloaded = false;
        for (id, _) in NAMESPACE.modules().into_iter().rev() {
            if let Some(module) = Module::from_id(&NAMESPACE, id) {
                // A refusal (a module still uses it) leaves it for a later round.
                if unload_with_finalize(module) {
                    unloaded = true;
                }
            }
        }
        if !unloaded {
            // What is left is refused for good, and stays mapped: harmless at exit.
            break;
        }
    }
}

/// Unloads `module` unless another still uses it; first runs the handlers
/// its C++ code registered with `__cxa_atexit` under its own `__dso_handle`
/// (static objects' destructors), as a shared object's unloading does.
fn unload_with_finalize(module: Module<'static>) -> bool {
    if module.is_used() {
        return false;
    }
    if let Some(handle) = module.dso_handle() {
        // SAFETY: the handle is the module's own `__dso_handle`; glibc runs
        // (once) the handlers registered under it, whose code is still mapped.
        unsafe { __cxa_finalize(handle.as_u64() as usize as *mut c_void) };
    }
    // Unused, so the unload goes through: the unwinder forgets the module
    // while its tables are still there to read.
    deregister_frames(&module.unwind_tables());
    module.unload().is_ok()
}
