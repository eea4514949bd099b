//! The mappings of this process, from `/proc/self/maps`, read with plain
//! system calls into buffers on the stack: which binary a frame outside
//! modules is in, and how far a thread's stack reaches.

use std::ffi::c_void;

use super::text::LINE_BYTES;

/// One line of `/proc/self/maps`, the parts the report uses.
pub(super) struct Mapping {
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) readable: bool,
    pub(super) executable: bool,
    /// The line's bytes; the path is `path_start..line_len`.
    line: [u8; LINE_BYTES],
    path_start: usize,
    line_len: usize,
}

impl Mapping {
    /// No mapping yet: a line is read into it.
    const EMPTY: Self = Self {
        start: 0,
        end: 0,
        readable: false,
        executable: false,
        line: [0; LINE_BYTES],
        path_start: 0,
        line_len: 0,
    };

    /// The file name of the mapped path, or `[stack]`, `[heap]`...; empty
    /// for anonymous memory.
    pub(super) fn name(&self) -> &[u8] {
        let path = self
            .line
            .get(self.path_start..self.line_len)
            .unwrap_or_default();
        match path.iter().rposition(|&byte| byte == b'/') {
            Some(slash) => path.get(slash + 1..).unwrap_or_default(),
            None => path,
        }
    }
}

/// The mapping that holds `address`, read from `/proc/self/maps` with
/// plain system calls into buffers on the stack.
pub(super) fn find_mapping(address: usize) -> Option<Mapping> {
    // SAFETY: open(2) of a NUL-terminated literal path.
    let fd = unsafe {
        libc::open(
            c"/proc/self/maps".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return None;
    }
    let mut chunk = [0u8; 1024];
    let mut mapping = Mapping::EMPTY;
    let mut found = false;
    'reading: loop {
        // SAFETY: read(2) into our buffer, at most its length.
        let read = unsafe { libc::read(fd, chunk.as_mut_ptr().cast::<c_void>(), chunk.len()) };
        let Ok(read) = usize::try_from(read) else {
            break;
        };
        if read == 0 {
            break;
        }
        for &byte in chunk.get(..read).unwrap_or_default() {
            if byte != b'\n' {
                if let Some(slot) = mapping.line.get_mut(mapping.line_len) {
                    *slot = byte;
                    mapping.line_len += 1;
                }
                continue;
            }
            if parse_mapping(&mut mapping, address) {
                found = true;
                break 'reading;
            }
            mapping.line_len = 0;
        }
    }
    // SAFETY: our own descriptor, closed once.
    unsafe { libc::close(fd) };
    found.then_some(mapping)
}

/// Parses the line in `mapping.line` (`start-end perms offset dev inode
/// path`); true, with the fields filled in, if it holds `address`.
fn parse_mapping(mapping: &mut Mapping, address: usize) -> bool {
    let line = mapping.line.get(..mapping.line_len).unwrap_or_default();
    let mut fields = line.split(|&byte| byte == b' ');
    let Some(range) = fields.next() else {
        return false;
    };
    let mut bounds = range.split(|&byte| byte == b'-');
    let (Some(start), Some(end)) = (
        bounds.next().and_then(parse_hex),
        bounds.next().and_then(parse_hex),
    ) else {
        return false;
    };
    if address < start || address >= end {
        return false;
    }
    let permissions = fields.next().unwrap_or_default();
    mapping.start = start;
    mapping.end = end;
    mapping.readable = permissions.first() == Some(&b'r');
    mapping.executable = permissions.get(2) == Some(&b'x');
    // The path begins after the fifth field and the spaces that pad it.
    let mut spaces = 0;
    let mut path_start = mapping.line_len;
    let mut previous_space = false;
    for (index, &byte) in line.iter().enumerate() {
        let space = byte == b' ';
        if space && !previous_space {
            spaces += 1;
        }
        if !space && spaces >= 5 {
            path_start = index;
            break;
        }
        previous_space = space;
    }
    mapping.path_start = path_start;
    true
}

/// A hexadecimal number without prefix, as `/proc/self/maps` writes them.
fn parse_hex(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0usize, |value, &digit| {
        let digit = char::from(digit).to_digit(16)?;
        value.checked_mul(16)?.checked_add(digit as usize)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping_line(text: &str) -> Mapping {
        let mut mapping = Mapping {
            line_len: text.len(),
            ..Mapping::EMPTY
        };
        mapping.line[..text.len()].copy_from_slice(text.as_bytes());
        mapping
    }

    #[test]
    fn maps_lines() {
        let text = "7f12a4c28000-7f12a4d7d000 r-xp 00028000 fe:01 1312 \
                    /usr/lib/x86_64-linux-gnu/libc.so.6";
        let mut mapping = mapping_line(text);
        assert!(!parse_mapping(&mut mapping, 0x7f12a4c27fff));
        assert!(!parse_mapping(&mut mapping, 0x7f12a4d7d000));
        assert!(parse_mapping(&mut mapping, 0x7f12a4d7cfff));
        assert_eq!(
            (mapping.start, mapping.end),
            (0x7f12a4c28000, 0x7f12a4d7d000)
        );
        assert!(mapping.readable && mapping.executable);
        assert_eq!(mapping.name(), b"libc.so.6");

        let mut stack = mapping_line("7ffd1000-7ffd3000 rw-p 00000000 00:00 0          [stack]");
        assert!(parse_mapping(&mut stack, 0x7ffd2000));
        assert!(stack.readable && !stack.executable);
        assert_eq!(stack.name(), b"[stack]");

        let mut anonymous = mapping_line("40000000-40010000 ---p 00000000 00:00 0 ");
        assert!(parse_mapping(&mut anonymous, 0x40000000));
        assert!(!anonymous.readable);
        assert_eq!(anonymous.name(), b"");

        assert!(!parse_mapping(&mut mapping_line("garbage"), 0));
        assert!(!parse_mapping(&mut mapping_line(""), 0));
    }

    #[test]
    fn the_mapping_of_this_code_is_this_binary() {
        let mapping = find_mapping(maps_lines as *const () as usize).expect("this code is mapped");
        assert!(mapping.readable && mapping.executable);
        let path = std::env::current_exe().expect("the test binary's path");
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("");
        assert_eq!(mapping.name(), name.as_bytes());
        assert!(find_mapping(0x10).is_none());
    }

    #[test]
    fn hex_numbers() {
        assert_eq!(parse_hex(b"7f12a4c28000"), Some(0x7f12a4c28000));
        assert_eq!(parse_hex(b"0"), Some(0));
        assert_eq!(parse_hex(b""), None);
        assert_eq!(parse_hex(b"12g"), None);
        assert_eq!(parse_hex(b"1ffffffffffffffff"), None);
    }
}
