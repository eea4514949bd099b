//! `perf-report`: the parts of `scripts/bench.sh` that are not criterion.
//!
//! ```text
//! perf-report objects                      build the objects, print "name path" lines
//! perf-report memory OUT.json              region and heap use, measured here
//! perf-report probe WHAT OBJECT N          N loads for callgrind (see below)
//! perf-report probe scale-load|scale-load-noprotect|scale-unload scale N
//!                                          N scaling modules for callgrind
//! perf-report scale N ROUNDS               time, page faults per scaling module
//! perf-report sqlite SUMMARY.json          print section 6 and its targets
//!                                          (scripts/bench-sqlite.sh's figures)
//! perf-report write OUT.md --criterion DIR --hyperfine DIR --memory FILE
//!                   --callgrind FILE [--callgrind-scale FILE] --machine FILE
//!                   [--sqlite FILE] --command TEXT
//! ```
//!
//! `probe` runs its measured part inside `modload_bench_probe`, so
//! `valgrind --tool=callgrind --toggle-collect=modload_bench_probe` counts
//! exactly those instructions. `WHAT` is `load` (a whole modload load),
//! `relocate`, `relocate_bare` (the same object with its relocation sections
//! blanked) or `jitlink` (ORC with JITLink). One unmeasured load runs first.
//!
//! `write` turns the measured figures into `docs/PERFORMANCE.md`; it types no
//! number of its own.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use modload::{Namespace, Object, SectionKind};
use modload_bench::host;
use modload_bench::objects::{self, BenchObject};
use modload_bench::orc::{self, Jit, Linker};
use serde_json::{json, Value};

/// Counts live heap bytes, so the loader's heap use per module can be measured.
struct CountingAllocator;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(size: usize) {
    let now = LIVE.fetch_add(size, Ordering::Relaxed) + size;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to `System` with the caller's own arguments,
// so the `GlobalAlloc` contract holds as it does for `System`; the counters
// only observe sizes.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded from this function's contract.
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            grew(layout.size());
        }
        pointer
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded from this function's contract.
        let pointer = unsafe { System.alloc_zeroed(layout) };
        if !pointer.is_null() {
            grew(layout.size());
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded from this function's contract.
        unsafe { System.dealloc(pointer, layout) }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded from this function's contract.
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("objects") => print_objects(),
        Some("memory") => args
            .get(1)
            .ok_or_else(|| String::from("memory: OUT.json missing"))
            .and_then(|out| memory(Path::new(out))),
        Some("probe") if args.get(1).is_some_and(|what| what.starts_with("scale-")) => {
            probe_scale(&args[1..])
        }
        Some("probe") => probe(&args[1..]),
        Some("scale") => scale(&args[1..]),
        Some("holes") => holes(&args[1..]),
        Some("phases") => phases(&args[1..]),
        Some("copy") => copy(&args[1..]),
        Some("write") => write(&args[1..]),
        Some("sqlite") => args
            .get(1)
            .ok_or_else(|| String::from("sqlite: SUMMARY.json missing"))
            .and_then(|summary| print_sqlite(Path::new(summary))),
        _ => Err(String::from(
            "usage: perf-report objects | memory OUT.json | probe WHAT OBJECT N | write OUT.md ...",
        )),
    };
    if let Err(error) = result {
        eprintln!("perf-report: {error}");
        std::process::exit(1);
    }
}

fn build() -> Result<objects::Objects, String> {
    objects::build_all(&objects::default_dir())
}

fn print_objects() -> Result<(), String> {
    let objects = build()?;
    for object in objects.comparison_set() {
        println!("{} {}", object.name, object.path.display());
    }
    Ok(())
}

/// A loader of its own (fresh namespace, the shared region) that resolves
/// `object`'s imports from this process.
fn process_loader(object: &BenchObject) -> Result<modload::Loader<'static>, String> {
    let region = host::region()?;
    let namespace: &'static Namespace = Box::leak(Box::new(Namespace::new()));
    host::export_process_symbols(namespace, &object.imports)?;
    Ok(host::loader(namespace, region))
}

fn find_object<'o>(objects: &'o objects::Objects, name: &str) -> Result<&'o BenchObject, String> {
    objects
        .comparison_set()
        .into_iter()
        .find(|object| object.name == name)
        .ok_or_else(|| format!("no object named {name}"))
}

/// The measured part of a probe: callgrind counts instructions in here only.
#[no_mangle]
#[inline(never)]
pub fn modload_bench_probe(work: &mut dyn FnMut() -> Result<(), String>) -> Result<(), String> {
    work()
}

fn probe(args: &[String]) -> Result<(), String> {
    let [what, name, count] = args else {
        return Err(String::from("probe WHAT OBJECT N"));
    };
    let count: usize = count.parse().map_err(|_| format!("bad count {count}"))?;
    let objects = build()?;
    let object = find_object(&objects, name)?;
    let loader = process_loader(object)?;
    let bare = host::without_relocations(&object.bytes)?;
    let jit = if what == "jitlink" {
        Some(Jit::new(Linker::JitLink)?)
    } else {
        None
    };
    let c_name = orc::c_string(&object.name);
    for round in 0..=count {
        let measured = round > 0;
        let run = |work: &mut dyn FnMut() -> Result<(), String>| {
            if measured {
                modload_bench_probe(work)
            } else {
                work()
            }
        };
        match what.as_str() {
            "load" => {
                let mut module = None;
                run(&mut || {
                    module = Some(host::load(&loader, &object.name, &object.bytes)?);
                    Ok(())
                })?;
                module.map(host::unload).transpose()?;
            }
            "relocate" | "relocate_bare" => {
                let bytes = if what == "relocate" {
                    &object.bytes[..]
                } else {
                    &bare[..]
                };
                let parsed = Object::parse(&object.name, bytes).map_err(|e| e.to_string())?;
                let planned = loader.plan(parsed).map_err(|e| e.to_string())?;
                let mut placed = Some(planned.allocate().map_err(|e| e.to_string())?);
                let mut relocated = None;
                run(&mut || {
                    let placed = placed.take().ok_or("placed twice")?;
                    relocated = Some(placed.relocate().map_err(|e| e.to_string())?);
                    Ok(())
                })?;
                drop(relocated);
            }
            "jitlink" => {
                let jit = jit.as_ref().ok_or("no JIT")?;
                let mut loaded = None;
                run(&mut || {
                    loaded = Some(jit.load(&c_name, &object.bytes, c"main")?);
                    Ok(())
                })?;
                loaded.map(|loaded| jit.unload(loaded)).transpose()?;
            }
            other => return Err(format!("probe: unknown WHAT {other}")),
        }
    }
    Ok(())
}

/// `probe scale-*`: one unmeasured round of `N` scaling modules (load them
/// all, unload in reverse), then a measured one in which each load (or each
/// unload) runs inside [`modload_bench_probe`]. Instructions per module are
/// callgrind's total over `N`.
fn probe_scale(args: &[String]) -> Result<(), String> {
    let [what, _, count] = args else {
        return Err(String::from(
            "probe scale-load|scale-load-noprotect|scale-unload scale N",
        ));
    };
    let count: usize = count.parse().map_err(|_| format!("bad count {count}"))?;
    let objects = build()?;
    let region = host::region()?;
    let modules = host::scale_modules(&objects.scale_template.bytes, count)?;
    let protection: &'static dyn modload::MemoryProtection = match what.as_str() {
        "scale-load-noprotect" => &modload::NoProtection,
        "scale-load" | "scale-unload" => &modload_platform::host::HOST_PROTECTION,
        other => return Err(format!("probe: unknown WHAT {other}")),
    };
    for measured in [false, true] {
        let namespace = Namespace::new();
        host::export_scale_host(&namespace);
        let loader = modload::Loader::new(&namespace, region, protection);
        let mut loaded = Vec::with_capacity(count);
        for (name, bytes) in &modules {
            let mut work = || -> Result<(), String> {
                loaded.push(host::load(&loader, name, bytes)?);
                Ok(())
            };
            if measured && what != "scale-unload" {
                modload_bench_probe(&mut work)?;
            } else {
                work()?;
            }
        }
        while let Some(module) = loaded.pop() {
            let mut module = Some(module);
            let mut work = || -> Result<(), String> {
                module.take().map(host::unload).transpose()?;
                Ok(())
            };
            if measured && what == "scale-unload" {
                modload_bench_probe(&mut work)?;
            } else {
                work()?;
            }
        }
    }
    Ok(())
}

