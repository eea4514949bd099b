//! GDB support for `modload run`: each loaded module's debug object (its ELF
//! file with every loaded section's address set to where it was placed) is
//! registered through GDB's JIT interface (`modload_platform::gdb_jit`), so
//! GDB breaks in modules by name, pending breakpoints included, and shows
//! their source lines. Unloading a module unregisters it.
//!
//! It costs nothing unless asked for: registration is on with `--gdb` (for a
//! debugger that attaches later, `gdb -p`) or when a debugger already traces
//! the process as it starts (`gdb --args modload run ...`).

use std::sync::atomic::{AtomicBool, Ordering};

use modload::{Module, ModuleId, Namespace};
use modload_platform::gdb_jit::ModuleRegistrations;

/// Whether modules are registered in this run.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// The debug objects registered, by the module they describe.
static REGISTRATIONS: ModuleRegistrations = ModuleRegistrations::new();

/// Turns registration on if `requested` (`--gdb`) or a debugger traces this
/// process now, and has `namespace` report unloads. Call once, before any
/// module loads.
pub fn enable(namespace: &Namespace, requested: bool) {
    if requested || traced() {
        ENABLED.store(true, Ordering::Relaxed);
        namespace.set_unload_hook(Some(unloaded));
    }
}

/// Whether a debugger traces this process: `TracerPid` in
/// `/proc/self/status` is not 0.
fn traced() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("TracerPid:"))
        .is_some_and(|pid| pid.trim() != "0")
}

/// Registers `module`'s debug object, made from the bytes of the objects it
/// was loaded from (`members`: one, or a module set's several), when
/// registration is on. A module without one is reported and runs anyway:
/// only the debugger misses it.
pub fn loaded(module: &Module<'_>, members: &[(&str, &[u8])]) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    for (member, (name, bytes)) in members.iter().enumerate() {
        if let Err(error) = REGISTRATIONS.loaded(module, member, bytes) {
            eprintln!("modload: no debug object for GDB from {name}: {error}");
        }
    }
}

/// Unregisters the debug objects of the module `id`, which is unloading
/// (the namespace's unload hook: its memory is not yet free).
fn unloaded(id: ModuleId) {
    REGISTRATIONS.unloaded(id);
}
