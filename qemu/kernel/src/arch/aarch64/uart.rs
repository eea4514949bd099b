//! The PL011 UART of QEMU's `virt` board at 0x0900_0000, polled, without a
//! lock: exception handlers print through it even while other code holds the
//! kernel console's lock.

use core::fmt;

/// The UART's registers (identity-mapped as Device-nGnRE once the MMU is on).
pub const BASE: u64 = 0x0900_0000;

/// Data register.
const DR: u64 = 0x00;
/// Flag register.
const FR: u64 = 0x18;
/// Integer and fractional baud rate divisors.
const IBRD: u64 = 0x24;
const FBRD: u64 = 0x28;
/// Line control.
const LCR_H: u64 = 0x2c;
/// Control.
const CR: u64 = 0x30;
/// Interrupt mask set/clear.
const IMSC: u64 = 0x38;

/// FR: transmit FIFO full.
const FR_TXFF: u32 = 1 << 5;
/// FR: the UART is still sending.
const FR_BUSY: u32 = 1 << 3;
/// LCR_H: 8 data bits, FIFOs on.
const LCR_H_WLEN8_FEN: u32 = (0b11 << 5) | (1 << 4);
/// CR: UART, transmitter and receiver enabled.
const CR_ENABLE: u32 = (1 << 0) | (1 << 8) | (1 << 9);

fn read(offset: u64) -> u32 {
    // SAFETY: BASE + offset is a PL011 register on this board, 4-byte aligned,
    // mapped (or reached with the MMU off) as device memory; reading FR has no
    // side effects and is the only read done.
    unsafe { core::ptr::read_volatile((BASE + offset) as *const u32) }
}

fn write(offset: u64, value: u32) {
    // SAFETY: as in `read`; writes configure the UART or send a byte, and
    // touch no memory the program uses.
    unsafe { core::ptr::write_volatile((BASE + offset) as *mut u32, value) }
}

/// 115200 baud from the board's 24 MHz clock, 8N1, FIFOs on, no interrupts.
pub fn init() {
    write(CR, 0);
    while read(FR) & FR_BUSY != 0 {
        core::hint::spin_loop();
    }
    write(IMSC, 0);
    // 24 MHz / (16 * 115200) = 13.02: integer part 13, fraction 0.02 * 64 = 1.
    write(IBRD, 13);
    write(FBRD, 1);
    write(LCR_H, LCR_H_WLEN8_FEN);
    write(CR, CR_ENABLE);
}

/// Sends `bytes` as they are, waiting whenever the FIFO is full.
pub fn write_bytes(bytes: &[u8]) {
    for &byte in bytes {
        while read(FR) & FR_TXFF != 0 {
            core::hint::spin_loop();
        }
        write(DR, u32::from(byte));
    }
}

/// `core::fmt` over the UART, for the architecture layer's own reports.
pub struct Writer;

impl fmt::Write for Writer {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        write_bytes(text.as_bytes());
        Ok(())
    }
}

/// Prints formatted text without taking any lock.
pub fn print(args: fmt::Arguments<'_>) {
    // The UART never fails to take a byte.
    let _ = fmt::Write::write_fmt(&mut Writer, args);
}
