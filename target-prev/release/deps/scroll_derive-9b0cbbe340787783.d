/work/main/target-prev/release/deps/scroll_derive-9b0cbbe340787783.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/scroll_derive-0.13.2/src/lib.rs

/work/main/target-prev/release/deps/libscroll_derive-9b0cbbe340787783.so: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/scroll_derive-0.13.2/src/lib.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/scroll_derive-0.13.2/src/lib.rs:
