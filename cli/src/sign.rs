//! `modload keygen` and `modload sign`: Ed25519 key pairs and signed modules,
//! and the `--trusted-key` files `modload run` reads. The trailer format is in
//! `modload::signature` and docs/ROBUSTNESS.md.
//!
//! Key files are text: 64 hexadecimal digits and a newline. The secret key
//! (`PREFIX.key`) is the RFC 8032 seed and is created readable by its owner
//! only; the public key (`PREFIX.pub`) is what hosts trust.

use std::fs;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use modload::signature::{self, PublicKey, SecretKey, TrustedKeys};
use modload::Object;

use crate::args::{KeygenArgs, SignArgs};
use crate::Failure;

/// Runs `modload keygen`: a fresh key pair from the operating system's random
/// source. Refuses to overwrite existing key files.
pub fn keygen_command(args: &KeygenArgs) -> Result<(), Failure> {
    let mut secret: SecretKey = [0; 32];
    fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut secret))
        .map_err(|error| Failure::io("/dev/urandom", &error))?;
    let public = signature::public_key(&secret);
    let secret_path = with_suffix(&args.prefix, "key");
    let public_path = with_suffix(&args.prefix, "pub");
    write_new(&secret_path, &hex(&secret), 0o600)?;
    write_new(&public_path, &hex(&public), 0o644)?;
    println!("{}", hex(&public).trim_end());
    Ok(())
}

/// Runs `modload sign`: appends a signature trailer to an object that parses.
pub fn sign_command(args: &SignArgs) -> Result<(), Failure> {
    let secret = read_key(&args.key)?;
    let name = args.object.to_string_lossy().into_owned();
    let mut bytes = fs::read(&args.object).map_err(|error| Failure::io(&name, &error))?;
    if signature::split(&bytes).is_some() {
        return Err(Failure::message(format!(
            "{name}: already signed (sign the unsigned object)"
        )));
    }
    // Signing vouches for the object, so it must at least be one.
    Object::parse(&name, &bytes).map_err(|error| Failure::load(&error))?;
    let trailer = signature::sign(&bytes, &secret);
    bytes.extend_from_slice(&trailer);
    let output = args.output.as_ref().unwrap_or(&args.object);
    // Write beside the destination and rename, so a failed write never
    // leaves a half-signed module under the final name.
    let mut scratch = output.clone().into_os_string();
    scratch.push(".signing");
    let scratch = PathBuf::from(scratch);
    fs::write(&scratch, &bytes)
        .and_then(|()| fs::rename(&scratch, output))
        .map_err(|error| Failure::io(&output.to_string_lossy(), &error))
}

/// The keys named by `--trusted-key`, or `None` when there are none (and
/// signatures are not required).
pub fn trusted_keys(paths: &[PathBuf]) -> Result<Option<TrustedKeys>, Failure> {
    if paths.is_empty() {
        return Ok(None);
    }
    let mut keys = TrustedKeys::new();
    for path in paths {
        let public: PublicKey = read_key(path)?;
        keys.add(&public)
            .map_err(|error| Failure::message(format!("{}: {error}", path.to_string_lossy())))?;
    }
    Ok(Some(keys))
}

/// Reads a key file: 64 hexadecimal digits, surrounding whitespace ignored.
fn read_key(path: &Path) -> Result<[u8; 32], Failure> {
    let name = path.to_string_lossy();
    let text = fs::read_to_string(path).map_err(|error| Failure::io(&name, &error))?;
    parse_hex_key(text.trim())
        .ok_or_else(|| Failure::message(format!("{name}: not a key file (64 hex digits)")))
}

fn parse_hex_key(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut key = [0u8; 32];
    for (byte, pair) in key.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(key)
}

fn hex(bytes: &[u8]) -> String {
    let mut text: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    text.push('\n');
    text
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut path = prefix.as_os_str().to_owned();
    path.push(".");
    path.push(suffix);
    PathBuf::from(path)
}

/// Creates `path` with `mode`, refusing to replace an existing file.
fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), Failure> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(|error| Failure::io(&path.to_string_lossy(), &error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_keys_round_trip() {
        let key = [0xa5u8; 32];
        assert_eq!(parse_hex_key(hex(&key).trim()), Some(key));
        assert_eq!(parse_hex_key("zz"), None);
        assert_eq!(parse_hex_key(&"g".repeat(64)), None);
    }
}
