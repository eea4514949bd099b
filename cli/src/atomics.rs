//! gcc's AArch64 outline atomics for modules.
//!
//! On AArch64 Linux, gcc (10 and later, `-moutline-atomics` by default) and
//! clang compile each atomic read-modify-write of a C program into a call to
//! a helper such as `__aarch64_cas4_acq` or `__aarch64_ldadd8_acq_rel`, which
//! uses the LSE instructions where the CPU has them and an exclusive
//! load/store loop where it does not. The helpers live in `libgcc.a` only:
//! every executable and shared library links its own hidden copy, so no
//! `dlsym` finds them, and a module that uses atomics needs the loader to
//! lend it some.
//!
//! This tool lends it libgcc's own: the cross build is linked by gcc, so the
//! whole set (`cas` on 1, 2, 4, 8 and 16 bytes, `swp`, `ldadd`, `ldclr`,
//! `ldeor` and `ldset` on 1, 2, 4 and 8, each in the orders `relax`, `acq`,
//! `rel`, `acq_rel` and `sync`: 125 functions) is taken from `libgcc.a`, by
//! naming every one of them below. Modules then run exactly the code a
//! program linked by gcc runs, with its ABI (`(expected, desired, ptr)` for
//! `cas`, `(value, ptr)` for the others, the old value returned; register
//! pairs for 16 bytes), its memory orders and its run-time choice of LSE
//! (made by libgcc's constructor, which runs in this process too).
//! Reimplementing them was not simpler: Rust's own atomics on this target
//! compile to calls to these very helpers, so a Rust version would need
//! 125 hand-written assembly functions; and Rust's `compiler_builtins` copy
//! lacks the `_sync` variants, which gcc emits for the `__sync` builtins.
//!
//! `libgcc.a` is named ahead of the Rust standard library on the link line
//! (the `#[link]` below), so the whole process, the tool's own atomics
//! included, uses the one implementation.

use modload::VirtAddr;

