//! Shared by the placement tests (packed and grouped): the chain of small
//! modules, the process's mappings, and a watcher that checks no mapping is
//! ever writable and executable.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;

use modload::{Loader, Module, Object, SectionKind};
use modload_tests::{compile_c, fixture, CModel};

use super::call0;

pub fn chain_object(n: usize) -> PathBuf {
    compile_c(
        &fixture("packed_chain.c"),
        CModel::Pic,
        &[&format!("-DN={n}"), &format!("-DPREV={}", n - 1)],
    )
}

/// The chain modules 1..=COUNT, compiled once for all tests.
pub const COUNT: usize = 120;

pub fn chain() -> &'static [Vec<u8>] {
    static CHAIN: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    CHAIN.get_or_init(|| {
        (1..=COUNT)
            .map(|n| modload_tests::read(&chain_object(n)))
            .collect()
    })
}

pub fn chain_name(n: usize) -> String {
    format!("chain{n}.o")
}

/// Sum of the plan's exact section extents (as the benchmark's memory report).
pub fn sections(loader: &Loader<'_>, name: &str, bytes: &[u8]) -> u64 {
    let planned = loader
        .plan(Object::parse(name, bytes).expect("parse"))
        .expect("plan");
    SectionKind::ALL
        .iter()
        .map(|kind| planned.plan().kind(*kind).size)
        .sum()
}

/// One line of `/proc/self/maps`: range and permission letters.
#[derive(Debug, Clone)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub perms: String,
    pub line: String,
}

pub fn maps() -> Vec<Mapping> {
    let text = std::fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps");
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (start, end) = fields.next()?.split_once('-')?;
            Some(Mapping {
                start: u64::from_str_radix(start, 16).ok()?,
                end: u64::from_str_radix(end, 16).ok()?,
                perms: fields.next()?.to_string(),
                line: line.to_string(),
            })
        })
        .collect()
}

/// Panics if any mapping of the process is writable and executable.
pub fn assert_no_writable_executable() {
    for mapping in maps() {
        let bytes = mapping.perms.as_bytes();
        assert!(
            !(bytes.get(1) == Some(&b'w') && bytes.get(2) == Some(&b'x')),
            "writable and executable mapping: {}",
            mapping.line
        );
    }
}

/// The permission letters of the page at `address` (`rwxs` style).
pub fn perms_at(address: u64) -> String {
    maps()
        .into_iter()
        .find(|mapping| mapping.start <= address && address < mapping.end)
        .map(|mapping| mapping.perms)
        .unwrap_or_else(|| String::from("unmapped"))
}

pub fn chain_value(module: &Module<'_>, n: usize) -> i64 {
    call0(module, &format!("chain_{n}_value"))
}

/// Runs `work` while another thread reads `/proc/self/maps` in a loop and
/// checks that no mapping is writable and executable; returns how many
/// snapshots it took.
pub fn watching_maps<T>(work: impl FnOnce() -> T) -> (T, u64) {
    let stop = AtomicBool::new(false);
    let snapshots = AtomicU64::new(0);
    let result = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                assert_no_writable_executable();
                snapshots.fetch_add(1, Ordering::Relaxed);
            }
        });
        let guard = StopOnDrop(&stop);
        let result = work();
        drop(guard);
        watcher.join().expect("maps watcher");
        result
    });
    assert_no_writable_executable();
    (result, snapshots.load(Ordering::Relaxed))
}

/// Sets its flag when dropped, also while unwinding.
pub struct StopOnDrop<'a>(pub &'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Every page of `[start, end)` is read-write (and not executable).
pub fn assert_range_read_write(start: u64, end: u64) {
    for mapping in mappings_in(start, end) {
        assert!(
            mapping.perms.starts_with("rw-"),
            "region page not read-write after unloading: {}",
            mapping.line
        );
    }
}

/// The mappings that overlap `[start, end)`.
pub fn mappings_in(start: u64, end: u64) -> Vec<Mapping> {
    maps()
        .into_iter()
        .filter(|mapping| mapping.end > start && mapping.start < end)
        .collect()
}

/// Chain module `n` answers as its source says (`packed_chain.c`).
pub fn check_chain_module(module: &Module<'_>, n: usize) {
    assert_eq!(chain_value(module, n), (n * (n + 1) / 2) as i64);
    assert_eq!(
        call0(module, &format!("chain_{n}_check")),
        (4 * n + 2) as i64
    );
}
