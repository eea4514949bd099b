//! Step 13: a fault in a module is reported.

use alloc::format;
use alloc::vec::Vec;

use modload::Module;

use super::{expect, function, load, near_loader, Int, State, Step, NAMESPACE, NEAR};
use crate::arch::{self, Access};
use crate::fault_report;

/// G's `g_run` calls `g_poke`, which writes to G's read-only `g_banner`. The
/// kernel calls `g_run` through a probe, so the fault returns here: the
/// handler prints the report (the accessed address and the pc symbolized, a
/// frame-pointer backtrace through `g_run` into the kernel), and this step
/// checks the kept report against G's own symbols, that G still answers, and
/// that unloading G gives its memory back.
#[inline(never)]
pub(super) fn step13(state: &State) -> Step {
    let g = Some(load(near_loader(), "g.o")?);
    let symbols = g.as_ref().map(Module::symbols).unwrap_or_default();
    let find = |name: &str| {
        symbols
            .iter()
            .find(|symbol| &*symbol.name == name)
            .map(|symbol| (symbol.address.as_u64(), symbol.size))
            .ok_or_else(|| format!("G lists no symbol {name}"))
    };
    let (poke, poke_size) = find("g_poke")?;
    let (run, run_size) = find("g_run")?;
    let (banner, _) = find("g_banner")?;
    let _ = fault_report::take_kept();
    let fault = crate::fault_report::probe_reporting(Access::Execute, run)
        .ok_or("g_run returned without a fault")?;
    let report = fault_report::take_kept().ok_or("the handler kept no report")?;
    expect("faulting address", fault.address, banner)?;
    if !(poke..poke + poke_size).contains(&fault.pc) {
        return Err(format!(
            "pc {:#x} is not in g_poke ({poke:#x}, {poke_size} bytes)",
            fault.pc
        ));
    }
    let offset = fault.pc - poke;
    let mut lines = report.lines();
    expect(
        "report headline",
        lines.next(),
        Some(&*format!(
            "Write fault at {banner:#x} (g.o: g_banner+0x0 in .rodata), pc g_poke+{offset:#x} [g.o]"
        )),
    )?;
    let frames: Vec<&str> = lines.collect();
    let caller = frames.first().copied().unwrap_or_default();
    let caller_offset = caller
        .strip_prefix("  #1 g_run+0x")
        .and_then(|rest| rest.strip_suffix(" [g.o]"))
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .ok_or_else(|| format!("first frame {caller:?}, want `  #1 g_run+0x.. [g.o]`"))?;
    if caller_offset == 0 || caller_offset > run_size {
        return Err(format!(
            "return address g_run+{caller_offset:#x} is not in g_run ({run_size} bytes)"
        ));
    }
    if !frames
        .iter()
        .any(|frame| frame.contains("::step13+0x") && frame.ends_with(" [kernel]"))
    {
        return Err(format!("no kernel frame in step13 among {frames:?}"));
    }
    expect(
        "g_value after the fault",
        function::<Int>(&g, "g_value")?(),
        13,
    )?;
    // SAFETY: g_banner is 16 bytes of G's rodata, still mapped (G is loaded).
    let banner_bytes = unsafe { core::slice::from_raw_parts(banner as *const u8, 9) };
    expect(
        "g_banner after the refused write",
        banner_bytes,
        b"read-only",
    )?;
    g.ok_or("G is not loaded")?
        .unload()
        .map_err(|refused| format!("G: {:?}", refused.error))?;
    expect("near region usage", NEAR.usage(), state.near_baseline)?;
    expect("modules left", NAMESPACE.modules().len(), 0)?;
    Ok(format!(
        "reported at g_poke+{offset:#x} [g.o], called from g_run+{caller_offset:#x}, {} frames; G unloaded, usage back at boot value",
        frames.len()
    ))
}
