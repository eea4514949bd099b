//! Signed modules (feature `signature`): an Ed25519 signature appended to the
//! object in a fixed trailer, checked against keys the host trusts before the
//! object is parsed or anything is allocated for it.
//!
//! # Trailer format (version 1)
//!
//! A signed module is the object file (the *payload*, unchanged, so ELF tools
//! still read it) followed by a 120-byte trailer. Numbers are little-endian.
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | magic `MODLSIG\0` |
//! | 8 | 4 | version, `1` |
//! | 12 | 4 | trailer length, `120` |
//! | 16 | 8 | payload length: the bytes before the trailer |
//! | 24 | 32 | the signer's Ed25519 public key |
//! | 56 | 64 | the signature |
//!
//! The signature is Ed25519ph (RFC 8032 §5.1: Ed25519 over the SHA-512 of the
//! message) with the context string [`CONTEXT`], where the message is the
//! payload followed by the first 56 bytes of the trailer. Every byte of the
//! file except the signature itself is therefore covered: the object, the
//! magic, the version, both lengths and the key. Prehashing lets the check
//! stream over the payload in place, with no copy and no allocation.
//!
//! Checking never parses: [`verify`] reads the trailer's fixed fields, looks
//! the key up among the [`TrustedKeys`], hashes the payload and verifies the
//! signature with the strict rules (no small-order keys, canonical `S`).

use alloc::vec::Vec;
use core::fmt;

use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use sha2::{Digest, Sha512};

use crate::error::SignatureProblem;

/// Bytes of the trailer.
pub const TRAILER_LEN: usize = 120;
/// The trailer's first eight bytes.
pub const MAGIC: [u8; 8] = *b"MODLSIG\0";
/// The trailer version this loader writes and reads.
pub const VERSION: u32 = 1;
/// The Ed25519ph context string: a signature made for anything else (another
/// program's Ed25519ph signatures over the same bytes) does not verify here.
pub const CONTEXT: &[u8] = b"modload module signature v1";
/// Bytes of the trailer covered by the signature (all but the signature).
const SIGNED_TRAILER_LEN: usize = 56;

/// An Ed25519 public key: 32 bytes.
pub type PublicKey = [u8; 32];
/// An Ed25519 secret key (the seed of RFC 8032): 32 bytes.
pub type SecretKey = [u8; 32];

/// The keys a host accepts module signatures from.
///
/// ```
/// # fn main() -> Result<(), modload::signature::InvalidKey> {
/// use modload::signature::{public_key, TrustedKeys};
/// let mut keys = TrustedKeys::new();
/// keys.add(&public_key(&[7; 32]))?;
/// assert!(keys.contains(&public_key(&[7; 32])));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct TrustedKeys {
    keys: Vec<VerifyingKey>,
}

/// A public key that is not a valid Ed25519 point (or is a weak, small-order one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidKey;

impl fmt::Display for InvalidKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a valid Ed25519 public key")
    }
}

impl core::error::Error for InvalidKey {}

impl TrustedKeys {
    /// No keys: every module is refused until one is added.
    pub const fn new() -> Self {
        Self { keys: Vec::new() }
    }

    /// Trusts `public`. Refused if it is not a usable Ed25519 key.
    pub fn add(&mut self, public: &PublicKey) -> Result<(), InvalidKey> {
        let key = VerifyingKey::from_bytes(public).map_err(|_| InvalidKey)?;
        if key.is_weak() {
            return Err(InvalidKey);
        }
        if !self.contains(public) {
            self.keys.push(key);
        }
        Ok(())
    }

    /// Whether `public` is trusted.
    pub fn contains(&self, public: &PublicKey) -> bool {
        self.find(public).is_some()
    }

    /// How many keys are trusted.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn find(&self, public: &PublicKey) -> Option<&VerifyingKey> {
        self.keys.iter().find(|key| key.as_bytes() == public)
    }
}

/// A module whose signature checked out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified<'a> {
    /// The object file, without the trailer.
    pub payload: &'a [u8],
    /// The key that signed it.
    pub signer: PublicKey,
}

/// The fixed fields of a trailer, read without checking the signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trailer {
    /// The version field.
    pub version: u32,
    /// The trailer length field.
    pub trailer_len: u32,
    /// The payload length field.
    pub payload_len: u64,
    /// The signer's public key.
    pub signer: PublicKey,
    /// The signature.
    pub signature: [u8; 64],
}

/// Splits `bytes` into the payload and its trailer's fields, or `None` if
/// the file does not end in a trailer (its magic is not where it would be).
pub fn split(bytes: &[u8]) -> Option<(&[u8], Trailer)> {
    let at = bytes.len().checked_sub(TRAILER_LEN)?;
    let (payload, trailer) = bytes.split_at_checked(at)?;
    let field = |start: usize, len: usize| trailer.get(start..start.checked_add(len)?);
    if field(0, 8)? != MAGIC {
        return None;
    }
    Some((
        payload,
        Trailer {
            version: u32::from_le_bytes(field(8, 4)?.try_into().ok()?),
            trailer_len: u32::from_le_bytes(field(12, 4)?.try_into().ok()?),
            payload_len: u64::from_le_bytes(field(16, 8)?.try_into().ok()?),
            signer: field(24, 32)?.try_into().ok()?,
            signature: field(56, 64)?.try_into().ok()?,
        },
    ))
}