/// Minor page faults and kernel time of this process so far.
fn rusage() -> (i64, std::time::Duration) {
    // SAFETY: `getrusage` fills the zeroed struct it is given and nothing else.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let system = std::time::Duration::new(
        u64::try_from(usage.ru_stime.tv_sec).unwrap_or(0),
        u32::try_from(usage.ru_stime.tv_usec).unwrap_or(0) * 1000,
    );
    (usage.ru_minflt, system)
}

/// The `N ROUNDS` of a subcommand whose usage is `usage`.
fn count_and_rounds(args: &[String], usage: &str) -> Result<(usize, usize), String> {
    let [count, rounds] = args else {
        return Err(String::from(usage));
    };
    let count = count.parse().map_err(|_| format!("bad count {count}"))?;
    let rounds = rounds.parse().map_err(|_| format!("bad rounds {rounds}"))?;
    Ok((count, rounds))
}

/// `perf-report holes N ROUNDS`: see [`among_holes`].
fn holes(args: &[String]) -> Result<(), String> {
    let (count, rounds) = count_and_rounds(args, "holes N ROUNDS")?;
    let objects = build()?;
    let (with, without) = among_holes(&objects, count, rounds)?;
    println!(
        "large_pic load among {:5} holes: {:8.1} us",
        count / 2,
        with / 1e3
    );
    println!("large_pic load among     0 holes: {:8.1} us", without / 1e3);
    Ok(())
}

/// The median time of one `large_pic` load into a region that holds
/// `count` small modules with every other one unloaded (so `count / 2`
/// holes, each too small for it), and of the same load into a region that
/// holds `count / 2` small modules and no hole, in alternating rounds:
/// (among holes, none). A region allocator that walks its holes shows in
/// the difference. The scaling benchmark unloads in reverse order and
/// leaves no holes.
fn among_holes(
    objects: &objects::Objects,
    count: usize,
    rounds: usize,
) -> Result<(f64, f64), String> {
    let region = host::region()?;
    let large = &objects.large_pic;
    let namespace: &'static Namespace = Box::leak(Box::new(Namespace::new()));
    host::export_process_symbols(namespace, &large.imports)?;
    let large_loader = host::loader(namespace, region);
    let mut times = [Vec::new(), Vec::new()];
    for _ in 0..rounds {
        for (with_holes, samples) in [true, false].into_iter().zip(&mut times) {
            let mut small = Vec::new();
            let loads = if with_holes { count } else { count / 2 };
            for number in 0..loads {
                // Each copy in a namespace of its own: they define the same names.
                let namespace: &'static Namespace = Box::leak(Box::new(Namespace::new()));
                host::export_process_symbols(namespace, &objects.small.imports)?;
                let loader = host::loader(namespace, region);
                let name = format!("small{number}");
                small.push(Some(host::load(&loader, &name, &objects.small.bytes)?));
            }
            if with_holes {
                for module in small.iter_mut().step_by(2) {
                    if let Some(module) = module.take() {
                        host::unload(module)?;
                    }
                }
            }
            let clock = std::time::Instant::now();
            let module = host::load(&large_loader, "large_pic", &large.bytes)?;
            samples.push(clock.elapsed().as_nanos() as f64);
            host::unload(module)?;
            for module in small.into_iter().flatten() {
                host::unload(module)?;
            }
        }
    }
    let [with, without] = times.map(median);
    Ok((with, without))
}

/// `scale N ROUNDS [hot|cold|touch]`: the scaling benchmark's chain (load
/// `N` modules into a fresh namespace, unload them in reverse), `ROUNDS`
/// times after one warm-up round, for each placement and protection
/// (`SCALE_ONLY` picks one). Prints the median time, minor faults and
/// kernel time per module for loading and for unloading.
fn scale(args: &[String]) -> Result<(), String> {
    let usage = "scale N ROUNDS [hot|cold|touch]";
    let (numbers, mode) = args.split_at_checked(2).unwrap_or((args, &[]));
    let mode = match mode {
        [] => "hot",
        [mode] => mode.as_str(),
        _ => return Err(String::from(usage)),
    };
    let (count, rounds) = count_and_rounds(numbers, usage)?;
    let mut evict = vec![0u8; 64 << 20];
    let objects = build()?;
    let region = host::region()?;
    let modules = host::scale_modules(&objects.scale_template.bytes, count)?;
    let packed = host::packed_region()?;
    let only = std::env::var("SCALE_ONLY").ok();
    for label in ["mprotect", "grouped", "noprotect", "packed"] {
        if only.as_deref().is_some_and(|only| only != label) {
            continue;
        }
        let mut samples = Vec::new();
        for round in 0..=rounds {
            let namespace = Namespace::new();
            host::export_scale_host(&namespace);
            let loader = match label {
                "mprotect" => modload::Loader::new(
                    &namespace,
                    region,
                    &modload_platform::host::HOST_PROTECTION,
                ),
                "grouped" => modload::Loader::new(
                    &namespace,
                    region,
                    &modload_platform::host::HOST_PROTECTION,
                )
                .grouped(),
                "noprotect" => modload::Loader::new(&namespace, region, &modload::NoProtection),
                _ => host::packed_loader(&namespace, &packed),
            };
            if mode == "cold" {
                for byte in evict.iter_mut().step_by(64) {
                    *byte = byte.wrapping_add(1);
                }
                std::hint::black_box(&mut evict);
            }
            let (faults0, system0) = rusage();
            let mut load_time = std::time::Duration::ZERO;
            let mut loaded = Vec::with_capacity(count);
            for (name, bytes) in &modules {
                if mode == "touch" {
                    let sum = bytes
                        .iter()
                        .step_by(64)
                        .fold(0u8, |a, b| a.wrapping_add(*b));
                    std::hint::black_box(sum);
                }
                let clock = std::time::Instant::now();
                loaded.push(host::load(&loader, name, bytes)?);
                load_time += clock.elapsed();
            }
            let (faults1, system1) = rusage();
            let clock = std::time::Instant::now();
            for module in loaded.into_iter().rev() {
                host::unload(module)?;
            }
            let unload_time = clock.elapsed();
            let (faults2, system2) = rusage();
            if round > 0 {
                samples.push([
                    load_time.as_nanos() as f64,
                    (faults1 - faults0) as f64,
                    (system1 - system0).as_nanos() as f64,
                    unload_time.as_nanos() as f64,
                    (faults2 - faults1) as f64,
                    (system2 - system1).as_nanos() as f64,
                ]);
            }
        }
        let per_module = |column: usize| {
            median(samples.iter().map(|sample| sample[column]).collect()) / count as f64
        };
        println!(
            "{label:9} n={count:5}  load {:7.2} us/module {:6.2} faults {:6.2} us sys | \
             unload {:7.2} us/module {:6.2} faults {:6.2} us sys",
            per_module(0) / 1e3,
            per_module(1),
            per_module(2) / 1e3,
            per_module(3) / 1e3,
            per_module(4),
            per_module(5) / 1e3,
        );
    }
    Ok(())
}

/// The module counts of the table of stages at scale: the scaling
/// benchmark's smallest and largest.
const PHASE_COUNTS: [usize; 2] = [10, 5_000];

/// The stages of [`host::StageTimes`], in load order, as the report names them.
const STAGES: [&str; 6] = ["parse", "plan", "allocate", "relocate", "finalize", "start"];

/// `phases N ROUNDS`: [`stage_times_at_scale`] for `N` modules, with the
/// host's `mprotect` and without.
fn phases(args: &[String]) -> Result<(), String> {
    let (count, rounds) = count_and_rounds(args, "phases N ROUNDS")?;
    let objects = build()?;
    let modules = host::scale_modules(&objects.scale_template.bytes, count)?;
    for (label, protection) in scale_protections() {
        let times = stage_times_at_scale(&modules, protection, rounds)?;
        let shown: Vec<String> = STAGES
            .iter()
            .zip(times)
            .map(|(stage, ns)| format!("{stage} {:.2}", ns / 1e3))
            .collect();
        println!("{label:9} n={count:5}  us/module: {}", shown.join("  "));
    }
    Ok(())
}

