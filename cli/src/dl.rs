//! Resolving the names modules leave undefined from shared libraries, through
//! `dlopen`/`dlsym`: the host tool's stand-in for a kernel's export table.

use std::ffi::{c_int, c_void, CStr, CString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use modload::{SymbolResolver, VirtAddr};

use crate::args::Library;

/// Libraries every run resolves from, as a C program linked by `cc` would.
const DEFAULT_LIBRARIES: [&str; 2] = ["libc.so.6", "libm.so.6"];

/// Where `-l NAME` looks for a `libNAME.so` that turns out to be a linker
/// script (`dlopen` finds it but cannot load it). Searched after
/// `LD_LIBRARY_PATH`, in the order the toolchain's linker uses.
#[cfg(not(target_arch = "aarch64"))]
const LIBRARY_DIRS: [&str; 7] = [
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
    "/usr/local/lib",
];
/// The same for AArch64, whose Debian multiarch directories differ.
#[cfg(target_arch = "aarch64")]
const LIBRARY_DIRS: [&str; 7] = [
    "/lib/aarch64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
    "/usr/local/lib",
];

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
    /// linked with `cc a.o -lNAME`.
    pub fn open(libraries: &[Library]) -> Result<Self, String> {
        let mut handles = Vec::new();
        for library in libraries {
            match library {
                Library::Name(name) => handles.extend(open_with_scripts(
                    Path::new(&format!("lib{name}.so")),
                    true,
                )?),
                Library::Path(path) => handles.extend(open_with_scripts(path, false)?),
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
        let name = CString::new(name).ok()?;
        self.handles
            .iter()
            .map(|handle| handle.0)
            .chain([libc::RTLD_DEFAULT])
            .find_map(|handle| {
                // SAFETY: `handle` came from a successful dlopen and is never
                // closed, or is RTLD_DEFAULT; `name` is NUL-terminated.
                let address = unsafe { libc::dlsym(handle, name.as_ptr()) };
                // A null result means "not here": symbols at address 0 (weak
                // undefined ones in a library) are no use to a module either.
                (!address.is_null()).then(|| VirtAddr::from_ptr(address))
            })
            .or_else(|| nonshared(name.to_bytes()))
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

/// Opens `path` as a shared library. If it is a GNU ld script instead (as the
/// development `libm.so` and `libc.so` are), opens the shared libraries it
/// names. `search` looks the script up on the library path, as `-l` does.
fn open_with_scripts(path: &Path, search: bool) -> Result<Vec<Handle>, String> {
    let error = match dlopen(path) {
        Ok(handle) => return Ok(vec![handle]),
        Err(error) => error,
    };
    let candidates: Vec<PathBuf> = if search && path.components().count() == 1 {
        library_dirs().map(|dir| dir.join(path)).collect()
    } else {
        vec![path.to_path_buf()]
    };
    let script = candidates
        .iter()
        .find_map(|candidate| fs::read(candidate).ok())
        .and_then(|text| linker_script_inputs(&String::from_utf8_lossy(&text)));
    match script {
        Some(inputs) if !inputs.is_empty() => inputs
            .iter()
            .map(|input| dlopen(Path::new(input)))
            .collect(),
        _ => Err(error),
    }
}

fn library_dirs() -> impl Iterator<Item = PathBuf> {
    let from_env: Vec<PathBuf> = std::env::var_os("LD_LIBRARY_PATH")
        .map(|paths| std::env::split_paths(&paths).collect())
        .unwrap_or_default();
    from_env
        .into_iter()
        .filter(|dir| !dir.as_os_str().is_empty())
        .chain(LIBRARY_DIRS.iter().map(PathBuf::from))
}

/// The shared libraries a GNU ld script's `GROUP` or `INPUT` commands name,
/// or `None` if `text` is not such a script. Static archives and
/// `AS_NEEDED` inputs are left out: `dlopen` cannot load the former, and the
/// latter are only wanted if something needs them.
fn linker_script_inputs(text: &str) -> Option<Vec<String>> {
    let text = strip_comments(text);
    let spaced = text
        .replace('(', " ( ")
        .replace(')', " ) ")
        .replace(',', " ");
    let mut words = spaced.split_whitespace();
    let mut inputs = Vec::new();
    let mut is_script = false;
    while let Some(word) = words.next() {
        if word != "GROUP" && word != "INPUT" {
            continue;
        }
        if words.next() != Some("(") {
            return None;
        }
        is_script = true;
        let mut depth = 1;
        let mut as_needed = 0;
        for word in words.by_ref() {
            match word {
                "(" => depth += 1,
                ")" => {
                    depth -= 1;
                    if depth < as_needed {
                        as_needed = 0;
                    }
                    if depth == 0 {
                        break;
                    }
                }
                "AS_NEEDED" => as_needed = depth + 1,
                _ if as_needed > 0 || word.ends_with(".a") || word.starts_with("-l") => {}
                _ => inputs.push(word.to_owned()),
            }
        }
    }
    is_script.then_some(inputs)
}

fn strip_comments(text: &str) -> String {
    let mut kept = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("/*") {
        kept.push_str(rest.get(..start).unwrap_or_default());
        rest = rest
            .get(start + 2..)
            .and_then(|after| after.find("*/").and_then(|end| after.get(end + 2..)))
            .unwrap_or_default();
    }
    kept.push_str(rest);
    kept
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
    fn reads_glibc_scripts() {
        let libc = "/* GNU ld script\n   Use the shared library.  */\n\
            OUTPUT_FORMAT(elf64-x86-64)\n\
            GROUP ( /lib/x86_64-linux-gnu/libc.so.6 /usr/lib/x86_64-linux-gnu/libc_nonshared.a  \
            AS_NEEDED ( /lib64/ld-linux-x86-64.so.2 ) )\n";
        assert_eq!(
            linker_script_inputs(libc),
            Some(vec![String::from("/lib/x86_64-linux-gnu/libc.so.6")])
        );
        let libm =
            "GROUP ( /lib/x86_64-linux-gnu/libm.so.6  AS_NEEDED ( /x/libmvec.so.1 ) /y/z.so )";
        assert_eq!(
            linker_script_inputs(libm),
            Some(vec![
                String::from("/lib/x86_64-linux-gnu/libm.so.6"),
                String::from("/y/z.so")
            ])
        );
        assert_eq!(linker_script_inputs("\x7fELF\x02\x01"), None);
        assert_eq!(linker_script_inputs("/* unterminated"), None);
    }

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
