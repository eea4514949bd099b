//! The load benchmarks (criterion). `scripts/bench.sh` runs them and turns
//! the medians into `docs/PERFORMANCE.md`; `cargo bench -p modload-bench`
//! runs them alone (a filter such as `-- load-small` picks some).
//!
//! Benchmark ids, which `perf-report` reads back:
//! - `load-{object}/{system}`: one whole load, `system` being `modload`,
//!   `jitlink` (ORC `ObjectLinkingLayer`) or `rtdyld` (ORC
//!   `RTDyldObjectLinkingLayer`). Unloading is done between iterations and
//!   not timed, for all three.
//! - `phase-{object}/{stage}`: one stage of modload's load, each timed on its
//!   own within full loads: `parse`, `plan`, `allocate`, `relocate`,
//!   `finalize`, `start`; `relocate_bare` is `relocate` on the same object
//!   with its relocation sections blanked (resolution and bookkeeping only),
//!   and `relocation` the difference of the two, measured in pairs;
//!   `memcpy` copies the bytes `allocate` copies, with nothing else.
//! - `scale-load/{n}` and `scale-unload/{n}`: loading `n` modules one after
//!   another into a fresh namespace, and unloading them in reverse order;
//!   `scale-load-noprotect/{n}` loads with `NoProtection`, which leaves out
//!   the kernel's `mprotect` work and shows the loader's own cost;
//!   `scale-load-fresh/{n}` reads each object's bytes, untimed, just before
//!   its load, so that inputs are as warm at every size;
//!   `scale-load-grouped/{n}` and `scale-unload-grouped/{n}` load and unload
//!   with `Loader::grouped`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use modload::{Loader, MemoryProtection, Namespace, NoProtection, Region};
use modload_bench::host::{self, StageTimes};
use modload_bench::objects::{self, BenchObject, Objects};
use modload_bench::orc::{self, Jit, Linker};
use modload_platform::host::HOST_PROTECTION;

/// The module counts of the scaling benchmark.
const SCALE_SIZES: [usize; 4] = [10, 100, 1_000, 5_000];

struct Setup {
    objects: Objects,
    region: &'static Region,
    /// The scaling modules, numbered from 1, with their names.
    scale: Vec<(String, Vec<u8>)>,
}

fn setup() -> Setup {
    let fail = |error: String| -> ! {
        eprintln!("modload-bench: {error}");
        std::process::exit(1)
    };
    let objects = objects::build_all(&objects::default_dir()).unwrap_or_else(|e| fail(e));
    let region = host::region().unwrap_or_else(|e| fail(e));
    let largest = SCALE_SIZES.iter().copied().max().unwrap_or(0);
    let scale = (1..=largest)
        .map(|number| {
            objects::scale_module(&objects.scale_template.bytes, number)
                .map(|bytes| (format!("m{number:06}"), bytes))
        })
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| fail(e));
    Setup {
        objects,
        region,
        scale,
    }
}

/// A namespace that lives for the whole run, with `object`'s imports exported.
fn namespace_for(object: &BenchObject) -> &'static Namespace {
    let namespace: &'static Namespace = Box::leak(Box::new(Namespace::new()));
    if let Err(error) = host::export_process_symbols(namespace, &object.imports) {
        panic!("{}: {error}", object.name);
    }
    namespace
}

fn or_die<T>(result: Result<T, String>) -> T {
    result.unwrap_or_else(|error| panic!("{error}"))
}

fn load_benches(c: &mut Criterion, setup: &Setup) {
    for object in setup.objects.comparison_set() {
        let mut group = c.benchmark_group(format!("load-{}", object.name));
        group.throughput(Throughput::Bytes(object.bytes.len() as u64));
        let namespace = namespace_for(object);
        let loader = host::loader(namespace, setup.region);
        group.bench_function("modload", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let module = or_die(host::load(&loader, &object.name, &object.bytes));
                    total += start.elapsed();
                    or_die(host::unload(module));
                }
                total
            })
        });
        let name = orc::c_string(&object.name);
        for linker in [Linker::JitLink, Linker::RuntimeDyld] {
            let jit = or_die(Jit::new(linker));
            group.bench_function(linker.name(), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let start = Instant::now();
                        let loaded = or_die(jit.load(&name, &object.bytes, c"main"));
                        total += start.elapsed();
                        or_die(jit.unload(loaded));
                    }
                    total
                })
            });
        }
        group.finish();
    }
}

/// Which stage a phase benchmark times.
type Pick = fn(&StageTimes) -> Duration;

