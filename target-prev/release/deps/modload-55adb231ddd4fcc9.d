/work/main/target-prev/release/deps/modload-55adb231ddd4fcc9.d: loader/src/lib.rs loader/src/addr.rs loader/src/arch/mod.rs loader/src/arch/aarch64.rs loader/src/arch/x86_64.rs loader/src/call.rs loader/src/error.rs loader/src/kinds.rs loader/src/limits.rs loader/src/link/mod.rs loader/src/link/apply.rs loader/src/link/lazy.rs loader/src/link/resolve.rs loader/src/link/slots.rs loader/src/link/unwind.rs loader/src/loader.rs loader/src/memory/mod.rs loader/src/memory/grouping.rs loader/src/memory/packing.rs loader/src/memory/protection.rs loader/src/memory/ranges.rs loader/src/memory/region.rs loader/src/module.rs loader/src/names.rs loader/src/namespace/mod.rs loader/src/namespace/index.rs loader/src/namespace/late.rs loader/src/namespace/names.rs loader/src/namespace/records.rs loader/src/namespace/state.rs loader/src/object/mod.rs loader/src/object/join.rs loader/src/object/read.rs loader/src/object/symbols.rs loader/src/plan/mod.rs loader/src/plan/bindings.rs loader/src/plan/layout.rs loader/src/plan/sections.rs loader/src/plan/slots.rs loader/src/stage/mod.rs loader/src/stage/entry.rs loader/src/stage/sets.rs loader/src/unbound.rs

/work/main/target-prev/release/deps/libmodload-55adb231ddd4fcc9.rlib: loader/src/lib.rs loader/src/addr.rs loader/src/arch/mod.rs loader/src/arch/aarch64.rs loader/src/arch/x86_64.rs loader/src/call.rs loader/src/error.rs loader/src/kinds.rs loader/src/limits.rs loader/src/link/mod.rs loader/src/link/apply.rs loader/src/link/lazy.rs loader/src/link/resolve.rs loader/src/link/slots.rs loader/src/link/unwind.rs loader/src/loader.rs loader/src/memory/mod.rs loader/src/memory/grouping.rs loader/src/memory/packing.rs loader/src/memory/protection.rs loader/src/memory/ranges.rs loader/src/memory/region.rs loader/src/module.rs loader/src/names.rs loader/src/namespace/mod.rs loader/src/namespace/index.rs loader/src/namespace/late.rs loader/src/namespace/names.rs loader/src/namespace/records.rs loader/src/namespace/state.rs loader/src/object/mod.rs loader/src/object/join.rs loader/src/object/read.rs loader/src/object/symbols.rs loader/src/plan/mod.rs loader/src/plan/bindings.rs loader/src/plan/layout.rs loader/src/plan/sections.rs loader/src/plan/slots.rs loader/src/stage/mod.rs loader/src/stage/entry.rs loader/src/stage/sets.rs loader/src/unbound.rs

/work/main/target-prev/release/deps/libmodload-55adb231ddd4fcc9.rmeta: loader/src/lib.rs loader/src/addr.rs loader/src/arch/mod.rs loader/src/arch/aarch64.rs loader/src/arch/x86_64.rs loader/src/call.rs loader/src/error.rs loader/src/kinds.rs loader/src/limits.rs loader/src/link/mod.rs loader/src/link/apply.rs loader/src/link/lazy.rs loader/src/link/resolve.rs loader/src/link/slots.rs loader/src/link/unwind.rs loader/src/loader.rs loader/src/memory/mod.rs loader/src/memory/grouping.rs loader/src/memory/packing.rs loader/src/memory/protection.rs loader/src/memory/ranges.rs loader/src/memory/region.rs loader/src/module.rs loader/src/names.rs loader/src/namespace/mod.rs loader/src/namespace/index.rs loader/src/namespace/late.rs loader/src/namespace/names.rs loader/src/namespace/records.rs loader/src/namespace/state.rs loader/src/object/mod.rs loader/src/object/join.rs loader/src/object/read.rs loader/src/object/symbols.rs loader/src/plan/mod.rs loader/src/plan/bindings.rs loader/src/plan/layout.rs loader/src/plan/sections.rs loader/src/plan/slots.rs loader/src/stage/mod.rs loader/src/stage/entry.rs loader/src/stage/sets.rs loader/src/unbound.rs

loader/src/lib.rs:
loader/src/addr.rs:
loader/src/arch/mod.rs:
loader/src/arch/aarch64.rs:
loader/src/arch/x86_64.rs:
loader/src/call.rs:
loader/src/error.rs:
loader/src/kinds.rs:
loader/src/limits.rs:
loader/src/link/mod.rs:
loader/src/link/apply.rs:
loader/src/link/lazy.rs:
loader/src/link/resolve.rs:
loader/src/link/slots.rs:
loader/src/link/unwind.rs:
loader/src/loader.rs:
loader/src/memory/mod.rs:
loader/src/memory/grouping.rs:
loader/src/memory/packing.rs:
loader/src/memory/protection.rs:
loader/src/memory/ranges.rs:
loader/src/memory/region.rs:
loader/src/module.rs:
loader/src/names.rs:
loader/src/namespace/mod.rs:
loader/src/namespace/index.rs:
loader/src/namespace/late.rs:
loader/src/namespace/names.rs:
loader/src/namespace/records.rs:
loader/src/namespace/state.rs:
loader/src/object/mod.rs:
loader/src/object/join.rs:
loader/src/object/read.rs:
loader/src/object/symbols.rs:
loader/src/plan/mod.rs:
loader/src/plan/bindings.rs:
loader/src/plan/layout.rs:
loader/src/plan/sections.rs:
loader/src/plan/slots.rs:
loader/src/stage/mod.rs:
loader/src/stage/entry.rs:
loader/src/stage/sets.rs:
loader/src/unbound.rs:
