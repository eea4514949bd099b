/work/main/target-prev/release/deps/perf_report-46be6bc5aa06350f.d: bench/src/bin/perf-report.rs

/work/main/target-prev/release/deps/perf_report-46be6bc5aa06350f: bench/src/bin/perf-report.rs

bench/src/bin/perf-report.rs:
