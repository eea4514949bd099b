//! Fault reports, shared by both machines' exception handlers:
//!
//! ```text
//! Write fault at 0x40801000 (g.o: g_banner+0x0 in .rodata), pc g_poke+0x8 [g.o]
//!   #1 g_run+0x14 [g.o]
//!   #2 modload_probe_access+0x4c [kernel]
//! ```
//!
//! Kernel addresses are named from the kernel's own table ([`crate::ksyms`]),
//! module addresses through the namespace's `try_locate`; the backtrace
//! follows frame records (saved frame pointer, then return address: `rbp` on
//! x86-64, `x29` on AArch64) on the kernel's stacks only. Nothing here
//! allocates, takes a lock it could wait for, or reads memory outside those
//! stacks, so a handler can call it whatever the kernel was doing.

use core::fmt::{self, Write};
use core::ops::Range;
use core::sync::atomic::{AtomicBool, Ordering};

use modload::{Location, VirtAddr};

use crate::{arch, ksyms};

/// The deepest backtrace a report shows.
pub const MAX_FRAMES: usize = 16;

/// What a handler knows about a fault.
pub struct Fault<'a> {
    /// The headline's start, e.g. `"Write fault"`.
    pub what: &'a dyn fmt::Display,
    /// The accessed address, for faults that have one.
    pub address: Option<u64>,
    /// The faulting instruction.
    pub pc: u64,
    /// The frame pointer at the fault: the first frame record.
    pub frame_pointer: u64,
}

/// Text of a fixed capacity: formatting into it allocates nothing, and what
/// does not fit is dropped.
pub struct TextBuffer {
    bytes: [u8; 2048],
    len: usize,
}

impl TextBuffer {
    /// An empty buffer.
    pub const fn new() -> Self {
        Self {
            bytes: [0; 2048],
            len: 0,
        }
    }

    /// The text so far.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
}

impl Write for TextBuffer {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let free = self.bytes.len() - self.len;
        let taken = text.len().min(free);
        if let Some(destination) = self.bytes.get_mut(self.len..self.len + taken) {
            destination.copy_from_slice(text.as_bytes().get(..taken).unwrap_or_default());
            self.len += taken;
        }
        Ok(())
    }
}

/// The last report a probe asked to keep, for the scenario to check.
static KEPT: spin::Mutex<TextBuffer> = spin::Mutex::new(TextBuffer::new());
/// Set while a report is written: a fault inside one is not reported again.
static REPORTING: AtomicBool = AtomicBool::new(false);
/// Set while a probe from [`probe_reporting`] runs: its fault is reported
/// and kept.
static PROBE_REPORTS: AtomicBool = AtomicBool::new(false);

/// [`arch::probe`], and a fault is reported on the console as an unexpected
/// one would be (symbolized, with a backtrace) and kept for [`take_kept`].
pub fn probe_reporting(access: arch::Access, address: u64) -> Option<arch::Fault> {
    PROBE_REPORTS.store(true, Ordering::SeqCst);
    let fault = arch::probe(access, address);
    PROBE_REPORTS.store(false, Ordering::SeqCst);
    fault
}

/// Called by the handlers with a probe's fault: reported and kept if the
/// probe came from [`probe_reporting`].
pub fn probe_fault(fault: &Fault<'_>) {
    if PROBE_REPORTS.load(Ordering::SeqCst) {
        report("", fault, true);
    }
}

/// Prints the report of `fault` on the console, `prefix` first (such as
/// `"UNEXPECTED "`); with `keep`, also keeps it for [`take_kept`].
pub fn report(prefix: &str, fault: &Fault<'_>, keep: bool) {
    if REPORTING.swap(true, Ordering::SeqCst) {
        arch::write_console(b"(a fault while reporting a fault)\n");
        return;
    }
    // Written once (the walk and the lookups are the costly part), shown
    // after the prefix and kept without it.
    let mut text = TextBuffer::new();
    let _ = write_report(&mut text, fault);
    arch::write_console(prefix.as_bytes());
    arch::write_console(text.as_bytes());
    if keep {
        if let Some(mut kept) = KEPT.try_lock() {
            *kept = text;
        }
    }
    REPORTING.store(false, Ordering::SeqCst);
}

/// The report kept by the last [`report`] with `keep`, if any, and forgets it.
pub fn take_kept() -> Option<alloc::string::String> {
    let mut kept = KEPT.lock();
    let text = core::str::from_utf8(kept.as_bytes()).ok()?.into();
    *kept = TextBuffer::new();
    Some(text).filter(|text: &alloc::string::String| !text.is_empty())
}

