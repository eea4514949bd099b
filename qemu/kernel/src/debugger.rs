//! With the `gdb` feature, tells a GDB attached through QEMU's gdbstub about
//! each module the scenario loads, through GDB's JIT interface
//! (`modload_platform::gdb_jit`): GDB then sets breakpoints in modules by
//! name and shows their source lines. `cargo xtask debug` builds the kernel
//! with it. Without the feature, these calls do nothing.
//!
//! Modules unload in many places of the scenario, so a module's registration
//! is not dropped at its unload but at the next load after it: until then
//! GDB still shows the unloaded module's symbols.

use modload::{Module, Namespace};

#[cfg(feature = "gdb")]
mod enabled {
    use alloc::vec::Vec;

    use modload::{Module, ModuleId, Namespace};
    use modload_platform::gdb_jit::{self, Registration};

    /// The registered debug objects, by the module they describe.
    static REGISTRATIONS: spin::Mutex<Vec<(ModuleId, Registration)>> = spin::Mutex::new(Vec::new());

    pub fn loaded(namespace: &Namespace, module: &Module<'_>, bytes: &[u8]) {
        let mut registrations = REGISTRATIONS.lock();
        // First what GDB knows of modules that are gone: the new module may
        // have taken their memory.
        registrations.retain(|(id, _)| Module::from_id(namespace, *id).is_some());
        match module.debug_object(bytes) {
            Ok(object) => registrations.push((module.id(), gdb_jit::register(object))),
            Err(error) => println!(
                "gdb: no debug object for {}: {error}",
                module.name().unwrap_or_default()
            ),
        }
    }
}

/// Registers `module`, loaded from `bytes`, with an attached debugger.
#[cfg_attr(not(feature = "gdb"), allow(unused_variables))]
pub fn loaded(namespace: &Namespace, module: &Module<'_>, bytes: &[u8]) {
    #[cfg(feature = "gdb")]
    enabled::loaded(namespace, module, bytes);
}