fn phase_benches(c: &mut Criterion, setup: &Setup) {
    let stages: [(&str, Pick); 6] = [
        ("parse", |t| t.parse),
        ("plan", |t| t.plan),
        ("allocate", |t| t.allocate),
        ("relocate", |t| t.relocate),
        ("finalize", |t| t.finalize),
        ("start", |t| t.start),
    ];
    for object in setup.objects.comparison_set() {
        let mut group = c.benchmark_group(format!("phase-{}", object.name));
        let namespace = namespace_for(object);
        let loader = host::loader(namespace, setup.region);
        let timed = |bytes: &[u8], pick: Pick, iters: u64| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (module, times) = or_die(host::load_timed(&loader, &object.name, bytes));
                total += pick(&times);
                or_die(host::unload(module));
            }
            total
        };
        for (stage, pick) in stages {
            group.bench_function(stage, |b| {
                b.iter_custom(|iters| timed(&object.bytes, pick, iters))
            });
        }
        let bare = or_die(host::without_relocations(&object.bytes));
        group.bench_function("relocate_bare", |b| {
            b.iter_custom(|iters| timed(&bare, |t| t.relocate, iters))
        });
        // Paired: the real object and the bare one alternate, so machine
        // noise falls on both sides of the difference alike.
        group.bench_function("relocation", |b| {
            b.iter_custom(|iters| {
                let mut difference = 0i128;
                for _ in 0..iters {
                    let full = timed(&object.bytes, |t| t.relocate, 1);
                    let without = timed(&bare, |t| t.relocate, 1);
                    difference += full.as_nanos() as i128 - without.as_nanos() as i128;
                }
                Duration::from_nanos(u64::try_from(difference.max(0)).unwrap_or(u64::MAX))
            })
        });
        let copied = or_die(host::copied_bytes(&loader, &object.name, &object.bytes));
        let source = vec![0x5au8; copied as usize];
        let mut destination = vec![0u8; copied as usize];
        group.throughput(Throughput::Bytes(copied));
        group.bench_function("memcpy", |b| {
            b.iter(|| {
                destination.copy_from_slice(black_box(&source));
                black_box(&mut destination);
            })
        });
        group.finish();
    }
}

fn scale_benches(c: &mut Criterion, setup: &Setup) {
    // `fresh`: each object is read (untimed) just before its load, as a
    // kernel reads a module's file before loading it. Without that, the 10
    // objects of the smallest run are still cached from the iteration
    // before, and the 5,000 of the largest never are: the difference would
    // then include how warm the input is, not only how many modules are
    // loaded.
    let runs: [(&str, bool, &'static dyn MemoryProtection, Chain); 6] = [
        ("scale-load", true, &HOST_PROTECTION, Chain::DEFAULT),
        ("scale-unload", false, &HOST_PROTECTION, Chain::DEFAULT),
        ("scale-load-noprotect", true, &NoProtection, Chain::DEFAULT),
        ("scale-load-fresh", true, &HOST_PROTECTION, Chain::FRESH),
        ("scale-load-grouped", true, &HOST_PROTECTION, Chain::GROUPED),
        (
            "scale-unload-grouped",
            false,
            &HOST_PROTECTION,
            Chain::GROUPED,
        ),
    ];
    for (name, time_load, protection, chain) in runs {
        let mut group = c.benchmark_group(name);
        group.sample_size(10);
        for count in SCALE_SIZES {
            group.throughput(Throughput::Elements(count as u64));
            group.bench_with_input(BenchmarkId::from_parameter(count), &count, |b, &count| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let (load, unload) = or_die(load_chain(setup, count, protection, chain));
                        total += if time_load { load } else { unload };
                    }
                    total
                })
            });
        }
        group.finish();
    }
}

/// How a scaling run loads its chain.
#[derive(Clone, Copy)]
struct Chain {
    /// Each object's bytes are read, untimed, just before its load.
    fresh: bool,
    /// The loader groups segments by permissions (`Loader::grouped`).
    grouped: bool,
}

impl Chain {
    const DEFAULT: Self = Self {
        fresh: false,
        grouped: false,
    };
    const FRESH: Self = Self {
        fresh: true,
        grouped: false,
    };
    const GROUPED: Self = Self {
        fresh: false,
        grouped: true,
    };
}

/// Loads modules 1..=count into a fresh namespace through `protection`, then
/// unloads them in reverse order. Returns the time spent loading and unloading.
fn load_chain(
    setup: &Setup,
    count: usize,
    protection: &'static dyn MemoryProtection,
    chain: Chain,
) -> Result<(Duration, Duration), String> {
    let namespace = Namespace::new();
    host::export_scale_host(&namespace);
    let mut loader = Loader::new(&namespace, setup.region, protection);
    if chain.grouped {
        loader = loader.grouped();
    }
    let mut modules = Vec::with_capacity(count);
    let mut loaded = Duration::ZERO;
    if chain.fresh {
        for (name, bytes) in setup.scale.iter().take(count) {
            let sum = bytes
                .iter()
                .step_by(64)
                .fold(0u8, |a, b| a.wrapping_add(*b));
            black_box(sum);
            let start = Instant::now();
            modules.push(host::load(&loader, name, bytes)?);
            loaded += start.elapsed();
        }
    } else {
        let start = Instant::now();
        for (name, bytes) in setup.scale.iter().take(count) {
            modules.push(host::load(&loader, name, bytes)?);
        }
        loaded = start.elapsed();
    }
    let start = Instant::now();
    while let Some(module) = modules.pop() {
        host::unload(module)?;
    }
    Ok((loaded, start.elapsed()))
}

fn benches(c: &mut Criterion) {
    let setup = setup();
    load_benches(c, &setup);
    phase_benches(c, &setup);
    scale_benches(c, &setup);
}

criterion_group! {
    name = load;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    targets = benches
}
criterion_main!(load);
