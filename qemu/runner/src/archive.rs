//! Writes a Unix `ar` archive (the common format, as `ar rc` writes it) of the
//! modules, which the kernel embeds and walks one member at a time.

/// The archive bytes for `(name, bytes)` members. Names must fit the 16-byte
/// field with GNU ar's trailing `/`, which the kernel strips.
pub fn write(members: &[(String, Vec<u8>)]) -> Result<Vec<u8>, String> {
    let mut archive = b"!<arch>\n".to_vec();
    for (name, bytes) in members {
        if name.len() > 15 || name.contains('/') {
            return Err(format!("member name {name:?} does not fit an ar header"));
        }
        let header = format!(
            "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
            format!("{name}/"),
            0,
            0,
            0,
            644,
            bytes.len()
        );
        archive.extend_from_slice(header.as_bytes());
        archive.extend_from_slice(bytes);
        if bytes.len() % 2 == 1 {
            archive.push(b'\n');
        }
    }
    Ok(archive)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn binutils_reads_what_we_write() {
        let members = vec![
            ("a.o".to_owned(), b"odd".to_vec()),
            ("stress.o".to_owned(), b"even".to_vec()),
        ];
        let bytes = write(&members).unwrap();
        let dir = std::env::temp_dir().join(format!("modload-qemu-ar-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("test.a");
        std::fs::write(&path, &bytes).unwrap();
        let listing = Command::new("ar").arg("t").arg(&path).output().unwrap();
        assert!(listing.status.success());
        assert_eq!(String::from_utf8_lossy(&listing.stdout), "a.o\nstress.o\n");
        let printed = Command::new("ar")
            .arg("p")
            .arg(&path)
            .arg("a.o")
            .output()
            .unwrap();
        assert_eq!(printed.stdout, b"odd");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn long_names_are_refused() {
        let members = vec![("a_very_long_module_name.o".to_owned(), Vec::new())];
        assert!(write(&members).is_err());
    }
}
