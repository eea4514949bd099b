//! With the `gdb` feature, tells a GDB attached through QEMU's gdbstub about
//! each module the scenario loads, through GDB's JIT interface
//! (`modload_platform::gdb_jit`): GDB then sets breakpoints in modules by
//! name and shows their source lines. `cargo xtask debug` builds the kernel
//! with it. Without the feature, these calls do nothing.
//!
//! A module's registration is dropped when it unloads, through the
//! namespace's unload hook, before another module can take its memory.

use modload::{Module, Namespace};

#[cfg(feature = "gdb")]
mod enabled {
    use modload::{Module, ModuleId, Namespace};
    use modload_platform::gdb_jit::ModuleRegistrations;

    /// The registered debug objects, by the module they describe.
    static REGISTRATIONS: ModuleRegistrations = ModuleRegistrations::new();

    pub fn install(namespace: &Namespace) {
        namespace.set_unload_hook(Some(unloaded));
    }

    fn unloaded(gone: ModuleId) {
        REGISTRATIONS.unloaded(gone);
    }

    pub fn loaded(module: &Module<'_>, bytes: &[u8]) {
        if let Err(error) = REGISTRATIONS.loaded(module, 0, bytes) {
            println!(
                "gdb: no debug object for {}: {error}",
                module.name().unwrap_or_default()
            );
        }
    }
}

/// Has `namespace` tell the debugger about each module that unloads.
#[cfg_attr(not(feature = "gdb"), allow(unused_variables))]
pub fn install(namespace: &Namespace) {
    #[cfg(feature = "gdb")]
    enabled::install(namespace);
}

/// Registers `module`, loaded from `bytes`, with an attached debugger.
#[cfg_attr(not(feature = "gdb"), allow(unused_variables))]
pub fn loaded(module: &Module<'_>, bytes: &[u8]) {
    #[cfg(feature = "gdb")]
    enabled::loaded(module, bytes);
}