/// Writes the report: the headline, then one line per frame.
pub fn write_report(out: &mut dyn Write, fault: &Fault<'_>) -> fmt::Result {
    write!(out, "{}", fault.what)?;
    if let Some(address) = fault.address {
        write!(out, " at {address:#x}")?;
        write_data(out, address)?;
    }
    out.write_str(", pc ")?;
    write_code(out, fault.pc, false)?;
    out.write_str("\n")?;
    let mut result = Ok(());
    walk_frames(
        fault.frame_pointer,
        &arch::stacks(),
        |depth, return_address| {
            result = result
                .and_then(|()| write!(out, "  #{depth} "))
                .and_then(|()| write_code(out, return_address, true))
                .and_then(|()| out.write_str("\n"));
        },
    );
    result
}

/// Calls `visit(depth, return address)` for each frame record from
/// `frame_pointer` on, depth from 1, at most [`MAX_FRAMES`]. It stops at a
/// null or misaligned frame pointer, one whose record is not inside one of
/// `stacks`, one not above the previous (stacks grow down, so callers' frames
/// lie higher), and a null return address; it reads nothing else.
pub fn walk_frames(frame_pointer: u64, stacks: &[Range<u64>], mut visit: impl FnMut(usize, u64)) {
    let mut frame = frame_pointer;
    for depth in 1..=MAX_FRAMES {
        let record_end = frame.checked_add(16);
        let on_a_stack = stacks
            .iter()
            .any(|stack| stack.start <= frame && record_end.is_some_and(|end| end <= stack.end));
        if frame == 0 || frame % 8 != 0 || !on_a_stack {
            return;
        }
        // SAFETY: the 16-byte record lies inside one of the kernel's stacks,
        // which stay mapped read-write for the whole run; volatile, because
        // the record was written by code the compiler does not see here.
        let (caller_frame, return_address) = unsafe {
            (
                core::ptr::read_volatile(frame as *const u64),
                core::ptr::read_volatile((frame + 8) as *const u64),
            )
        };
        if return_address == 0 {
            return;
        }
        visit(depth, return_address);
        if caller_frame <= frame {
            return;
        }
        frame = caller_frame;
    }
}

/// Names a code address: `function+0x8 [kernel]`, `g_poke+0x8 [g.o]`, or the
/// bare address. A return address is looked up one byte back, in the call
/// instruction, since a call can be the last instruction of a function; its
/// offset is still that of the return address.
fn write_code(out: &mut dyn Write, address: u64, return_address: bool) -> fmt::Result {
    let back = u64::from(return_address);
    let lookup = address.saturating_sub(back);
    if let Some(symbol) = ksyms::lookup(lookup) {
        return write!(out, "{}+{:#x} [kernel]", symbol.name, symbol.offset + back);
    }
    let located = crate::scenario::NAMESPACE.try_locate(VirtAddr::new(lookup), |location| {
        location.map(|location| write_module_code(out, location, back))
    });
    match located {
        Some(Some(written)) => written,
        Some(None) => write!(out, "{address:#x}"),
        None => write!(out, "{address:#x} (module list busy)"),
    }
}

fn write_module_code(out: &mut dyn Write, location: &Location<'_>, back: u64) -> fmt::Result {
    match &location.symbol {
        Some(symbol) => write!(
            out,
            "{}+{:#x} [{}]",
            symbol.name,
            symbol.offset + back,
            location.module_name
        ),
        None => write!(
            out,
            "{}+{:#x} [{}]",
            location.section,
            location.section_offset + back,
            location.module_name
        ),
    }
}

/// Describes an accessed address, if anything is known there:
/// ` (g.o: g_banner+0x0 in .rodata)`, ` (g.o: .bss+0x10)`, ` (kernel: name+0x4)`.
fn write_data(out: &mut dyn Write, address: u64) -> fmt::Result {
    if let Some(symbol) = ksyms::lookup(address) {
        return write!(out, " (kernel: {}+{:#x})", symbol.name, symbol.offset);
    }
    let located = crate::scenario::NAMESPACE.try_locate(VirtAddr::new(address), |location| {
        location.map(|location| match &location.symbol {
            Some(symbol) => write!(
                out,
                " ({}: {}+{:#x} in {})",
                location.module_name, symbol.name, symbol.offset, location.section
            ),
            None => write!(
                out,
                " ({}: {}+{:#x})",
                location.module_name, location.section, location.section_offset
            ),
        })
    });
    match located {
        Some(Some(written)) => written,
        Some(None) => Ok(()),
        None => out.write_str(" (module list busy)"),
    }
}
