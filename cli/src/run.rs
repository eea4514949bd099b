//! `modload run`: load objects into this process and call their entry point,
//! like a tiny dynamic linker for `.o` files.

use std::ffi::{c_char, c_int, CString, OsString};
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use modload::elf::EM_X86_64;
use modload::{ErrorKind, Loader, Module, Namespace, Region};
use modload_platform::host::{new_region, Placement, HOST_PROTECTION};

use crate::args::RunArgs;
use crate::dl::SharedLibraries;
use crate::plan::plan_alone;
use crate::Failure;

/// The modules of this run. A `static` so the exit handler can reach it.
static NAMESPACE: Namespace = Namespace::new();

/// Where `-fno-pic` small-model code needs its region: low enough that every
/// module address fits a sign-extended 32-bit immediate.
const LOW_REGION_HINT: u64 = 0x4000_0000;
const LOW_LIMIT: u64 = 0x8000_0000;

/// `R_X86_64_32` and `R_X86_64_32S`: absolute addresses in 32-bit fields.
const ABSOLUTE_32: [u32; 2] = [10, 11];

const PAGE_SIZE: usize = 4096;

/// A C `main`. The environment is passed as a third argument: C allows
/// `main(int, char **, char **)`, and the SysV ABI makes the extra argument
/// harmless to a two-argument `main`.
type EntryPoint = extern "C" fn(c_int, *const *const c_char, *const *const c_char) -> c_int;

/// Runs `modload run`. On success it does not return: the process exits with
/// the entry point's return value.
pub fn command(args: &RunArgs) -> Result<(), Failure> {
    let objects = crate::read_objects(&args.objects)?;

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
    require_page_size()?;
    let placement = choose_placement(&objects)?;
    // Open the libraries before mapping the region, so that `mmap` puts the
    // region next to them and 32-bit PC-relative references to their data reach.
    let libraries = SharedLibraries::open(&args.libraries).map_err(Failure::message)?;
    let region = map_region(args.region_size, placement)?;

    // SAFETY: `unload_all` is an `extern "C" fn()` that never unwinds.
    if unsafe { libc::atexit(unload_all) } != 0 {
        return Err(Failure::message(String::from(
            "cannot register the exit handler",
        )));
    }

    let mut loader = Loader::new(&NAMESPACE, region, &HOST_PROTECTION).with_fallback(&libraries);
    if let Some(keys) = &trusted {
        loader = loader.require_signatures(keys);
    }
    let modules = load_all(&loader, &objects)?;

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

/// Loads every object, each after the objects it needs. A module binds only to
/// modules loaded before it, so an object whose symbols are unresolved waits
/// for the others and is tried again once one of them has loaded: the given
/// order is kept where it works, and `modload run *.o` works in any order as
/// long as no two objects need each other. A failed load changes nothing, so
/// trying again is safe.
fn load_all<'l>(
    loader: &Loader<'l>,
    objects: &[(String, Vec<u8>)],
) -> Result<Vec<Module<'l>>, Failure> {
    let mut modules = Vec::with_capacity(objects.len());
    let mut waiting: Vec<&(String, Vec<u8>)> = objects.iter().collect();
    while !waiting.is_empty() {
        let loaded_before = modules.len();
        let mut still_waiting = Vec::new();
        let mut first_unresolved = None;
        for object in waiting {
            let (name, bytes) = object;
            // SAFETY: running the objects' code is what the user asked for; the
            // loader maps it with W^X permissions and runs its constructors.
            match unsafe { loader.load(name, bytes) } {
                Ok(module) => modules.push(module),
                Err(error) if matches!(error.kind, ErrorKind::Unresolved { .. }) => {
                    first_unresolved.get_or_insert(error);
                    still_waiting.push(object);
                }
                Err(error) => return Err(Failure::load(&error)),
            }
        }
        if modules.len() == loaded_before {
            if let Some(error) = first_unresolved {
                return Err(Failure::load(&error));
            }
        }
        waiting = still_waiting;
    }
    Ok(modules)
}

/// Near the shared libraries, unless some object has 32-bit absolute
/// relocations (`-fno-pic`, small code model), which need the low 2 GiB.
fn choose_placement(objects: &[(String, Vec<u8>)]) -> Result<Placement, Failure> {
    for (name, bytes) in objects {
        let planned = plan_alone(name, bytes).map_err(|error| Failure::load(&error))?;
        let absolute = planned
            .plan
            .relocation_counts()
            .iter()
            .any(|(kind, count)| {
                kind.machine == EM_X86_64 && ABSOLUTE_32.contains(&kind.raw) && *count > 0
            });
        if absolute {
            return Ok(Placement::Near(LOW_REGION_HINT));
        }
    }
    Ok(Placement::Anywhere)
}

/// The loader lays modules out in 4 KiB pages and sets their permissions
/// page by page; with larger pages (AArch64 kernels built for 16 or 64 KiB)
/// `mprotect` would refuse those ranges one load at a time, so say why at once.
fn require_page_size() -> Result<(), Failure> {
    // SAFETY: sysconf reads a configuration value and touches no memory.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if usize::try_from(page).ok() == Some(PAGE_SIZE) {
        return Ok(());
    }
    Err(Failure::message(format!(
        "this kernel's pages are {page} bytes; modload run places modules in \
         {PAGE_SIZE}-byte pages and needs a kernel with that page size"
    )))
}

fn map_region(size: usize, placement: Placement) -> Result<&'static Region, Failure> {
    let size = size
        .checked_next_multiple_of(PAGE_SIZE)
        .ok_or_else(|| Failure::message(format!("--region-size {size} is too large")))?;
    let region = new_region(size, placement)
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
extern "C" fn unload_all() {
    for (id, _) in NAMESPACE.modules().into_iter().rev() {
        if let Some(module) = Module::from_id(&NAMESPACE, id) {
            // A refusal leaves the module mapped, which is harmless at exit.
            let _ = module.unload();
        }
    }
}
