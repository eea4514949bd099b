//! The JSON helpers that `modload plan --json` and `modload link`'s
//! `layout.json` share, so both spell strings and machines the same way.

use std::fmt::Write as _;

use modload::Machine;

/// The machine's name as every output of the tool spells it.
pub fn machine_name(machine: Machine) -> &'static str {
    match machine {
        Machine::X86_64 => "x86_64",
        Machine::AArch64 => "aarch64",
    }
}

/// `text` as a JSON string literal (RFC 8259 escaping).
pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_json_strings() {
        assert_eq!(json_string("a.o"), "\"a.o\"");
        assert_eq!(json_string("q\"b\\s\n\u{1}é"), "\"q\\\"b\\\\s\\n\\u0001é\"");
    }

    #[test]
    fn names_machines() {
        assert_eq!(machine_name(Machine::X86_64), "x86_64");
        assert_eq!(machine_name(Machine::AArch64), "aarch64");
    }
}
