/work/main/target-prev/release/deps/modload_bench-1019f1f449db90a8.d: bench/src/lib.rs bench/src/host.rs bench/src/objects.rs bench/src/orc.rs

/work/main/target-prev/release/deps/libmodload_bench-1019f1f449db90a8.rlib: bench/src/lib.rs bench/src/host.rs bench/src/objects.rs bench/src/orc.rs

/work/main/target-prev/release/deps/libmodload_bench-1019f1f449db90a8.rmeta: bench/src/lib.rs bench/src/host.rs bench/src/objects.rs bench/src/orc.rs

bench/src/lib.rs:
bench/src/host.rs:
bench/src/objects.rs:
bench/src/orc.rs:

# env-dep:CARGO_MANIFEST_DIR=/work/wt-prev/bench