/// The two protections the table of stages at scale compares.
fn scale_protections() -> [(&'static str, &'static dyn modload::MemoryProtection); 2] {
    [
        ("mprotect", &modload_platform::host::HOST_PROTECTION),
        ("noprotect", &modload::NoProtection),
    ]
}

/// Each stage's time per module (ns) when `modules` are loaded one after
/// another into a fresh namespace, as in the scaling benchmark, then
/// unloaded in reverse: the median over `rounds` rounds, after one round
/// unmeasured. Says which stages grow with the number of modules.
fn stage_times_at_scale(
    modules: &[(String, Vec<u8>)],
    protection: &'static dyn modload::MemoryProtection,
    rounds: usize,
) -> Result<[f64; 6], String> {
    let region = host::region()?;
    let mut samples: Vec<[f64; 6]> = Vec::with_capacity(rounds);
    for round in 0..=rounds {
        let namespace = Namespace::new();
        host::export_scale_host(&namespace);
        let loader = modload::Loader::new(&namespace, region, protection);
        let mut sums = [std::time::Duration::ZERO; 6];
        let mut loaded = Vec::with_capacity(modules.len());
        for (name, bytes) in modules {
            let (module, times) = host::load_timed(&loader, name, bytes)?;
            let stages = [
                times.parse,
                times.plan,
                times.allocate,
                times.relocate,
                times.finalize,
                times.start,
            ];
            for (sum, stage) in sums.iter_mut().zip(stages) {
                *sum += stage;
            }
            loaded.push(module);
        }
        for module in loaded.into_iter().rev() {
            host::unload(module)?;
        }
        if round > 0 {
            samples.push(sums.map(|sum| sum.as_nanos() as f64 / modules.len().max(1) as f64));
        }
    }
    let mut medians = [0.0; 6];
    for (stage, value) in medians.iter_mut().enumerate() {
        *value = median(samples.iter().map(|sample| sample[stage]).collect());
    }
    Ok(medians)
}

/// `copy OBJECT ROUNDS`: `allocate` against a `memcpy` of the same bytes,
/// under several conditions, with minor faults per call.
fn copy(args: &[String]) -> Result<(), String> {
    let [name, rounds] = args else {
        return Err(String::from("copy OBJECT ROUNDS"));
    };
    let rounds: usize = rounds.parse().map_err(|_| format!("bad rounds {rounds}"))?;
    let objects = build()?;
    let object = find_object(&objects, name)?;
    let loader = process_loader(object)?;
    let copied = host::copied_bytes(&loader, &object.name, &object.bytes)? as usize;
    let report = |label: &str, mut samples: Vec<(f64, f64)>| {
        samples.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (time, _) = samples.get(samples.len() / 2).copied().unwrap_or_default();
        let faults = samples.iter().map(|s| s.1).sum::<f64>() / samples.len().max(1) as f64;
        println!(
            "{label:60} {:8.1} us  {:7.1} faults/call",
            time / 1e3,
            faults
        );
    };
    // As the phase benchmark: allocate timed inside whole loads.
    let mut samples = Vec::new();
    for _ in 0..rounds {
        let (faults0, _) = rusage();
        let (module, times) = host::load_timed(&loader, &object.name, &object.bytes)?;
        let (faults1, _) = rusage();
        samples.push((times.allocate.as_nanos() as f64, (faults1 - faults0) as f64));
        host::unload(module)?;
    }
    report("allocate inside load (phase bench)", samples);
    // allocate alone, repeatedly, no relocate/finalize (no mprotect).
    let mut samples = Vec::new();
    for _ in 0..rounds {
        let parsed = Object::parse(&object.name, &object.bytes).map_err(|e| e.to_string())?;
        let planned = loader.plan(parsed).map_err(|e| e.to_string())?;
        let (faults0, _) = rusage();
        let clock = std::time::Instant::now();
        let placed = planned.allocate().map_err(|e| e.to_string())?;
        let time = clock.elapsed();
        let (faults1, _) = rusage();
        samples.push((time.as_nanos() as f64, (faults1 - faults0) as f64));
        drop(placed);
    }
    report("allocate after parse+plan, no mprotect round trip", samples);
    // The floor as the bench measures it.
    let source = vec![0x5au8; copied];
    let mut destination = vec![0u8; copied];
    let mut samples = Vec::new();
    for _ in 0..rounds {
        let clock = std::time::Instant::now();
        destination.copy_from_slice(std::hint::black_box(&source));
        std::hint::black_box(&mut destination);
        samples.push((clock.elapsed().as_nanos() as f64, 0.0));
    }
    report("memcpy floor (hot vec to hot vec, bench)", samples);
    // memcpy from the object's bytes into a mapping of our own, as a region
    // is mapped: after the mprotect round trip a load and unload put its
    // pages through (read+execute, then read-write again), or without it.
    let pages = copied.div_ceil(4096) * 4096;
    // SAFETY: a fresh anonymous mapping, used only here and never unmapped.
    let mapping = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            pages,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if mapping == libc::MAP_FAILED {
        return Err(String::from("mmap failed"));
    }
    let source = object
        .bytes
        .get(..copied)
        .ok_or("object shorter than its sections")?;
    for (label, round_trip) in [
        ("memcpy object bytes -> mapping after mprotect RX, RW", true),
        ("memcpy object bytes -> mapping, again (no mprotect)", false),
    ] {
        let mut samples = Vec::new();
        for _ in 0..rounds {
            if round_trip {
                // SAFETY: the range is the mapping above; only its
                // permissions change, and nothing holds a reference into it.
                unsafe {
                    libc::mprotect(mapping, pages, libc::PROT_READ | libc::PROT_EXEC);
                    libc::mprotect(mapping, pages, libc::PROT_READ | libc::PROT_WRITE);
                }
            }
            let (faults0, _) = rusage();
            let clock = std::time::Instant::now();
            // SAFETY: the mapping is `pages >= copied` bytes, read-write, and
            // this is the only reference to it.
            let target = unsafe { std::slice::from_raw_parts_mut(mapping.cast::<u8>(), copied) };
            target.copy_from_slice(std::hint::black_box(source));
            std::hint::black_box(target);
            let time = clock.elapsed();
            let (faults1, _) = rusage();
            samples.push((time.as_nanos() as f64, (faults1 - faults0) as f64));
        }
        report(label, samples);
    }
    Ok(())
}

/// Sum of the plan's section sizes: every kind's exact extent, no padding
/// between segments.
fn section_sum(plan: &modload::Plan) -> u64 {
    SectionKind::ALL
        .iter()
        .map(|kind| plan.kind(*kind).size)
        .sum()
}

/// Small modules loaded before every other one is unloaded, for the table
/// of a large load among holes.
const HOLE_COUNTS: [usize; 3] = [200, 2000, 10_000];

