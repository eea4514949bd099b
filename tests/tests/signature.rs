//! Signed modules (feature `signature`): a loader that requires signatures
//! loads a module signed by a trusted key and refuses everything else before
//! parsing it, leaving the region and namespace as they were.

mod common;

use common::*;
use modload::signature::{self, public_key, SecretKey, TrustedKeys, TRAILER_LEN};
use modload::{ErrorKind, Limit, Limits, LoadError, Object, SignatureProblem};
use modload_tests::{compile_c, fixture, CModel};

const SIGNER: SecretKey = [0x11; 32];
const STRANGER: SecretKey = [0x22; 32];

fn m1() -> Vec<u8> {
    modload_tests::read(&compile_c(&fixture("m1.c"), CModel::Pic, &[]))
}

fn signed(payload: &[u8], secret: &SecretKey) -> Vec<u8> {
    let mut bytes = payload.to_vec();
    bytes.extend_from_slice(&signature::sign(payload, secret));
    bytes
}

fn trusting(secret: &SecretKey) -> &'static TrustedKeys {
    let mut keys = TrustedKeys::new();
    keys.add(&public_key(secret)).unwrap();
    Box::leak(Box::new(keys))
}

/// Loads `bytes` with a loader that requires signatures by `SIGNER`.
fn load_signed(env: &Env, bytes: &[u8]) -> Result<modload::Module<'static>, LoadError> {
    let loader = env.loader().require_signatures(trusting(&SIGNER));
    // SAFETY: every payload here is the m1 fixture, this project's own code.
    unsafe { loader.load("m1.o", bytes) }
}

fn refusal(env: &Env, bytes: &[u8]) -> SignatureProblem {
    match load_signed(env, bytes) {
        Ok(_) => panic!("a bad signature was accepted"),
        Err(error) => {
            env.assert_back_to_baseline();
            assert!(env.namespace.modules().is_empty());
            match error.kind {
                ErrorKind::Signature { problem } => problem,
                other => panic!("not a signature error: {other:?}"),
            }
        }
    }
}

#[test]
fn a_module_signed_by_a_trusted_key_loads_and_runs() {
    let env = Env::anywhere();
    let module = load_signed(&env, &signed(&m1(), &SIGNER)).unwrap();
    assert_eq!(call0(&module, "m1_value"), 42);
    assert_eq!(call1(&module, "m1_square", 9), 81);
    unload(module);
    env.assert_back_to_baseline();
}

#[test]
fn unsigned_and_untrusted_modules_are_refused() {
    let env = Env::anywhere();
    assert_eq!(refusal(&env, &m1()), SignatureProblem::Unsigned);
    assert_eq!(
        refusal(&env, &signed(&m1(), &STRANGER)),
        SignatureProblem::UntrustedKey
    );
    // Not even an ELF file: refused for its signature, so nothing parsed it.
    assert_eq!(refusal(&env, b"MZ garbage"), SignatureProblem::Unsigned);
}

/// One byte changed in each part of a signed module: the ELF header, section
/// data, the signature and each field of the trailer.
#[test]
fn tampering_with_any_part_is_detected() {
    let env = Env::anywhere();
    let payload = m1();
    let good = signed(&payload, &SIGNER);
    let trailer = payload.len();
    let text = raw_sections(&payload)
        .into_iter()
        .find(|s| s.name == ".text")
        .unwrap();
    let cases: [(&str, usize, SignatureProblem); 9] = [
        ("ELF header: e_machine", 18, SignatureProblem::BadSignature),
        ("ELF header: e_shoff", 40, SignatureProblem::BadSignature),
        (
            "section data: .text",
            text.offset as usize + 3,
            SignatureProblem::BadSignature,
        ),
        ("trailer: magic", trailer, SignatureProblem::Unsigned),
        (
            "trailer: version",
            trailer + 8,
            SignatureProblem::UnsupportedVersion { version: 1 ^ 0x40 },
        ),
        (
            "trailer: length",
            trailer + 12,
            SignatureProblem::BadTrailer,
        ),
        (
            "trailer: payload length",
            trailer + 16,
            SignatureProblem::LengthMismatch {
                recorded: payload.len() as u64 ^ 0x40,
                actual: payload.len() as u64,
            },
        ),
        ("trailer: key", trailer + 24, SignatureProblem::UntrustedKey),
        (
            "signature",
            trailer + 56 + 10,
            SignatureProblem::BadSignature,
        ),
    ];
    for (part, at, expected) in cases {
        let mut bytes = good.clone();
        bytes[at] ^= 0x40;
        assert_eq!(refusal(&env, &bytes), expected, "{part}");
    }
    // The same module untampered still loads.
    unload(load_signed(&env, &good).unwrap());
    env.assert_back_to_baseline();
}