/// Checks the signature of a signed module against `keys` and returns the
/// payload to parse. Nothing is parsed or allocated.
pub fn verify<'a>(bytes: &'a [u8], keys: &TrustedKeys) -> Result<Verified<'a>, SignatureProblem> {
    let (payload, trailer) = split(bytes).ok_or(SignatureProblem::Unsigned)?;
    if trailer.version != VERSION {
        return Err(SignatureProblem::UnsupportedVersion {
            version: trailer.version,
        });
    }
    if trailer.trailer_len as usize != TRAILER_LEN {
        return Err(SignatureProblem::BadTrailer);
    }
    let actual = payload.len() as u64;
    if trailer.payload_len != actual {
        return Err(SignatureProblem::LengthMismatch {
            recorded: trailer.payload_len,
            actual,
        });
    }
    let key = keys
        .find(&trailer.signer)
        .ok_or(SignatureProblem::UntrustedKey)?;
    let signed_trailer = bytes
        .get(payload.len()..)
        .and_then(|trailer| trailer.get(..SIGNED_TRAILER_LEN))
        .ok_or(SignatureProblem::BadTrailer)?;
    let digest = Sha512::new()
        .chain_update(payload)
        .chain_update(signed_trailer);
    let signature = Signature::from_bytes(&trailer.signature);
    key.verify_prehashed_strict(digest, Some(CONTEXT), &signature)
        .map_err(|_| SignatureProblem::BadSignature)?;
    Ok(Verified {
        payload,
        signer: trailer.signer,
    })
}

/// The public key of `secret`.
pub fn public_key(secret: &SecretKey) -> PublicKey {
    SigningKey::from_bytes(secret).verifying_key().to_bytes()
}

/// The trailer that signs `payload` with `secret`: append it to the payload
/// to make a signed module.
pub fn sign(payload: &[u8], secret: &SecretKey) -> [u8; TRAILER_LEN] {
    let key = SigningKey::from_bytes(secret);
    let public = key.verifying_key().to_bytes();
    let mut trailer = [0u8; TRAILER_LEN];
    let fields: [&[u8]; 5] = [
        &MAGIC,
        &VERSION.to_le_bytes(),
        &(TRAILER_LEN as u32).to_le_bytes(),
        &(payload.len() as u64).to_le_bytes(),
        &public,
    ];
    let mut at = 0usize;
    for field in fields {
        if let Some(slot) = trailer.get_mut(at..at.saturating_add(field.len())) {
            slot.copy_from_slice(field);
        }
        at = at.saturating_add(field.len());
    }
    let digest = Sha512::new()
        .chain_update(payload)
        .chain_update(trailer.get(..SIGNED_TRAILER_LEN).unwrap_or_default());
    // Signing a prehash fails only for a context longer than 255 bytes, and
    // CONTEXT is a constant well under that; an all-zero signature (which
    // never verifies) would be the outcome otherwise, never a panic.
    if let Ok(signature) = key.sign_prehashed(digest, Some(CONTEXT)) {
        if let Some(slot) = trailer.get_mut(SIGNED_TRAILER_LEN..) {
            slot.copy_from_slice(&signature.to_bytes());
        }
    }
    trailer
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn signed(payload: &[u8], secret: &SecretKey) -> Vec<u8> {
        let mut bytes = payload.to_vec();
        bytes.extend_from_slice(&sign(payload, secret));
        bytes
    }

    fn trusting(secret: &SecretKey) -> TrustedKeys {
        let mut keys = TrustedKeys::new();
        keys.add(&public_key(secret)).unwrap();
        keys
    }

    #[test]
    fn a_signed_payload_verifies_and_comes_back_whole() {
        let payload = vec![0x5a; 300];
        let bytes = signed(&payload, &[1; 32]);
        assert_eq!(bytes.len(), 300 + TRAILER_LEN);
        let verified = verify(&bytes, &trusting(&[1; 32])).unwrap();
        assert_eq!(verified.payload, payload.as_slice());
        assert_eq!(verified.signer, public_key(&[1; 32]));
    }

    #[test]
    fn every_byte_is_covered() {
        let bytes = signed(b"an object", &[2; 32]);
        let keys = trusting(&[2; 32]);
        for at in 0..bytes.len() {
            let mut tampered = bytes.clone();
            tampered[at] ^= 0x01;
            assert!(
                verify(&tampered, &keys).is_err(),
                "byte {at} is not covered"
            );
        }
    }

    #[test]
    fn an_untrusted_key_is_refused() {
        let bytes = signed(b"an object", &[3; 32]);
        assert_eq!(
            verify(&bytes, &trusting(&[4; 32])),
            Err(SignatureProblem::UntrustedKey)
        );
        assert_eq!(
            verify(&bytes, &TrustedKeys::new()),
            Err(SignatureProblem::UntrustedKey)
        );
    }

    #[test]
    fn short_and_unsigned_inputs_are_unsigned() {
        let keys = trusting(&[5; 32]);
        assert_eq!(verify(&[], &keys), Err(SignatureProblem::Unsigned));
        assert_eq!(verify(&[0; 119], &keys), Err(SignatureProblem::Unsigned));
        assert_eq!(verify(&[0; 4096], &keys), Err(SignatureProblem::Unsigned));
    }

    #[test]
    fn weak_keys_are_not_trusted() {
        // The identity point: a small-order key that "verifies" anything.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(TrustedKeys::new().add(&identity), Err(InvalidKey));
    }
}