fn memory(out: &Path) -> Result<(), String> {
    let objects = build()?;
    let region = host::region()?;
    let mut report = serde_json::Map::new();

    // One module at a time: the comparison objects.
    for object in objects.comparison_set() {
        let namespace: &'static Namespace = Box::leak(Box::new(Namespace::new()));
        host::export_process_symbols(namespace, &object.imports)?;
        let loader = host::loader(namespace, region);
        let parsed = Object::parse(&object.name, &object.bytes).map_err(|e| e.to_string())?;
        let planned = loader.plan(parsed).map_err(|e| e.to_string())?;
        let sections = section_sum(planned.plan());
        let planned_size = planned.plan().size();
        drop(planned);
        let region_before = region.usage().used;
        let heap_before = LIVE.load(Ordering::Relaxed);
        PEAK.store(heap_before, Ordering::Relaxed);
        let module = host::load(&loader, &object.name, &object.bytes)?;
        let region_used = region.usage().used - region_before;
        let heap_kept = LIVE.load(Ordering::Relaxed).saturating_sub(heap_before);
        let heap_peak = PEAK.load(Ordering::Relaxed).saturating_sub(heap_before);
        host::unload(module)?;
        report.insert(
            object.name.clone(),
            json!({
                "sections": sections,
                "plan_size": planned_size,
                "region_used": region_used,
                "heap_kept": heap_kept,
                "heap_peak": heap_peak,
                "object_bytes": object.bytes.len(),
            }),
        );
    }

    // Many small modules: 1,000 scaling modules in one namespace.
    let count = 1_000;
    let namespace = Namespace::new();
    host::export_scale_host(&namespace);
    let loader = host::loader(&namespace, region);
    let modules_bytes = (1..=count)
        .map(|number| objects::scale_module(&objects.scale_template.bytes, number))
        .collect::<Result<Vec<_>, _>>()?;
    let mut sections = 0;
    for bytes in &modules_bytes {
        // Planning resolves nothing, so each module plans on its own.
        let parsed = Object::parse("scale", bytes).map_err(|e| e.to_string())?;
        let planned = loader.plan(parsed).map_err(|e| e.to_string())?;
        sections += section_sum(planned.plan());
    }
    let region_before = region.usage().used;
    let heap_before = LIVE.load(Ordering::Relaxed);
    let mut modules = Vec::with_capacity(count);
    for (number, bytes) in modules_bytes.iter().enumerate() {
        modules.push(host::load(&loader, &format!("m{:06}", number + 1), bytes)?);
    }
    let region_used = region.usage().used - region_before;
    let heap_kept = LIVE.load(Ordering::Relaxed).saturating_sub(heap_before);
    while let Some(module) = modules.pop() {
        host::unload(module)?;
    }
    report.insert(
        String::from("scale_1000"),
        json!({
            "modules": count,
            "sections": sections,
            "region_used": region_used,
            "heap_kept": heap_kept,
            "region_after_unload": region.usage().used - region_before,
        }),
    );
    packed_memory(&objects, &modules_bytes, &mut report)?;
    let mut holes = Vec::new();
    for count in HOLE_COUNTS {
        let (with, without) = among_holes(&objects, count, 5)?;
        holes.push(json!({ "holes": count / 2, "with_ns": with, "without_ns": without }));
    }
    report.insert(String::from("holes"), Value::Array(holes));
    let largest = PHASE_COUNTS.iter().copied().max().unwrap_or(0);
    let scale_modules = host::scale_modules(&objects.scale_template.bytes, largest)?;
    let mut stages = Vec::new();
    for count in PHASE_COUNTS {
        // About 20,000 loads at every size.
        let rounds = (20_000 / count).clamp(5, 2_000);
        for (label, protection) in scale_protections() {
            let times = stage_times_at_scale(
                scale_modules.get(..count).unwrap_or_default(),
                protection,
                rounds,
            )?;
            stages.push(
                json!({ "modules": count, "protection": label, "rounds": rounds, "ns": times }),
            );
        }
    }
    report.insert(String::from("scale_stages"), Value::Array(stages));
    let text = serde_json::to_string_pretty(&Value::Object(report)).map_err(|e| e.to_string())?;
    std::fs::write(out, text).map_err(|error| format!("{}: {error}", out.display()))
}

/// Packed placement (`Loader::packed`): the small object alone, then the
/// 1,000 scaling modules, in a packed region; whole pages committed against
/// the sections; and the time per scaling-module load, packed and default,
/// measured here in alternating rounds.
fn packed_memory(
    objects: &objects::Objects,
    modules_bytes: &[Vec<u8>],
    report: &mut serde_json::Map<String, Value>,
) -> Result<(), String> {
    let packed = host::packed_region()?;
    let region = packed.region;

    // The small object alone: still one page per permission class it uses.
    let small = &objects.small;
    let namespace: &'static Namespace = Box::leak(Box::new(Namespace::new()));
    host::export_process_symbols(namespace, &small.imports)?;
    let loader = host::packed_loader(namespace, &packed);
    let parsed = Object::parse(&small.name, &small.bytes).map_err(|e| e.to_string())?;
    let sections = section_sum(loader.plan(parsed).map_err(|e| e.to_string())?.plan());
    let module = host::load(&loader, &small.name, &small.bytes)?;
    let usage = region.packed_usage();
    host::unload(module)?;
    report.insert(
        format!("{}_packed", small.name),
        json!({
            "sections": sections,
            "committed": usage.committed,
            "pieces": usage.pieces,
            "reserved": usage.reserved,
        }),
    );

    // 1,000 scaling modules, packed.
    let count = modules_bytes.len();
    let namespace = Namespace::new();
    host::export_scale_host(&namespace);
    let loader = host::packed_loader(&namespace, &packed);
    let mut sections = 0;
    for bytes in modules_bytes {
        let parsed = Object::parse("scale", bytes).map_err(|e| e.to_string())?;
        sections += section_sum(loader.plan(parsed).map_err(|e| e.to_string())?.plan());
    }
    let region_before = region.usage().used;
    let heap_before = LIVE.load(Ordering::Relaxed);
    let mut modules = Vec::with_capacity(count);
    for (number, bytes) in modules_bytes.iter().enumerate() {
        modules.push(host::load(&loader, &format!("m{:06}", number + 1), bytes)?);
    }
    let usage = region.packed_usage();
    let region_used = region.usage().used - region_before;
    let heap_kept = LIVE.load(Ordering::Relaxed).saturating_sub(heap_before);
    while let Some(module) = modules.pop() {
        host::unload(module)?;
    }
    let after = region.usage().used - region_before;

    // Time per load, packed and default, in alternating rounds of all 1,000.
    let default_region = host::region()?;
    let mut times: [Vec<f64>; 4] = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..5 {
        for (mode, times) in times.iter_mut().enumerate() {
            let namespace = Namespace::new();
            host::export_scale_host(&namespace);
            let loader = match mode {
                0 => host::loader(&namespace, default_region),
                1 => host::packed_loader(&namespace, &packed),
                2 => host::packed_loader(&namespace, &packed).packed(packed.window_writer),
                _ => host::loader(&namespace, default_region).grouped(),
            };
            let mut modules = Vec::with_capacity(count);
            let start = std::time::Instant::now();
            for (number, bytes) in modules_bytes.iter().enumerate() {
                modules.push(host::load(&loader, &format!("m{:06}", number + 1), bytes)?);
            }
            times.push(start.elapsed().as_nanos() as f64 / count as f64);
            while let Some(module) = modules.pop() {
                host::unload(module)?;
            }
        }
    }
    let [default_times, packed_times, window_times, grouped_times] = times;
    report.insert(
        format!("scale_{count}_packed"),
        json!({
            "modules": count,
            "sections": sections,
            "committed": usage.committed,
            "pieces": usage.pieces,
            "reserved": usage.reserved,
            "region_used": region_used,
            "heap_kept": heap_kept,
            "region_after_unload": after,
            "load_ns_default": median(default_times),
            "load_ns_packed": median(packed_times),
            "load_ns_packed_window": median(window_times),
            "load_ns_grouped": median(grouped_times),
        }),
    );
    Ok(())
}

/// `--flag value` pairs after the output path.
fn flags(args: &[String]) -> Result<(PathBuf, BTreeMap<String, String>), String> {
    let (out, rest) = args.split_first().ok_or("write OUT.md ...")?;
    let mut map = BTreeMap::new();
    for pair in rest.chunks(2) {
        match pair {
            [flag, value] if flag.starts_with("--") => {
                map.insert(flag.trim_start_matches("--").to_owned(), value.clone());
            }
            _ => return Err(format!("write: bad arguments {pair:?}")),
        }
    }
    Ok((PathBuf::from(out), map))
}

