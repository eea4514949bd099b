//! Resolving the names modules leave undefined from shared libraries, through
//! `dlopen`/`dlsym`: the host tool's stand-in for a kernel's export table.

use std::ffi::{c_int, c_void, CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use modload::{SymbolResolver, VirtAddr};
use modload_platform::host::ProcessSymbols;

use crate::args::Library;
use crate::libsearch::{LinkInput, SearchPath};

/// Libraries every run resolves from, as a C program linked by `cc` would.
const DEFAULT_LIBRARIES: [&str; 2] = ["libc.so.6", "libm.so.6"];

/// A `dlopen` handle. It is never closed: loaded modules keep addresses into
/// the library until the process exits.
#[derive(Clone, Copy)]
struct Handle(*mut c_void);

// SAFETY: a dlopen handle is an opaque, process-wide token; glibc's dlsym
// takes its own lock, so using one handle from several threads is sound.
unsafe impl Send for Handle {}
// SAFETY: as above; `Handle` has no interior state of its own.
unsafe impl Sync for Handle {}

/// Shared libraries to resolve from, searched in the order they were opened,
/// then the whole process (`RTLD_DEFAULT`).
pub struct SharedLibraries {
    handles: Vec<Handle>,
}

impl SharedLibraries {
    /// The libraries named on the command line, in order, then libc and libm.
    /// Named libraries come first so they can override libc, as they would when
    /// linked with `cc a.o -lNAME`. `-l NAME` opens what the toolchain would
    /// link for `-lNAME` (see [`crate::libsearch`]).
    pub fn open(libraries: &[Library]) -> Result<Self, String> {
        let mut search = None;
        let mut handles = Vec::new();
        for library in libraries {
            let inputs = match library {
                // `--lib` names what `dlopen` takes (`libm.so.6` is found on
                // the run-time search path); what it cannot load may be a
                // linker script.
                Library::Path(path) => match dlopen(path) {
                    Ok(handle) => {
                        handles.push(handle);
                        continue;
                    }
                    Err(error) if !path.is_file() => return Err(error),
                    Err(_) => search
                        .get_or_insert_with(SearchPath::from_toolchain)
                        .expand(path, 0)?,
                },
                Library::Name(name) => search
                    .get_or_insert_with(SearchPath::from_toolchain)
                    .resolve_library(name)?,
            };
            for input in inputs {
                match input {
                    LinkInput::Shared(path) => handles.push(dlopen(&path)?),
                    LinkInput::Archive(path) => {
                        return Err(format!(
                            "{}: a static archive, which `modload run` does not link; \
                             extract its objects (`ar x`) and pass the ones needed",
                            path.display()
                        ))
                    }
                }
            }
        }
        for name in DEFAULT_LIBRARIES {
            handles.push(dlopen(Path::new(name))?);
        }
        Ok(Self { handles })
    }
}

impl SymbolResolver for SharedLibraries {
    fn resolve(&self, name: &str) -> Option<VirtAddr> {
        // First, as a linked program gets them from libgcc.a before any
        // shared library is searched.
        if let Some(helper) = crate::atomics::resolve(name) {
            return Some(helper);
        }
        // Library functions this tool stands in for: `pthread_create`, so
        // that modules' threads get the crash handler's stack.
        if let Some(stand_in) = crate::crash::resolve_stand_in(name) {
            return Some(stand_in);
        }
        let c_name = CString::new(name).ok()?;
        self.handles
            .iter()
            .find_map(|handle| {
                // SAFETY: `handle` came from a successful dlopen and is never
                // closed; `c_name` is NUL-terminated.
                let address = unsafe { libc::dlsym(handle.0, c_name.as_ptr()) };
                // A null result means "not here": symbols at address 0 (weak
                // undefined ones in a library) are no use to a module either.
                (!address.is_null()).then(|| VirtAddr::from_ptr(address))
            })
            .or_else(|| ProcessSymbols.resolve(name))
            .or_else(|| nonshared(c_name.to_bytes()))
    }
}

/// Functions glibc keeps in `libc_nonshared.a` rather than `libc.so.6`, so no
/// `dlsym` finds them: programs get a static copy when linked. This tool has
/// its own copies, linked the same way, and lends them to modules.
fn nonshared(name: &[u8]) -> Option<VirtAddr> {
    let address = match name {
        b"atexit" => module_atexit as extern "C" fn(extern "C" fn()) -> c_int as usize,
        _ => return None,
    };
    Some(VirtAddr::new(address as u64))
}

/// `atexit` for modules. The handler runs at process exit, before the modules
/// are unloaded (see `run::unload_all`), so module code is still mapped.
extern "C" fn module_atexit(handler: extern "C" fn()) -> c_int {
    // SAFETY: registering a C function pointer; libc calls it at exit.
    unsafe { libc::atexit(handler) }
}

fn dlopen(path: &Path) -> Result<Handle, String> {
    let name = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| format!("{}: library name contains a NUL byte", path.display()))?;
    // SAFETY: `name` is NUL-terminated. Loading a library runs its initializers,
    // which is what asking for the library means.
    let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    if handle.is_null() {
        return Err(last_dl_error(path));
    }
    Ok(Handle(handle))
}

/// `dlerror`'s message, which already names the file, or a fallback.
fn last_dl_error(path: &Path) -> String {
    // SAFETY: dlerror returns null or a NUL-terminated string that stays valid
    // until the next dl* call on this thread; it is copied out at once.
    let message = unsafe {
        let raw = libc::dlerror();
        (!raw.is_null()).then(|| CStr::from_ptr(raw).to_string_lossy().into_owned())
    };
    message.unwrap_or_else(|| format!("{}: cannot load shared library", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_libc_and_reports_bad_libraries() {
        let Ok(libraries) = SharedLibraries::open(&[]) else {
            panic!("libc and libm open");
        };
        assert!(libraries.resolve("printf").is_some());
        assert!(libraries.resolve("sqrt").is_some());
        assert!(libraries.resolve("atexit").is_some());
        assert!(libraries.resolve("no_such_symbol_anywhere").is_none());
        assert!(libraries.resolve("nul\0inside").is_none());
        let missing = SharedLibraries::open(&[Library::Name("no-such-library".into())]);
        assert!(missing.is_err_and(|error| error.contains("libno-such-library.so")));
    }
}
