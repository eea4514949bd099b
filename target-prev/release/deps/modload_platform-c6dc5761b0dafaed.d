/work/main/target-prev/release/deps/modload_platform-c6dc5761b0dafaed.d: platform/src/lib.rs platform/src/cache.rs platform/src/host.rs

/work/main/target-prev/release/deps/libmodload_platform-c6dc5761b0dafaed.rlib: platform/src/lib.rs platform/src/cache.rs platform/src/host.rs

/work/main/target-prev/release/deps/libmodload_platform-c6dc5761b0dafaed.rmeta: platform/src/lib.rs platform/src/cache.rs platform/src/host.rs

platform/src/lib.rs:
platform/src/cache.rs:
platform/src/host.rs:
