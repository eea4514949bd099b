//! `modload run --perf-map`: the map file holds every function of the
//! module where it runs, and `perf report` (where perf can run) names the
//! module's hot function from it.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

const MODLOAD: &str = env!("CARGO_BIN_EXE_modload");

/// A loop-heavy program: nearly all its time is in `hot_loop`. It prints
/// its process id (the map is named after it), the address `hot_loop`
/// runs at, and whether its constructor found the map.
const LOOP: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

unsigned long table[64];

__attribute__((noinline)) unsigned long hot_loop(unsigned long rounds) {
    unsigned long x = 1;
    for (unsigned long i = 0; i < rounds; i++)
        x = x * 6364136223846793005UL + table[i & 63] + i;
    return x;
}

__attribute__((noinline)) static int cold_helper(int x) { return x * 3 + 1; }

/* An assembly function with a second, unsized label at its start: the map
   must name the code once, by the sized symbol. */
__asm__(".pushsection .text\n"
        ".globl asm_entry\n"
        ".type asm_entry, %function\n"
        "asm_entry:\n"
        "asm_entry_label:\n"
        "    ret\n"
        ".size asm_entry, . - asm_entry\n"
        ".popsection\n");

/* Whether the map was there before any module code ran. */
static int map_seen = -1;
__attribute__((constructor)) static void look_for_the_map(void) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/perf-%d.map", (int)getpid());
    map_seen = access(path, R_OK) == 0;
}

int main(int argc, char **argv) {
    unsigned long rounds = argc > 1 ? strtoul(argv[1], 0, 10) : 1000;
    table[argc & 63] = (unsigned long)argc;
    printf("pid %d hot_loop %p map_seen %d\n", (int)getpid(), (void *)hot_loop, map_seen);
    printf("result %lu\n", hot_loop(rounds) + cold_helper(argc));
    return 0;
}
"#;

fn compile(dir: &Path) -> PathBuf {
    let c = dir.join("loop.c");
    std::fs::write(&c, LOOP).expect("write the C source");
    common::gcc(&c, dir.join("loop.o"), &["-O1", "-fno-omit-frame-pointer"])
}

