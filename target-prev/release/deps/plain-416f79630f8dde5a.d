/work/main/target-prev/release/deps/plain-416f79630f8dde5a.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/plain-0.2.3/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/plain-0.2.3/src/error.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/plain-0.2.3/src/plain.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/plain-0.2.3/src/methods.rs

/work/main/target-prev/release/deps/libplain-416f79630f8dde5a.rlib: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/plain-0.2.3/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/plain-0.2.3/src/error.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/plain-0.2.3/src/plain.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/plain-0.2.3/src/methods.rs

/work/main/target-prev/release/deps/libplain-416f79630f8dde5a.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/plain-0.2.3/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/plain-0.2.3/src/error.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/plain-0.2.3/src/plain.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/plain-0.2.3/src/methods.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/plain-0.2.3/src/lib.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/plain-0.2.3/src/error.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/plain-0.2.3/src/plain.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/plain-0.2.3/src/methods.rs:
