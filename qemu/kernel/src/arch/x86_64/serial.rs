//! COM1 (16550 UART at port 0x3f8), polled.

use x86_64::instructions::port::Port;

const COM1: u16 = 0x3f8;

/// 115200 baud, 8N1, FIFOs on, interrupts off.
pub fn init() {
    for (offset, value) in [
        (1, 0x00),
        (3, 0x80),
        (0, 0x01),
        (1, 0x00),
        (3, 0x03),
        (2, 0xc7),
        (4, 0x0b),
    ] {
        let mut port: Port<u8> = Port::new(COM1 + offset);
        // SAFETY: COM1's registers exist on every PC and QEMU machine; these
        // writes only configure the UART.
        unsafe { port.write(value) };
    }
}

/// Writes bytes, waiting for the transmit register each time.
pub fn write(bytes: &[u8]) {
    let mut status: Port<u8> = Port::new(COM1 + 5);
    let mut data: Port<u8> = Port::new(COM1);
    for &byte in bytes {
        // SAFETY: reading the line status register has no side effects.
        while unsafe { status.read() } & 0x20 == 0 {
            core::hint::spin_loop();
        }
        // SAFETY: writing the data register sends one byte.
        unsafe { data.write(byte) };
    }
}
