//! One module's memory and its protection state. It makes sure protected pages
//! become writable again before the region reuses them.

use crate::addr::VirtAddr;
use crate::error::ErrorKind;
use crate::protection::{MemoryProtection, Permissions};
use crate::region::Reservation;

pub(crate) struct ModuleMemory {
    reservation: Option<Reservation>,
    protection: Option<&'static dyn MemoryProtection>,
}

impl ModuleMemory {
    pub fn new(reservation: Reservation) -> Self {
        Self {
            reservation: Some(reservation),
            protection: None,
        }
    }

    pub fn start(&self) -> VirtAddr {
        self.reservation
            .as_ref()
            .map_or(VirtAddr::new(0), Reservation::start)
    }

    pub fn len(&self) -> u64 {
        self.reservation.as_ref().map_or(0, Reservation::len)
    }

    /// Writable access, which exists only until the pages are protected.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        match (&mut self.reservation, self.protection) {
            (Some(reservation), None) => reservation.bytes_mut(),
            _ => &mut [],
        }
    }

    pub fn bytes(&self) -> &[u8] {
        self.reservation.as_ref().map_or(&[], Reservation::bytes)
    }

    /// Applies `permissions` to each `(offset, len)` range. On failure, puts every
    /// page back to read-write and reports the platform's error.
    pub fn protect(
        &mut self,
        protection: &'static dyn MemoryProtection,
        ranges: &[(u64, u64, Permissions)],
    ) -> Result<(), ErrorKind> {
        let start = self.start();
        for &(offset, len, permissions) in ranges.iter().filter(|(_, len, _)| *len > 0) {
            debug_assert!(!permissions.is_writable_and_executable());
            let at = start.checked_add(offset).unwrap_or(start);
            if let Err(error) = protection.protect(at, len, permissions) {
                // Leave nothing half-protected: the region may reuse these pages.
                if protection
                    .protect(start, self.len(), Permissions::READ_WRITE)
                    .is_err()
                {
                    self.protection = Some(protection);
                }
                return Err(ErrorKind::Protection {
                    start: at,
                    len,
                    code: error.code,
                });
            }
        }
        self.protection = Some(protection);
        Ok(())
    }
}

impl Drop for ModuleMemory {
    fn drop(&mut self) {
        let Some(protection) = self.protection else {
            return;
        };
        if protection
            .protect(self.start(), self.len(), Permissions::READ_WRITE)
            .is_err()
        {
            // The allocator would write its free-list node into a read-only page.
            // Losing the block is better than faulting, so it stays reserved.
            core::mem::forget(self.reservation.take());
        }
    }
}
