//! The page writer for packed modules ([`modload::Loader::packed`]): bytes
//! reach code and read-only pages through a temporary read-write, never
//! executable alias of their frames, which is gone again when the write
//! returns, in the spirit of Linux's `text_poke`. The pages themselves never
//! change permissions while modules run from them.

use core::ops::Range;

use modload::{PageWriter, Permissions, ProtectionError, VirtAddr};
use spin::Mutex;

use crate::arch;

const PAGE: u64 = 4096;

/// The scratch window: the last 1 MiB of the architecture's alias window,
/// which the scenario's own alias (module D, at the window's start) never
/// reaches.
fn scratch() -> Range<u64> {
    let window = arch::alias_window();
    window.end.saturating_sub(1 << 20).max(window.start)..window.end
}

/// Writes through the scratch window, one write at a time.
pub struct AliasWriter {
    busy: Mutex<()>,
}

/// The kernel's writer for packed modules.
pub static WRITER: AliasWriter = AliasWriter {
    busy: Mutex::new(()),
};

/// The error codes this writer reports.
mod codes {
    /// The range is larger than the scratch window.
    pub const TOO_LARGE: i32 = 1;
    /// The alias could not be mapped.
    pub const NOT_MAPPED: i32 = 2;
}

impl PageWriter for AliasWriter {
    unsafe fn write(&self, target: VirtAddr, bytes: &[u8]) -> Result<(), ProtectionError> {
        let _only_writer = self.busy.lock();
        let start = target.as_u64();
        let first_page = start & !(PAGE - 1);
        let end = start
            .checked_add(bytes.len() as u64)
            .ok_or(ProtectionError {
                code: codes::TOO_LARGE,
            })?;
        let span = end.next_multiple_of(PAGE).saturating_sub(first_page);
        let window = scratch();
        if span > window.end - window.start {
            return Err(ProtectionError {
                code: codes::TOO_LARGE,
            });
        }
        arch::map_alias(window.start, first_page, span, Permissions::READ_WRITE).map_err(
            |why| {
                println!("packed write: {why}");
                ProtectionError {
                    code: codes::NOT_MAPPED,
                }
            },
        )?;
        let destination = (window.start + (start - first_page)) as *mut u8;
        // SAFETY: `[destination, destination + len)` lies in the scratch
        // alias just mapped read-write over the frames of
        // `[target, target + len)`, and nothing else uses the window (the
        // lock is held). The caller owns the target range and nothing runs
        // from it or refers to it while this lasts, so writing its frames
        // through the alias races with nothing. `bytes` is ordinary memory,
        // not in the window, so the ranges do not overlap.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), destination, bytes.len()) };
        // Gone before returning, with its TLB entries: no writable view of
        // code outlives the write. The caller then synchronises the
        // instruction cache at `target`.
        arch::unmap_alias(window.start, span);
        Ok(())
    }
}
