//! A check of this layer on its own: page permissions, faults, the handler's
//! resumption and aliases, on two scratch pages of `.bss`. It leaves the pages
//! as it found them (read-write, no alias), so it can run at any time.

use aarch64_cpu::registers::{Readable, SCTLR_EL1};
use modload::{Permissions, VirtAddr};
use modload_platform::aarch64::PAGE_SIZE;

use super::exceptions::describe;
use super::{probe, uart};
use crate::arch::{Access, Fault};

/// Two pages of `.bss`, mapped read-write like the rest of it.
#[repr(C, align(4096))]
struct Scratch([u8; 2 * PAGE_SIZE as usize]);

static mut SCRATCH: Scratch = Scratch([0; 2 * PAGE_SIZE as usize]);

/// `ret`: what the execute probes run when a page is executable.
const RET: u32 = 0xd65f_03c0;

/// `ESR_EL1.ISS.WnR`: the faulting access was a write.
const WRITE_NOT_READ: u64 = 1 << 6;

/// Runs every check, printing one line each; true if all passed.
pub fn self_test() -> bool {
    let code = core::ptr::addr_of_mut!(SCRATCH) as u64;
    let data = code + PAGE_SIZE;
    let window = super::alias_window();
    let protection = super::protection();
    let mut passed = true;
    let mut check = |what: &str, outcome: Result<(), &'static str>| match outcome {
        Ok(()) => uart::print(format_args!("self-test: ok: {what}\n")),
        Err(why) => {
            passed = false;
            uart::print(format_args!("self-test: FAIL: {what}: {why}\n"));
        }
    };
    let protect = |start: u64, len: u64, permissions| {
        protection
            .protect(VirtAddr::new(start), len, permissions)
            .map_err(|_| "protect refused")
    };

    check("SCTLR_EL1: MMU, caches and WXN on", {
        let on = SCTLR_EL1.matches_all(
            SCTLR_EL1::M::Enable
                + SCTLR_EL1::C::Cacheable
                + SCTLR_EL1::I::Cacheable
                + SCTLR_EL1::WXN::Enable,
        );
        if on {
            Ok(())
        } else {
            Err("a bit is clear")
        }
    });
    // The kernel image's own W^X: text is not writable, data and the stack
    // are not executable. (A local's address is on the stack.)
    let text = self_test as *const () as u64;
    let stack_byte = 0u8;
    let stack = core::ptr::addr_of!(stack_byte) as u64;
    check(
        "write to kernel text faults",
        expect_fault(Access::Write, text, is_permission_fault, true),
    );
    check(
        "execute kernel .bss faults",
        expect_fault(Access::Execute, code, is_permission_fault, false),
    );
    check(
        "execute the kernel stack faults",
        expect_fault(Access::Execute, stack, is_permission_fault, false),
    );
    for page in [code, data] {
        // SAFETY: the scratch pages belong to this function, are mapped
        // read-write now and the store is aligned; nothing else reads them.
        unsafe { core::ptr::write_volatile(page as *mut u32, RET) };
    }
    check(
        "make a page r-x",
        protect(code, PAGE_SIZE, Permissions::CODE).map(|()| {
            protection.sync_instruction_cache(VirtAddr::new(code), 4);
        }),
    );
    check(
        "execute `ret` on the r-x page",
        no_fault(Access::Execute, code),
    );
    check(
        "write to the r-x page faults",
        expect_fault(Access::Write, code, is_permission_fault, true),
    );
    check(
        "execute the rw- page faults",
        expect_fault(Access::Execute, data, is_permission_fault, false),
    );
    check("read and write the rw- page", {
        no_fault(Access::Read, data).and(no_fault(Access::Write, data))
    });
    check(
        "make the rw- page r--",
        protect(data, PAGE_SIZE, Permissions::READ_ONLY),
    );
    check(
        "write to the r-- page faults",
        expect_fault(Access::Write, data, is_permission_fault, true),
    );
    check(
        "read the r-- page after the fault",
        no_fault(Access::Read, data),
    );
    check(
        "read an unmapped page faults",
        expect_fault(Access::Read, window.start, is_translation_fault, false),
    );
    check(
        "protect refuses W+X",
        match protect(code, PAGE_SIZE, Permissions::all()) {
            Err(_) => Ok(()),
            Ok(()) => Err("W+X accepted"),
        },
    );
    check(
        "map_alias refuses W+X",
        match super::map_alias(window.start, code, PAGE_SIZE, Permissions::all()) {
            Err(_) => Ok(()),
            Ok(()) => Err("W+X accepted"),
        },
    );
    check(
        "map_alias refuses addresses outside the window",
        match super::map_alias(window.end, code, PAGE_SIZE, Permissions::CODE) {
            Err(_) => Ok(()),
            Ok(()) => Err("accepted"),
        },
    );
    check(
        "alias the r-x page and run it there",
        super::map_alias(window.start, code, PAGE_SIZE, Permissions::CODE)
            .and_then(|()| no_fault(Access::Execute, window.start)),
    );
    check(
        "write to the r-x alias faults",
        expect_fault(Access::Write, window.start, is_permission_fault, true),
    );
    super::unmap_alias(window.start, PAGE_SIZE);
    check(
        "the alias is gone after unmap_alias",
        expect_fault(Access::Execute, window.start, is_translation_fault, false),
    );
    check(
        "both pages read-write again",
        protect(code, 2 * PAGE_SIZE, Permissions::READ_WRITE)
            .and_then(|()| no_fault(Access::Write, code))
            .and_then(|()| no_fault(Access::Write, data)),
    );
    passed
}

/// The access must complete.
fn no_fault(access: Access, address: u64) -> Result<(), &'static str> {
    match probe(access, address) {
        None => Ok(()),
        Some(fault) => {
            print_fault(&fault);
            Err("faulted")
        }
    }
}

/// The access must fault at `address` with a syndrome `kind` accepts, marked
/// as a write or not.
fn expect_fault(
    access: Access,
    address: u64,
    kind: fn(u64) -> bool,
    write: bool,
) -> Result<(), &'static str> {
    let Some(fault) = probe(access, address) else {
        return Err("did not fault");
    };
    print_fault(&fault);
    if fault.address != address {
        return Err("wrong fault address");
    }
    if !kind(fault.syndrome) {
        return Err("wrong kind of fault");
    }
    // WnR is meaningful for data aborts only (EC 0x25).
    let data_abort = (fault.syndrome >> 26) & 0x3f == 0x25;
    if data_abort && (fault.syndrome & WRITE_NOT_READ != 0) != write {
        return Err("wrong access direction");
    }
    Ok(())
}

fn print_fault(fault: &Fault) {
    uart::print(format_args!(
        "self-test:   {:?} at {:#x}: ESR {:#x}, {}\n",
        fault.access,
        fault.address,
        fault.syndrome,
        describe(fault.syndrome)
    ));
}

/// Whether `esr` reports a permission fault (data or instruction abort at the
/// current EL, fault status 0b0011xx), as W^X violations do.
pub fn is_permission_fault(esr: u64) -> bool {
    matches!((esr >> 26) & 0x3f, 0x21 | 0x25) && (esr & 0x3c) == 0b00_1100
}

/// Whether `esr` reports a translation fault (nothing mapped there).
pub fn is_translation_fault(esr: u64) -> bool {
    matches!((esr >> 26) & 0x3f, 0x21 | 0x25) && (esr & 0x3c) == 0b00_0100
}