/// A signature from a trusted key over a key that names itself trusted is not
/// enough: replacing the key in the trailer with a trusted one breaks it.
#[test]
fn a_stranger_cannot_claim_a_trusted_key() {
    let env = Env::anywhere();
    let mut bytes = signed(&m1(), &STRANGER);
    let key_at = bytes.len() - TRAILER_LEN + 24;
    bytes[key_at..key_at + 32].copy_from_slice(&public_key(&SIGNER));
    assert_eq!(refusal(&env, &bytes), SignatureProblem::BadSignature);
}

/// With signatures required, an object parsed some other way is refused at
/// planning, before anything is allocated.
#[test]
fn plan_refuses_objects_not_checked_by_the_loader() {
    let env = Env::anywhere();
    let bytes = signed(&m1(), &SIGNER);
    let loader = env.loader().require_signatures(trusting(&SIGNER));
    let object = Object::parse("m1.o", &bytes).unwrap();
    let error = loader.plan(object).err().unwrap();
    assert_eq!(
        error.kind,
        ErrorKind::Signature {
            problem: SignatureProblem::Unsigned
        }
    );
    // Checked by another loader that trusts another key: refused too.
    let other = env.loader().require_signatures(trusting(&STRANGER));
    let stranger_signed = signed(&m1(), &STRANGER);
    let object = other.parse("m1.o", &stranger_signed).unwrap();
    assert!(matches!(
        loader.plan(object).err().unwrap().kind,
        ErrorKind::Signature {
            problem: SignatureProblem::Unsigned
        }
    ));
    env.assert_back_to_baseline();
}

/// A validly signed file that is not an object is refused by the parser, after
/// the signature: signing vouches for the author, not for the contents.
#[test]
fn a_signed_non_object_fails_to_parse() {
    let env = Env::anywhere();
    let error = load_signed(&env, &signed(b"not an object", &SIGNER)).unwrap_err();
    assert_eq!(error.kind, ErrorKind::NotElf);
    env.assert_back_to_baseline();
}

/// The size limit applies before the signature is even hashed.
#[test]
fn the_size_limit_comes_before_the_signature() {
    let env = Env::anywhere();
    let bytes = signed(&m1(), &SIGNER);
    let small = Limits::DEFAULT.max_object_size(100);
    let loader = env
        .loader()
        .with_limits(small)
        .require_signatures(trusting(&SIGNER));
    let error = loader.parse("m1.o", &bytes).err().unwrap();
    assert_eq!(
        error.kind,
        ErrorKind::LimitExceeded {
            limit: Limit::ObjectSize,
            value: bytes.len() as u64,
            max: 100
        }
    );
}

/// Without required signatures, a signed module loads like any object: the
/// trailer follows the ELF data and nothing in the ELF refers to it.
#[test]
fn signed_modules_load_where_signatures_are_not_required() {
    let env = Env::anywhere();
    let bytes = signed(&m1(), &SIGNER);
    // SAFETY: the payload is the m1 fixture, this project's own code.
    let module = unsafe { env.loader().load("m1.o", &bytes) }.unwrap();
    assert_eq!(call0(&module, "m1_value"), 42);
    unload(module);
    env.assert_back_to_baseline();
}
