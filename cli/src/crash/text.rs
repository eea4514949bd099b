//! The report's text: each line formatted into a fixed buffer and written
//! with `write(2)`, and the signal's name and meaning.

use std::ffi::{c_int, c_void};

/// The longest line of the report, and of `/proc/self/maps` that is read
/// whole: such a line is about 75 bytes before its path; a longer path is
/// cut, which only shortens the name shown.
pub(super) const LINE_BYTES: usize = 512;

/// The signal's name and meaning, with the kernel's reason when it gives one.
pub(super) fn describe_signal(signal: c_int, code: c_int) -> SignalText {
    let (name, meaning) = match signal {
        libc::SIGSEGV => ("SIGSEGV", "invalid memory reference"),
        libc::SIGBUS => ("SIGBUS", "bus error"),
        libc::SIGILL => ("SIGILL", "illegal instruction"),
        libc::SIGFPE => ("SIGFPE", "arithmetic exception"),
        libc::SIGTRAP => ("SIGTRAP", "trace or breakpoint trap"),
        _ => ("signal", "fatal signal"),
    };
    let reason = match (signal, code) {
        (libc::SIGSEGV, 1) => "address not mapped",
        (libc::SIGSEGV, 2) => "no permission for the access",
        (libc::SIGBUS, 1) => "misaligned address",
        (libc::SIGBUS, 2) => "nonexistent physical address",
        (libc::SIGBUS, 3) => "hardware error",
        (libc::SIGILL, 1) => "illegal opcode",
        (libc::SIGILL, 2) => "illegal operand",
        (libc::SIGILL, 3) => "illegal addressing mode",
        (libc::SIGILL, 4) => "illegal trap",
        (libc::SIGILL, 5) => "privileged opcode",
        (libc::SIGFPE, 1) => "integer divide by zero",
        (libc::SIGFPE, 2) => "integer overflow",
        (libc::SIGFPE, 3) => "floating-point divide by zero",
        (libc::SIGFPE, 4) => "floating-point overflow",
        (libc::SIGFPE, 5) => "floating-point underflow",
        (libc::SIGFPE, 6) => "floating-point inexact result",
        (libc::SIGFPE, 7) => "invalid floating-point operation",
        (libc::SIGTRAP, 1) => "breakpoint",
        // x86_64 raises it so for an `int3` (`__builtin_debugtrap()`).
        (libc::SIGTRAP, libc::SI_KERNEL) if cfg!(target_arch = "x86_64") => {
            "int3 breakpoint instruction"
        }
        (libc::SIGTRAP, 2) => "trace",
        _ => "",
    };
    SignalText {
        name,
        meaning,
        reason,
        number: signal,
    }
}

/// `SIGSEGV (invalid memory reference: address not mapped)`.
pub(super) struct SignalText {
    name: &'static str,
    meaning: &'static str,
    reason: &'static str,
    number: c_int,
}

impl std::fmt::Display for SignalText {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.name == "signal" {
            write!(formatter, "signal {}", self.number)?;
        } else {
            write!(formatter, "{}", self.name)?;
        }
        write!(formatter, " ({}", self.meaning)?;
        if !self.reason.is_empty() {
            write!(formatter, ": {}", self.reason)?;
        }
        write!(formatter, ")")
    }
}

/// One line of the report, formatted in place: no allocation. What does
/// not fit is cut.
pub(super) struct Line {
    bytes: [u8; LINE_BYTES],
    len: usize,
}

impl Line {
    pub(super) fn new() -> Self {
        Self {
            bytes: [0; LINE_BYTES],
            len: 0,
        }
    }

    pub(super) fn text(&self) -> &str {
        self.bytes
            .get(..self.len)
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
            .unwrap_or_default()
    }

    /// Writes the line and a newline to stderr, and empties it.
    pub(super) fn emit(&mut self) {
        // The newline always fits: `write_str` keeps the last byte for it.
        if let Some(end) = self.bytes.get_mut(self.len) {
            *end = b'\n';
            self.len += 1;
        }
        let mut written = 0;
        while written < self.len {
            let rest = self.bytes.get(written..self.len).unwrap_or_default();
            // SAFETY: write(2) from our buffer, at most its length.
            let result = unsafe { libc::write(2, rest.as_ptr().cast::<c_void>(), rest.len()) };
            match usize::try_from(result) {
                Ok(count) if count > 0 => written += count,
                _ if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) => {}
                _ => break,
            }
        }
        self.len = 0;
    }
}

impl std::fmt::Write for Line {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        let room = (LINE_BYTES - 1).saturating_sub(self.len);
        let take = text.len().min(room);
        if let Some(slots) = self.bytes.get_mut(self.len..self.len + take) {
            if let Some(source) = text.as_bytes().get(..take) {
                slots.copy_from_slice(source);
                self.len += take;
            }
        }
        // Cutting is not an error: the rest of the report still goes out.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;

    #[test]
    fn signal_descriptions() {
        let text = |signal, code| describe_signal(signal, code).to_string();
        assert_eq!(
            text(libc::SIGSEGV, 1),
            "SIGSEGV (invalid memory reference: address not mapped)"
        );
        assert_eq!(
            text(libc::SIGFPE, 1),
            "SIGFPE (arithmetic exception: integer divide by zero)"
        );
        assert_eq!(text(libc::SIGBUS, 0), "SIGBUS (bus error)");
        assert_eq!(text(libc::SIGTERM, 0), "signal 15 (fatal signal)");
    }

    #[test]
    fn long_lines_are_cut_with_room_for_the_newline() {
        let mut line = Line::new();
        let long = "x".repeat(LINE_BYTES * 2);
        let _ = write!(line, "{long}");
        assert_eq!(line.text().len(), LINE_BYTES - 1);
        let mut short = Line::new();
        let function = "main";
        let _ = write!(short, "pc {:#x}  {function}+{:#x}", 0x1234, 8);
        assert_eq!(short.text(), "pc 0x1234  main+0x8");
    }
}