/// Every helper: its name, and its address in this process.
type Helper = (&'static str, unsafe extern "C" fn());

/// Declares the helpers (with a dummy signature: they are never called from
/// Rust, only their addresses are taken) and lists them by name.
#[cfg(all(target_arch = "aarch64", target_os = "linux"))]
macro_rules! outline_atomics {
    ($($name:ident)*) => {
        #[link(name = "gcc", kind = "static")]
        extern "C" {
            $(fn $name();)*
        }

        const HELPERS: &[Helper] = &[$((stringify!($name), $name as unsafe extern "C" fn())),*];
    };
}

#[cfg(all(target_arch = "aarch64", target_os = "linux"))]
outline_atomics! {
    __aarch64_cas1_relax __aarch64_cas1_acq __aarch64_cas1_rel __aarch64_cas1_acq_rel __aarch64_cas1_sync
    __aarch64_cas2_relax __aarch64_cas2_acq __aarch64_cas2_rel __aarch64_cas2_acq_rel __aarch64_cas2_sync
    __aarch64_cas4_relax __aarch64_cas4_acq __aarch64_cas4_rel __aarch64_cas4_acq_rel __aarch64_cas4_sync
    __aarch64_cas8_relax __aarch64_cas8_acq __aarch64_cas8_rel __aarch64_cas8_acq_rel __aarch64_cas8_sync
    __aarch64_cas16_relax __aarch64_cas16_acq __aarch64_cas16_rel __aarch64_cas16_acq_rel __aarch64_cas16_sync
    __aarch64_swp1_relax __aarch64_swp1_acq __aarch64_swp1_rel __aarch64_swp1_acq_rel __aarch64_swp1_sync
    __aarch64_swp2_relax __aarch64_swp2_acq __aarch64_swp2_rel __aarch64_swp2_acq_rel __aarch64_swp2_sync
    __aarch64_swp4_relax __aarch64_swp4_acq __aarch64_swp4_rel __aarch64_swp4_acq_rel __aarch64_swp4_sync
    __aarch64_swp8_relax __aarch64_swp8_acq __aarch64_swp8_rel __aarch64_swp8_acq_rel __aarch64_swp8_sync
    __aarch64_ldadd1_relax __aarch64_ldadd1_acq __aarch64_ldadd1_rel __aarch64_ldadd1_acq_rel __aarch64_ldadd1_sync
    __aarch64_ldadd2_relax __aarch64_ldadd2_acq __aarch64_ldadd2_rel __aarch64_ldadd2_acq_rel __aarch64_ldadd2_sync
    __aarch64_ldadd4_relax __aarch64_ldadd4_acq __aarch64_ldadd4_rel __aarch64_ldadd4_acq_rel __aarch64_ldadd4_sync
    __aarch64_ldadd8_relax __aarch64_ldadd8_acq __aarch64_ldadd8_rel __aarch64_ldadd8_acq_rel __aarch64_ldadd8_sync
    __aarch64_ldclr1_relax __aarch64_ldclr1_acq __aarch64_ldclr1_rel __aarch64_ldclr1_acq_rel __aarch64_ldclr1_sync
    __aarch64_ldclr2_relax __aarch64_ldclr2_acq __aarch64_ldclr2_rel __aarch64_ldclr2_acq_rel __aarch64_ldclr2_sync
    __aarch64_ldclr4_relax __aarch64_ldclr4_acq __aarch64_ldclr4_rel __aarch64_ldclr4_acq_rel __aarch64_ldclr4_sync
    __aarch64_ldclr8_relax __aarch64_ldclr8_acq __aarch64_ldclr8_rel __aarch64_ldclr8_acq_rel __aarch64_ldclr8_sync
    __aarch64_ldeor1_relax __aarch64_ldeor1_acq __aarch64_ldeor1_rel __aarch64_ldeor1_acq_rel __aarch64_ldeor1_sync
    __aarch64_ldeor2_relax __aarch64_ldeor2_acq __aarch64_ldeor2_rel __aarch64_ldeor2_acq_rel __aarch64_ldeor2_sync
    __aarch64_ldeor4_relax __aarch64_ldeor4_acq __aarch64_ldeor4_rel __aarch64_ldeor4_acq_rel __aarch64_ldeor4_sync
    __aarch64_ldeor8_relax __aarch64_ldeor8_acq __aarch64_ldeor8_rel __aarch64_ldeor8_acq_rel __aarch64_ldeor8_sync
    __aarch64_ldset1_relax __aarch64_ldset1_acq __aarch64_ldset1_rel __aarch64_ldset1_acq_rel __aarch64_ldset1_sync
    __aarch64_ldset2_relax __aarch64_ldset2_acq __aarch64_ldset2_rel __aarch64_ldset2_acq_rel __aarch64_ldset2_sync
    __aarch64_ldset4_relax __aarch64_ldset4_acq __aarch64_ldset4_rel __aarch64_ldset4_acq_rel __aarch64_ldset4_sync
    __aarch64_ldset8_relax __aarch64_ldset8_acq __aarch64_ldset8_rel __aarch64_ldset8_acq_rel __aarch64_ldset8_sync
}

/// Other hosts run no AArch64 code, so they lend no helpers.
#[cfg(not(all(target_arch = "aarch64", target_os = "linux")))]
const HELPERS: &[Helper] = &[];

/// The whole set, so that a name dropped from the list above fails the build.
#[cfg(all(target_arch = "aarch64", target_os = "linux"))]
const _: () = assert!(HELPERS.len() == 125);

/// The address of the outline-atomic helper `name`, if it is one.
pub fn resolve(name: &str) -> Option<VirtAddr> {
    if !name.starts_with("__aarch64_") {
        return None;
    }
    HELPERS
        .iter()
        .find(|(helper, _)| *helper == name)
        .map(|(_, function)| VirtAddr::new(*function as usize as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lends_helpers_only_on_aarch64_linux() {
        let found = resolve("__aarch64_cas16_acq_rel");
        assert_eq!(
            found.is_some(),
            cfg!(all(target_arch = "aarch64", target_os = "linux"))
        );
        assert_eq!(resolve("__aarch64_cas16_nosuchorder"), None);
        assert_eq!(resolve("printf"), None);
    }
}