/// Criterion's medians (nanoseconds) by full benchmark id.
fn criterion_medians(dir: &Path) -> Result<BTreeMap<String, f64>, String> {
    let mut medians = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|name| name == "new") {
                    let read = |file: &str| -> Option<Value> {
                        serde_json::from_str(&std::fs::read_to_string(path.join(file)).ok()?).ok()
                    };
                    if let (Some(benchmark), Some(estimates)) =
                        (read("benchmark.json"), read("estimates.json"))
                    {
                        if let (Some(id), Some(median)) = (
                            benchmark["full_id"].as_str(),
                            estimates["median"]["point_estimate"].as_f64(),
                        ) {
                            medians.insert(id.to_owned(), median);
                        }
                    }
                } else {
                    pending.push(path);
                }
            }
        }
    }
    Ok(medians)
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The table of stage times per module at the smallest and largest
/// scaling runs, with and without `mprotect`, and what each stage adds.
fn write_scale_stages(details: &mut String, rows: &[Value]) {
    let [small, large] = PHASE_COUNTS;
    let stages_of = |count: usize, protection: &str| -> Option<Vec<f64>> {
        let row = rows.iter().find(|row| {
            row["modules"].as_u64() == Some(count as u64)
                && row["protection"].as_str() == Some(protection)
        })?;
        row["ns"].as_array()?.iter().map(Value::as_f64).collect()
    };
    let [(with, _), (without, _)] = scale_protections();
    let (Some(with_small), Some(with_large), Some(without_small), Some(without_large)) = (
        stages_of(small, with),
        stages_of(large, with),
        stages_of(small, without),
        stages_of(large, without),
    ) else {
        return;
    };
    let _ = writeln!(
        details,
        "Where the time per module grows: the same scaling runs at {small} and\n\
         {large} modules, each stage timed inside every load (`Loader::parse`,\n\
         `plan`, `allocate`, `relocate`, `finalize`, `start`), per module, median\n\
         of about 20,000 loads at each size (`perf-report phases N ROUNDS`).\n\
         These runs read the clock between stages and are not the runs of the\n\
         table above: compare the two sizes within this table.\n"
    );
    let _ = writeln!(
        details,
        "| stage | {small} modules | {large} | growth | {small}, without `mprotect` | {large} | growth |\n\
         |---|---|---|---|---|---|---|"
    );
    let growth = |from: f64, to: f64| {
        let percent = if from > 0.0 {
            (to / from - 1.0) * 100.0
        } else {
            0.0
        };
        format!("{:+.2} µs ({percent:+.0}%)", (to - from) / 1e3)
    };
    let columns = [&with_small, &with_large, &without_small, &without_large];
    let rows = STAGES
        .iter()
        .enumerate()
        .map(|(index, stage)| {
            let at = columns.map(|values| values.get(index).copied().unwrap_or(0.0));
            (format!("`{stage}`"), at)
        })
        .chain([(
            String::from("all stages"),
            columns.map(|values| values.iter().sum::<f64>()),
        )]);
    for (label, [a, b, c, d]) in rows {
        let _ = writeln!(
            details,
            "| {label} | {} | {} | {} | {} | {} | {} |",
            time(a),
            time(b),
            growth(a, b),
            time(c),
            time(d),
            growth(c, d)
        );
    }
    let _ = writeln!(details);
}

/// The middle of `samples` (the upper one of an even count), 0 if none.
fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples.get(samples.len() / 2).copied().unwrap_or(0.0)
}

/// A duration in nanoseconds, in a readable unit.
fn time(nanoseconds: f64) -> String {
    if nanoseconds >= 1e6 {
        format!("{:.2} ms", nanoseconds / 1e6)
    } else if nanoseconds >= 1e3 {
        format!("{:.1} µs", nanoseconds / 1e3)
    } else {
        format!("{nanoseconds:.0} ns")
    }
}

fn bytes(count: f64) -> String {
    if count >= 1024.0 * 1024.0 {
        format!("{:.2} MiB", count / (1024.0 * 1024.0))
    } else if count >= 1024.0 {
        format!("{:.1} KiB", count / 1024.0)
    } else {
        format!("{count:.0} B")
    }
}

fn verdict(met: bool) -> &'static str {
    if met {
        "**met**"
    } else {
        "**missed**"
    }
}

/// The functions of a modload load worth a row, as callgrind names them.
const PROFILED: [(&str, &str); 9] = [
    (
        "modload::object::Object::parse_with_limits",
        "parse (goblin's headers, tables read in place)",
    ),
    ("modload::plan::plan", "plan"),
    ("modload::stage::Planned::allocate", "allocate and copy"),
    ("modload::stage::Placed::relocate", "relocate (all of it)"),
    (
        "modload::namespace::names::NameList::collect",
        "… collecting and hashing the global names",
    ),
    (
        "modload::namespace::Namespace::publish",
        "start: publish the exports",
    ),
    ("modload::stage::Relocated::finalize", "finalize"),
    (
        "__memcmp_avx2_movbe",
        "string comparisons (BTreeMap keys, sorting)",
    ),
    ("malloc", "heap allocation (malloc)"),
];

/// Inclusive instruction counts of [`PROFILED`] functions from
/// `callgrind_annotate --inclusive=yes`, per load.
fn profile_table(details: &mut String, path: &Path, callgrind: &Value) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    let per_load = callgrind["load"]["instructions"].as_f64().unwrap_or(0.0);
    let total: f64 = text
        .lines()
        .find(|line| line.contains("PROGRAM TOTALS"))
        .and_then(|line| line.split_whitespace().next())
        .and_then(|count| count.replace(',', "").parse().ok())
        .unwrap_or(0.0);
    if total <= 0.0 || per_load <= 0.0 {
        return;
    }
    let loads = total / per_load;
    let _ = writeln!(
        details,
        "Where the instructions of one `large_pic` load go (callgrind, inclusive,\n\
         per load; rows overlap where one function calls another):\n"
    );
    let _ = writeln!(
        details,
        "| function | what | instructions | share |\n|---|---|---|---|"
    );
    for (function, what) in PROFILED {
        let needle = format!(":{function} [");
        let best = text
            .lines()
            .filter(|line| line.contains(&needle))
            .filter_map(|line| line.split_whitespace().next())
            .filter_map(|count| count.replace(',', "").parse::<f64>().ok())
            .fold(0.0, f64::max);
        if best > 0.0 {
            let _ = writeln!(
                details,
                "| `{function}` | {what} | {:.0} | {:.0}% |",
                best / loads,
                100.0 * best / total
            );
        }
    }
    let _ = writeln!(details);
}

/// The scaling runs in instructions per module (`probe scale-*` under
/// callgrind, from `--callgrind-scale`): the loader's own work, which machine
/// noise and cache sizes do not move.
fn scale_instructions(details: &mut String, path: Option<&String>) {
    let Some(counts) = path.and_then(|path| read_json(Path::new(path)).ok()) else {
        return;
    };
    let count = |what: &str, modules: usize| counts[format!("{what}/{modules}")].as_f64();
    let kinds = ["scale-load-noprotect", "scale-unload"];
    if kinds.iter().any(|what| count(what, 10).is_none()) {
        return;
    }
    let _ = writeln!(
        details,
        "The same runs in instructions per module (`valgrind --tool=callgrind`,\n\
         `perf-report probe scale-load-noprotect|scale-unload scale N`): the\n\
         loader's own work, which neither machine noise nor cache sizes move.\n\
         The kernel's side of `mprotect` is not counted.\n"
    );
    let _ = writeln!(
        details,
        "| modules | load, instructions per module | vs 10 | unload, instructions per module | vs 10 |\n\
         |---|---|---|---|---|"
    );
    for modules in [10usize, 100, 1_000, 5_000] {
        let mut row = format!("| {modules} |");
        for what in kinds {
            match (count(what, 10), count(what, modules)) {
                (Some(reference), Some(value)) if reference > 0.0 => {
                    let _ = write!(
                        row,
                        " {value:.0} | {:+.1}% |",
                        (value / reference - 1.0) * 100.0
                    );
                }
                _ => row.push_str(" | |"),
            }
        }
        let _ = writeln!(details, "{row}");
    }
    let _ = writeln!(details);
}

/// What `write` needs besides criterion: per-object facts measured here.
struct ObjectFacts {
    name: String,
    relocations: u64,
    copied: u64,
    text: u64,
    file: usize,
}

fn object_facts() -> Result<Vec<ObjectFacts>, String> {
    let objects = build()?;
    let region = host::region()?;
    let mut facts = Vec::new();
    for object in objects.comparison_set() {
        let namespace: &'static Namespace = Box::leak(Box::new(Namespace::new()));
        host::export_process_symbols(namespace, &object.imports)?;
        let loader = host::loader(namespace, region);
        let parsed = Object::parse(&object.name, &object.bytes).map_err(|e| e.to_string())?;
        let text = loader
            .plan(parsed)
            .map_err(|e| e.to_string())?
            .plan()
            .kind(SectionKind::Text)
            .size;
        facts.push(ObjectFacts {
            name: object.name.clone(),
            relocations: host::relocation_count(&loader, &object.name, &object.bytes)?,
            copied: host::copied_bytes(&loader, &object.name, &object.bytes)?,
            text,
            file: object.bytes.len(),
        });
    }
    Ok(facts)
}