/// What the program printed: its pid, `hot_loop`'s address, and whether
/// the map was there when its constructor ran.
fn printed(output: &Output) -> (u32, u64, bool) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let words: Vec<&str> = stdout.split_whitespace().collect();
    match words.as_slice() {
        ["pid", pid, "hot_loop", address, "map_seen", seen @ ("0" | "1"), "result", _] => (
            pid.parse().expect("a pid"),
            u64::from_str_radix(address.trim_start_matches("0x"), 16).expect("an address"),
            *seen == "1",
        ),
        _ => panic!(
            "unexpected output: {stdout}; stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

/// Removes `/tmp/perf-PID.map` when dropped: perf maps are left for perf to
/// read after the process is gone, but a test's must not pile up.
struct MapFile(PathBuf);

impl MapFile {
    fn of(pid: u32) -> Self {
        Self(PathBuf::from(format!("/tmp/perf-{pid}.map")))
    }
}

impl Drop for MapFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The object's sized functions and objects, from `nm -S`: name to
/// (section offset, size, type letter).
fn nm_symbols(object: &Path) -> BTreeMap<String, (u64, u64, char)> {
    let nm = ["llvm-nm-22", "nm"]
        .into_iter()
        .find(|nm| Command::new(nm).arg("--version").output().is_ok())
        .expect("llvm-nm-22 or nm must be installed to run these tests");
    let output = Command::new(nm)
        .args(["-S", "--defined-only"])
        .arg(object)
        .output()
        .expect("run nm");
    assert!(output.status.success());
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(
            |line| match line.split_whitespace().collect::<Vec<_>>()[..] {
                [offset, size, kind, name] if !name.starts_with('.') => Some((
                    name.to_owned(),
                    (
                        u64::from_str_radix(offset, 16).ok()?,
                        u64::from_str_radix(size, 16).ok()?,
                        kind.chars().next()?,
                    ),
                )),
                // GNU nm prints no size for a symbol of size 0.
                [offset, kind, name] if !name.starts_with('.') => Some((
                    name.to_owned(),
                    (
                        u64::from_str_radix(offset, 16).ok()?,
                        0,
                        kind.chars().next()?,
                    ),
                )),
                _ => None,
            },
        )
        .collect()
}

/// The map's lines: name to (start, size).
fn read_map(map: &MapFile) -> BTreeMap<String, (u64, u64)> {
    let text = std::fs::read_to_string(&map.0)
        .unwrap_or_else(|error| panic!("{}: {error}", map.0.display()));
    text.lines()
        .map(|line| {
            let mut fields = line.splitn(3, ' ');
            let (Some(start), Some(size), Some(name)) =
                (fields.next(), fields.next(), fields.next())
            else {
                panic!("not a perf map line: {line:?}");
            };
            assert!(
                !start.starts_with("0x") && !size.starts_with("0x"),
                "{line}"
            );
            let number = |field: &str| {
                u64::from_str_radix(field, 16).unwrap_or_else(|_| panic!("bad number in {line:?}"))
            };
            (name.to_owned(), (number(start), number(size)))
        })
        .collect()
}

#[test]
fn perf_map_holds_every_function_where_it_runs() {
    let dir = common::workdir("perf", "map");
    let object = compile(&dir);
    let output = Command::new(MODLOAD)
        .args(["run", "--perf-map"])
        .arg(&object)
        .output()
        .expect("run the modload binary");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (pid, hot_loop, map_seen) = printed(&output);
    let map = read_map(&MapFile::of(pid));
    assert!(map_seen, "the map must be written before constructors run");

    let mut symbols = nm_symbols(&object);
    // A label of size 0 where a sized symbol of its section starts is left
    // out of the map: the sized symbol names that code.
    let shadowed: Vec<String> = symbols
        .iter()
        .filter(|(_, (offset, size, kind))| {
            *size == 0
                && symbols
                    .values()
                    .any(|(other_offset, other_size, other_kind)| {
                        other_offset == offset
                            && *other_size > 0
                            && other_kind.eq_ignore_ascii_case(kind)
                    })
        })
        .map(|(name, _)| name.clone())
        .collect();
    assert_eq!(shadowed, ["asm_entry_label"], "{symbols:#?}");
    for name in &shadowed {
        assert!(
            !map.contains_key(&format!("{name} [loop.o]")),
            "{name} shadows a sized symbol: {map:#?}"
        );
        symbols.remove(name);
    }
    let functions: Vec<_> = symbols
        .iter()
        .filter(|(_, (_, _, kind))| kind.eq_ignore_ascii_case(&'t'))
        .collect();
    assert!(functions.len() >= 4, "{symbols:?}");
    assert_eq!(
        map.get("asm_entry [loop.o]").map(|(_, size)| *size),
        Some(symbols["asm_entry"].1)
    );
    let (hot_offset, _, _) = symbols["hot_loop"];
    for (name, (offset, size, _)) in &functions {
        let Some((start, mapped_size)) = map.get(&format!("{name} [loop.o]")) else {
            panic!("{name} is not in the map: {map:#?}");
        };
        assert_eq!(mapped_size, size, "{name}'s size");
        // Every function sits where the loader put .text: at its offset
        // from hot_loop, which runs where the program says it does.
        assert_eq!(
            start.wrapping_sub(hot_loop),
            offset.wrapping_sub(hot_offset),
            "{name} at {start:#x}, hot_loop at {hot_loop:#x}"
        );
    }
    // The local function and the data object are listed as well.
    assert!(map.contains_key("cold_helper [loop.o]"), "{map:#?}");
    assert!(map.contains_key("table [loop.o]"), "{map:#?}");
    assert_eq!(map.len(), symbols.len(), "{map:#?} against {symbols:#?}");
}

/// Without `--perf-map` no map is written.
#[test]
fn no_map_without_the_option() {
    let dir = common::workdir("perf", "none");
    let object = compile(&dir);
    let output = Command::new(MODLOAD)
        .arg("run")
        .arg(&object)
        .output()
        .expect("run the modload binary");
    let (pid, _, map_seen) = printed(&output);
    let map = MapFile::of(pid);
    assert!(
        !map_seen && !map.0.exists(),
        "{} was written",
        map.0.display()
    );
}

/// Says, past the test harness's capture, that perf could not run: the
/// fallback must show in the test output, not pass silently. With
/// `MODLOAD_REQUIRE_PERF=1` it fails instead.
fn perf_unavailable(reason: &str) {
    assert!(
        std::env::var_os("MODLOAD_REQUIRE_PERF").is_none(),
        "MODLOAD_REQUIRE_PERF is set, but perf cannot run: {reason}"
    );
    let _ = writeln!(
        std::io::stderr(),
        "perf_report_names_the_hot_function: FALLBACK, perf cannot run here ({reason}); \
         only perf_map_holds_every_function_where_it_runs checks the map"
    );
}

#[test]
fn perf_report_names_the_hot_function() {
    let dir = common::workdir("perf", "report");
    // perf_event_paranoid 2 still lets a user profile its own processes in
    // user space (`:u`), which is all this needs; CI containers often
    // forbid perf_event_open altogether.
    let probe = Command::new("perf")
        .args(["record", "-q", "-e", "cpu-clock:u", "-o"])
        .arg(dir.join("probe.data"))
        .args(["--", "true"])
        .output();
    match probe {
        Err(error) => return perf_unavailable(&format!("no perf: {error}")),
        Ok(probe) if !probe.status.success() => {
            let stderr = String::from_utf8_lossy(&probe.stderr);
            let first = stderr
                .lines()
                .find(|line| !line.trim().is_empty())
                .unwrap_or("");
            return perf_unavailable(&format!("perf record fails: {}", first.trim()));
        }
        Ok(_) => {}
    }

    let object = compile(&dir);
    let data = dir.join("perf.data");
    let output = Command::new("perf")
        .args(["record", "-q", "-e", "cpu-clock:u", "-o"])
        .arg(&data)
        .args(["--", MODLOAD, "run", "--perf-map"])
        .arg(&object)
        .args(["--", "150000000"])
        .output()
        .expect("run perf record");
    let (pid, _, _) = printed(&output);
    let _map = MapFile::of(pid);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = Command::new("perf")
        .args(["report", "--stdio", "--sort", "symbol", "-i"])
        .arg(&data)
        .output()
        .expect("run perf report");
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    // The first entry is the hottest: `  98.50%  [.] hot_loop [loop.o]`
    // (and, from some perf versions, IPC columns).
    let hottest = text
        .lines()
        .find(|line| !line.starts_with('#') && !line.trim().is_empty())
        .unwrap_or_else(|| panic!("an empty report:\n{text}"));
    assert!(hottest.contains("[.] hot_loop [loop.o]"), "{text}");
    let share: f64 = hottest
        .split_whitespace()
        .next()
        .and_then(|percent| percent.trim_end_matches('%').parse().ok())
        .unwrap_or_else(|| panic!("no percentage in {hottest:?}"));
    assert!(share > 50.0, "{text}");
}
