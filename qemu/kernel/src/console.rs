//! `print!`/`println!` over the architecture's serial console.

use core::fmt::{self, Write};

use spin::Mutex;

struct Console;

impl Write for Console {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        crate::arch::write_console(text.as_bytes());
        Ok(())
    }
}

/// Serialises whole lines, so output from modules and the kernel never interleaves.
static CONSOLE: Mutex<Console> = Mutex::new(Console);

pub fn print(args: fmt::Arguments<'_>) {
    // A failed write has nowhere to be reported; the console never fails.
    let _ = CONSOLE.lock().write_fmt(args);
}

/// Prints without taking the console's lock, for fault handlers (a fault
/// may come while it is held): lines may interleave, nothing waits.
pub fn print_unlocked(args: fmt::Arguments<'_>) {
    let _ = Console.write_fmt(args);
}

#[allow(unused_macros)]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::print(format_args!($($arg)*)) };
}

macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::console::print(format_args!("{}\n", format_args!($($arg)*))) };
}