fn write(args: &[String]) -> Result<(), String> {
    let (out, flags) = flags(args)?;
    let flag = |name: &str| {
        flags
            .get(name)
            .cloned()
            .ok_or_else(|| format!("write: --{name} missing"))
    };
    let medians = criterion_medians(Path::new(&flag("criterion")?))?;
    let median = |id: &str| {
        medians
            .get(id)
            .copied()
            .ok_or_else(|| format!("no criterion result for {id}"))
    };
    let memory = read_json(Path::new(&flag("memory")?))?;
    let machine = std::fs::read_to_string(flag("machine")?).map_err(|e| e.to_string())?;
    let hyperfine_dir = PathBuf::from(flag("hyperfine")?);
    let callgrind = read_json(Path::new(&flag("callgrind")?))?;
    let command = flag("command")?;
    let facts = object_facts()?;

    let mut doc = String::new();
    let _ = writeln!(doc, "# Performance\n");
    let _ = writeln!(
        doc,
        "Generated by `{command}` from the figures it measured; edit nothing by hand.\n\
         Times are criterion medians unless a table says otherwise. Every comparison\n\
         in a table was measured in the same run, on the same machine, with the same\n\
         object bytes.\n"
    );

    // Targets first: the verdicts, each from a figure further down.
    let mut targets = String::new();
    let mut details = String::new();

    // 1. Against LLVM.
    let _ = writeln!(
        details,
        "## 1. Against LLVM ORC, same process, same bytes\n"
    );
    let _ = writeln!(
        details,
        "One load: modload `Loader::load` (parse, plan, allocate and copy, resolve and\n\
         relocate, finalize with `mprotect`, start); ORC `LLVMOrcLLJITAddObjectFileWithRT`\n\
         and `LLVMOrcLLJITLookup` of `main`, which links the whole object, with JITLink\n\
         (`ObjectLinkingLayer`, in-process memory manager) or RuntimeDyld\n\
         (`RTDyldObjectLinkingLayer`, `SectionMemoryManager`). Unloading is not timed\n\
         for any of them. Imports (`strnlen`) come from the process for all three.\n"
    );
    let _ = writeln!(
        details,
        "| object | size | text | relocations | modload | JITLink | RuntimeDyld | modload / JITLink | JITLink ÷ modload |\n\
         |---|---|---|---|---|---|---|---|---|"
    );
    for fact in &facts {
        let modload = median(&format!("load-{}/modload", fact.name))?;
        let jitlink = median(&format!("load-{}/jitlink", fact.name))?;
        let rtdyld = median(&format!("load-{}/rtdyld", fact.name))?;
        let _ = writeln!(
            details,
            "| `{}` | {} | {} | {} | {} | {} | {} | {:.3} | {:.1}× |",
            fact.name,
            bytes(fact.file as f64),
            bytes(fact.text as f64),
            fact.relocations,
            time(modload),
            time(jitlink),
            time(rtdyld),
            modload / jitlink,
            jitlink / modload
        );
        if fact.name.starts_with("large") {
            let _ = writeln!(
                targets,
                "| Large object `{}`: modload ≥ 20× faster than JITLink | {:.1}× ({} vs {}) | {} |",
                fact.name,
                jitlink / modload,
                time(modload),
                time(jitlink),
                verdict(jitlink / modload >= 20.0)
            );
        }
    }
    let _ = writeln!(details);

    // 2. Phases.
    let _ = writeln!(details, "## 2. modload's phases\n");
    let _ = writeln!(
        details,
        "Each stage timed on its own inside full loads. *Resolution* is `relocate` on\n\
         the same object with its relocation sections blanked (every symbol still\n\
         resolved, exports still collected); *relocation* is the difference to the\n\
         real `relocate`, measured in alternating pairs so that noise cancels.\n\
         *Copy* is `allocate` (reserve, zero, copy the sections); the floor is one\n\
         `memcpy` of the same number of bytes.\n"
    );
    let _ = writeln!(
        details,
        "| object | parse | plan | allocate + copy | resolution | relocation | finalize | start | ns / relocation | copy rate | memcpy floor | copy ÷ floor |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for fact in &facts {
        let stage = |stage: &str| median(&format!("phase-{}/{stage}", fact.name));
        let bare = stage("relocate_bare")?;
        let relocation = stage("relocation")?;
        let per_relocation = relocation / fact.relocations.max(1) as f64;
        let allocate = stage("allocate")?;
        let memcpy = stage("memcpy")?;
        let rate = |nanoseconds: f64| fact.copied as f64 / nanoseconds; // bytes/ns = GB/s
        let _ = writeln!(
            details,
            "| `{}` | {} | {} | {} | {} | {} | {} | {} | {:.1} | {:.2} GB/s | {:.2} GB/s | {:.2} |",
            fact.name,
            time(stage("parse")?),
            time(stage("plan")?),
            time(allocate),
            time(bare),
            time(relocation),
            time(stage("finalize")?),
            time(stage("start")?),
            per_relocation,
            rate(allocate),
            rate(memcpy),
            allocate / memcpy
        );
        if fact.name.starts_with("large") {
            let _ = writeln!(
                targets,
                "| Relocation cost `{}`: ≤ 10 ns per relocation | {:.1} ns | {} |",
                fact.name,
                per_relocation,
                verdict(per_relocation <= 10.0)
            );
            let _ = writeln!(
                targets,
                "| Copy `{}`: within 2× of `memcpy` | {:.2}× ({} vs {} for {}) | {} |",
                fact.name,
                allocate / memcpy,
                time(allocate),
                time(memcpy),
                bytes(fact.copied as f64),
                verdict(allocate / memcpy <= 2.0)
            );
        }
    }
    let _ = writeln!(details);
    if let Some(counts) = callgrind.as_object() {
        let _ = writeln!(
            details,
            "Instruction counts from `valgrind --tool=callgrind` (independent of machine\n\
             noise), per call, averaged over the probe's measured calls:\n"
        );
        let _ = writeln!(
            details,
            "| what | object | instructions | per relocation |\n|---|---|---|---|"
        );
        for (key, value) in counts {
            let instructions = value["instructions"].as_f64().unwrap_or(0.0);
            let object = value["object"].as_str().unwrap_or("?");
            let relocations = facts
                .iter()
                .find(|fact| fact.name == object)
                .map_or(1, |fact| fact.relocations.max(1));
            let _ = writeln!(
                details,
                "| {key} | `{object}` | {:.0} | {:.1} |",
                instructions,
                instructions / relocations as f64
            );
        }
        let get = |key: &str| counts.get(key).and_then(|v| v["instructions"].as_f64());
        if let (Some(full), Some(bare)) = (get("relocate"), get("relocate_bare")) {
            let object = counts["relocate"]["object"].as_str().unwrap_or("?");
            let relocations = facts
                .iter()
                .find(|fact| fact.name == object)
                .map_or(1, |fact| fact.relocations.max(1));
            let _ = writeln!(
                details,
                "\nRelocation alone (`relocate` − `relocate_bare`): {:.1} instructions per relocation.",
                (full - bare) / relocations as f64
            );
        }
        if let (Some(load), Some(jitlink)) = (get("load"), get("jitlink")) {
            let _ = writeln!(
                details,
                "JITLink ÷ modload, whole load, in instructions: {:.1}×.",
                jitlink / load
            );
        }
        let _ = writeln!(details);
    }

    if let Some(profile) = flags.get("profile") {
        profile_table(&mut details, Path::new(profile), &callgrind);
    }

    // 3. Scaling.
    let _ = writeln!(details, "## 3. Many modules in one namespace\n");
    let _ = writeln!(
        details,
        "Modules of {} functions each, loaded one after another into a fresh\n\
         namespace; module *k* imports from module *k − 1*, from two pseudo-random\n\
         earlier modules and from the host (`host_add`, `host_counter`). Then all are\n\
         unloaded in reverse order. Time per module = median of the whole run ÷ *n*.\n",
        objects::SMALL_FUNCTIONS
    );
    let _ = writeln!(
        details,
        "*Object just read*: each object's bytes are read, untimed, right before\n\
         its load, as a kernel reads a module's file before loading it. In the\n\
         other columns the 10 objects of the smallest run are still cached from\n\
         the iteration before, while the 5,000 of the largest never are.\n"
    );
    let _ = writeln!(
        details,
        "*Grouped*: the same runs with `Loader::grouped`, which puts each\n\
         segment in pages next to other modules' segments of the same\n\
         permissions instead of next to its own module's other segments. On\n\
         Linux every run of pages with one set of permissions is a mapping:\n\
         by default each module makes three, and `mprotect` cuts a new one out\n\
         of the read-write rest at every load and merges it back at every\n\
         unload; grouped, a module's code extends the mapping of the code\n\
         before it, and the region stays a few mappings however many modules\n\
         are loaded (`tests/tests/grouped.rs` checks that 120 modules make at\n\
         most a tenth as many mappings grouped as by default).\n"
    );
    let _ = writeln!(
        details,
        "| modules | load, per module | vs 10 | load, object just read | vs 10 | load without `mprotect` | vs 10 | unload, per module | vs 10 | load, grouped | vs 10 | unload, grouped | vs 10 |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    let sizes = [10usize, 100, 1_000, 5_000];
    let per_module = |kind: &str, count: usize| {
        median(&format!("{kind}/{count}")).map(|total| total / count as f64)
    };
    let kinds = [
        "scale-load",
        "scale-load-fresh",
        "scale-load-noprotect",
        "scale-unload",
        "scale-load-grouped",
        "scale-unload-grouped",
    ];
    let mut worst = [0f64; 6];
    for count in sizes {
        let mut row = format!("| {count} |");
        for (kind, worst) in kinds.iter().zip(worst.iter_mut()) {
            let reference = per_module(kind, 10)?;
            let value = per_module(kind, count)?;
            let change = value / reference - 1.0;
            // Signed: a run that gets faster per module is no flatter.
            if change.abs() > worst.abs() {
                *worst = change;
            }
            let _ = write!(row, " {} | {:+.0}% |", time(value), change * 100.0);
        }
        let _ = writeln!(details, "{row}");
    }
    let _ = writeln!(details);
    scale_instructions(&mut details, flags.get("callgrind-scale"));
    let labels = [
        "Load time per module flat (±20%) from 10 to 5,000 modules",
        "… the same with each object read just before its load (inputs as warm at every size)",
        "… the same without `mprotect` (`NoProtection`: the loader alone)",
        "Unload time per module flat (±20%) from 10 to 5,000 modules",
        "Load time per module flat (±20%), grouped (`Loader::grouped`)",
        "Unload time per module flat (±20%), grouped",
    ];
    for (label, worst) in labels.iter().zip(worst) {
        let _ = writeln!(
            targets,
            "| {label} | worst {:+.0}% | {} |",
            worst * 100.0,
            verdict(worst.abs() <= 0.2)
        );
    }

    let number = |value: &Value, key: &str| value[key].as_f64().unwrap_or(0.0);

    // 3, continued: a large load among the holes of many unloads.
    if let Some(rows) = memory["holes"].as_array() {
        let _ = writeln!(
            details,
            "A load among holes: `small` modules loaded into one region, every\n\
             other one then unloaded (in load order, each leaving a hole too small\n\
             for what comes next), then one `large_pic` load into the same region;\n\
             against half as many `small` modules loaded and none unloaded (as many\n\
             live, no hole), then the same load. Medians of 5 alternating rounds\n\
             (`perf-report holes N ROUNDS`). The scaling runs above unload in\n\
             reverse and leave no holes.\n"
        );
        let _ = writeln!(
            details,
            "| holes | `large_pic` load among them | with no holes | difference |\n|---|---|---|---|"
        );
        for row in rows {
            let with = number(row, "with_ns");
            let without = number(row, "without_ns");
            let _ = writeln!(
                details,
                "| {} | {} | {} | {:+.0}% |",
                number(row, "holes"),
                time(with),
                time(without),
                (with / without - 1.0) * 100.0
            );
        }
        let _ = writeln!(details);
    }

    // 3, continued: which stages grow from the smallest scaling run to the largest.
    if let Some(rows) = memory["scale_stages"].as_array() {
        write_scale_stages(&mut details, rows);
    }

    // 4. Memory.
    let _ = writeln!(details, "## 4. Memory\n");
    let _ = writeln!(
        details,
        "*Sections* is the sum of the plan's exact extents (text, stubs, read-only,\n\
         GOT, data, bss). *Region used* is what the region handed out for the module\n\
         (each of the three segments starts on its own page, for W^X). Heap is the\n\
         loader's own heap (a counting global allocator): *kept* stays while the\n\
         module is loaded, *peak* is the most in use during the load.\n"
    );
    let _ = writeln!(
        details,
        "| module | sections | region used | overhead | heap kept | heap peak during load |\n|---|---|---|---|---|---|"
    );
    for fact in &facts {
        let entry = &memory[fact.name.as_str()];
        let sections = number(entry, "sections");
        let used = number(entry, "region_used");
        let overhead = used / sections - 1.0;
        let _ = writeln!(
            details,
            "| `{}` | {} | {} | {:+.1}% | {} | {} |",
            fact.name,
            bytes(sections),
            bytes(used),
            overhead * 100.0,
            bytes(number(entry, "heap_kept")),
            bytes(number(entry, "heap_peak"))
        );
        let _ = writeln!(
            targets,
            "| Region overhead `{}`: ≤ 5% above its sections | {:+.1}% | {} |",
            fact.name,
            overhead * 100.0,
            verdict(overhead <= 0.05)
        );
    }
    let scale = &memory["scale_1000"];
    let modules = number(scale, "modules");
    let sections = number(scale, "sections");
    let used = number(scale, "region_used");
    let overhead = used / sections - 1.0;
    let _ = writeln!(
        details,
        "| 1,000 scaling modules, per module | {} | {} | {:+.1}% | {} | |",
        bytes(sections / modules),
        bytes(used / modules),
        overhead * 100.0,
        bytes(number(scale, "heap_kept") / modules)
    );
    let _ = writeln!(
        targets,
        "| Region overhead, 1,000 small modules: ≤ 5% above their sections | {:+.1}% | {} |",
        overhead * 100.0,
        verdict(overhead <= 0.05)
    );
    let _ = writeln!(
        details,
        "\nAfter unloading all 1,000: {} of the region still in use.\n",
        bytes(number(scale, "region_after_unload"))
    );

    // Packed placement.
    let small_packed = &memory["small_packed"];
    let packed = &memory["scale_1000_packed"];
    let _ = writeln!(
        details,
        "### Packed placement (`Loader::packed`)\n\n\
         Segments of different modules share pages by permission class (code,\n\
         read-only, writable), at sub-page granularity, in a region on a `memfd`;\n\
         code and read-only bytes reach their already-protected pages with\n\
         `pwrite` to the `memfd` (`MemfdWriter`), never through a writable\n\
         mapping of code. *Committed* is whole pages holding at least one live\n\
         piece: the pages that carry module permissions. *Reserved* is what\n\
         packing holds from the region: committed pages plus the idle rest of\n\
         each class's last 128 KiB chunk (read-write, never touched by a module).\n\
         A single module alone gains nothing: each class it uses still needs\n\
         whole pages of its own (for `small`, two of code, one read-only, one\n\
         writable, as in the default mode), since there is nobody to share them\n\
         with, and packing holds a chunk per class for the modules to come.\n"
    );
    let _ = writeln!(
        details,
        "| modules | sections | pages committed | overhead | reserved from the region | after unloading all |\n|---|---|---|---|---|---|"
    );
    let small_sections = number(small_packed, "sections");
    let small_committed = number(small_packed, "committed");
    let _ = writeln!(
        details,
        "| `small` alone | {} | {} | {:+.1}% | {} | |",
        bytes(small_sections),
        bytes(small_committed),
        (small_committed / small_sections - 1.0) * 100.0,
        bytes(number(small_packed, "reserved")),
    );
    let packed_sections = number(packed, "sections");
    let committed = number(packed, "committed");
    let packed_overhead = committed / packed_sections - 1.0;
    let _ = writeln!(
        details,
        "| 1,000 scaling modules | {} | {} | {:+.1}% | {} ({:+.1}%) | {} |",
        bytes(packed_sections),
        bytes(committed),
        packed_overhead * 100.0,
        bytes(number(packed, "reserved")),
        (number(packed, "reserved") / packed_sections - 1.0) * 100.0,
        bytes(number(packed, "region_after_unload")),
    );
    let load_default = number(packed, "load_ns_default");
    let load_packed = number(packed, "load_ns_packed");
    let load_window = number(packed, "load_ns_packed_window");
    let load_grouped = number(packed, "load_ns_grouped");
    let _ = writeln!(
        details,
        "\nTime per scaling-module load, 1,000 in a fresh namespace, median of 5\n\
         alternating rounds measured together (whole loads, `mprotect` included):\n"
    );
    let _ = writeln!(
        details,
        "| placement | load, per module | vs default |\n|---|---|---|\n\
         | default (a reservation per module, two `mprotect` calls) | {} | |\n\
         | packed, bytes written with `pwrite` to the `memfd` | {} | {:+.0}% |\n\
         | packed, bytes written through a temporary `mmap` window | {} | {:+.0}% |\n\
         | grouped (`Loader::grouped`: pages of their own, next to the same permissions) | {} | {:+.0}% |\n",
        time(load_default),
        time(load_packed),
        (load_packed / load_default - 1.0) * 100.0,
        time(load_window),
        (load_window / load_default - 1.0) * 100.0,
        time(load_grouped),
        (load_grouped / load_default - 1.0) * 100.0,
    );
    let _ = writeln!(
        targets,
        "| Region overhead, 1,000 small modules packed: ≤ 5% above their sections (whole pages committed) | {:+.1}% | {} |",
        packed_overhead * 100.0,
        verdict(packed_overhead <= 0.05)
    );

    // 5. Whole process.
    let _ = writeln!(
        details,
        "## 5. Whole process: `modload run` against `llvm-jitlink`\n"
    );
    let _ = writeln!(
        details,
        "`hyperfine -N` (no shell), each command running the object's `main`, which\n\
         returns at once: so this is process start, reading, linking and exit.\n"
    );
    let _ = writeln!(
        details,
        "| objects | modload run (median) | llvm-jitlink (median) | llvm-jitlink ÷ modload |\n|---|---|---|---|"
    );
    let mut runs: Vec<PathBuf> = std::fs::read_dir(&hyperfine_dir)
        .map_err(|e| format!("{}: {e}", hyperfine_dir.display()))?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    runs.sort();
    for run in runs {
        let value = read_json(&run)?;
        let results = value["results"].as_array().cloned().unwrap_or_default();
        let find = |needle: &str| {
            results
                .iter()
                .find(|result| {
                    result["command"]
                        .as_str()
                        .is_some_and(|c| c.contains(needle))
                })
                .and_then(|result| result["median"].as_f64())
        };
        let label = run
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let (Some(modload), Some(jitlink)) = (find("modload run"), find("llvm-jitlink")) {
            let _ = writeln!(
                details,
                "| {label} | {} | {} | {:.1}× |",
                time(modload * 1e9),
                time(jitlink * 1e9),
                jitlink / modload
            );
        }
    }
    let _ = writeln!(details);

    // 6. Whole process on SQLite: native, modload run, llvm-jitlink.
    if let Some(path) = flags.get("sqlite") {
        sqlite_section(Path::new(path), &mut targets, &mut details)?;
    }

    let _ = writeln!(doc, "## Targets\n");
    let _ = writeln!(doc, "| target | measured | verdict |\n|---|---|---|");
    doc.push_str(&targets);
    let _ = writeln!(doc);
    doc.push_str(&details);
    let _ = writeln!(doc, "## Machine and command\n");
    let _ = writeln!(doc, "```text\n$ {command}\n\n{}\n```\n", machine.trim_end());
    if let Some(notes) = flags.get("notes") {
        if let Ok(text) = std::fs::read_to_string(notes) {
            let _ = writeln!(doc, "{}", text.trim_end());
        }
    }
    if let Some(parent) = out.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    std::fs::write(&out, doc).map_err(|error| format!("{}: {error}", out.display()))
}

/// Prints what `write` puts in the report from `scripts/bench-sqlite.sh`'s
/// summary: the two target rows, then section 6.
fn print_sqlite(path: &Path) -> Result<(), String> {
    let (mut targets, mut details) = (String::new(), String::new());
    sqlite_section(path, &mut targets, &mut details)?;
    println!("| target | measured | verdict |\n|---|---|---|\n{targets}\n{details}");
    Ok(())
}

/// Section 6 and its two targets, from `scripts/bench-sqlite.sh`'s summary.
fn sqlite_section(path: &Path, targets: &mut String, details: &mut String) -> Result<(), String> {
    let summary = read_json(path)?;
    let figure = |label: &str, field: &str| {
        summary[label][field]
            .as_f64()
            .ok_or_else(|| format!("{}: no {label}.{field}", path.display()))
    };
    let _ = writeln!(
        details,
        "## 6. Whole process on SQLite: native binary, `modload run`, `llvm-jitlink`\n"
    );
    let _ = writeln!(
        details,
        "SQLite's amalgamation (`sqlite3.o`, `-O2 -fPIC`, as the real-program harness\n\
         builds it) and `bench/sqlite/main.c`, a small main (an in-memory database,\n\
         one table, three rows, one query), so that start-up and loading dominate.\n\
         Measured by `scripts/bench-sqlite.sh`: `hyperfine -N`, the five commands in\n\
         one run. The last three are the floor: an empty main (`bench/sqlite/empty.c`)\n\
         linked natively and run through `modload run`, and `bench/sqlite/memory-floor.c`,\n\
         which only maps SQLite's object, copies its sections into fresh pages and\n\
         protects them, as any loader that copies must. Minor faults are each process's (`getrusage`, a mean), pages that\n\
         `madvise(MADV_POPULATE_WRITE)` fills included; fault exceptions are those\n\
         taken (`perf stat -e page-faults`, a mean), which such pages are not.\n"
    );
    let _ = writeln!(
        details,
        "| command | median | min | minor faults | fault exceptions |\n|---|---|---|---|---|"
    );
    for label in [
        "native",
        "modload run",
        "llvm-jitlink",
        "native, empty main",
        "modload run, empty main",
        "memory only (C)",
    ] {
        let _ = writeln!(
            details,
            "| {label} | {} | {} | {:.0} | {} |",
            time(figure(label, "median_s")? * 1e9),
            time(figure(label, "min_s")? * 1e9),
            figure(label, "minor_faults")?,
            summary[label]["fault_exceptions"]
                .as_f64()
                .map_or_else(|| String::from("(no perf)"), |taken| format!("{taken:.0}"))
        );
    }
    let over_native = figure("modload run", "median_s")? / figure("native", "median_s")?;
    let speedup = figure("llvm-jitlink", "median_s")? / figure("modload run", "median_s")?;
    let _ = writeln!(
        details,
        "\n`modload run` ÷ native: {over_native:.2}×; `llvm-jitlink` ÷ `modload run`: {speedup:.1}×.\n"
    );
    // The empty mains: what starting each costs before any loading or work.
    let scalar = |field: &str| {
        summary[field]
            .as_f64()
            .ok_or_else(|| format!("{}: no {field}", path.display()))
    };
    let budget = scalar("loading_budget_s")?;
    let _ = writeln!(
        details,
        "Floor: `modload run` of an empty main ÷ native SQLite: {:.2}×. Loading SQLite \
         (`modload run`'s two rows apart, less SQLite's own work, the native rows apart) \
         takes {}, of which the memory alone (`memory only` less the empty native main) \
         {}; the 1.5× target leaves it {}.\n",
        scalar("floor_over_native")?,
        time(scalar("loading_s")? * 1e9),
        time(scalar("memory_s")? * 1e9),
        if budget > 0.0 {
            time(budget * 1e9)
        } else {
            String::from("nothing")
        },
    );
    let _ = writeln!(
        targets,
        "| SQLite whole process: `modload run` ≤ 1.5× the native binary | {over_native:.2}× | {} |",
        verdict(over_native <= 1.5)
    );
    let _ = writeln!(
        targets,
        "| SQLite whole process: `modload run` ≥ 10× faster than `llvm-jitlink` | {speedup:.1}× | {} |",
        verdict(speedup >= 10.0)
    );
    Ok(())
}
