//! The benchmark harness links what it times: the small module loads with
//! modload, JITLink and RuntimeDyld and its `main` returns 0 under each, and
//! the scaling modules carry the names they are meant to. No timing here.

use std::ffi::{c_char, c_int};

use modload::Namespace;
use modload_bench::host;
use modload_bench::objects::{self, scale_imports, scale_module, scale_symbol};
use modload_bench::orc::{c_string, Jit, Linker};

type Main = extern "C" fn(c_int, *const *const c_char) -> c_int;

fn call_main(address: u64) -> c_int {
    let program = c"small";
    let argv = [program.as_ptr(), std::ptr::null()];
    // SAFETY: `address` is the `main(int, char **)` of the generated small
    // module, just linked into this process and not yet unloaded.
    let main: Main = unsafe { std::mem::transmute::<usize, Main>(address as usize) };
    main(1, argv.as_ptr())
}

#[test]
fn the_small_module_runs_under_every_linker() {
    let (small, _) = objects::build_small(&objects::default_dir()).unwrap();
    let region = host::region().unwrap();
    let namespace: &'static Namespace = Box::leak(Box::new(Namespace::new()));
    host::export_process_symbols(namespace, &small.imports).unwrap();
    let loader = host::loader(namespace, region);
    let (module, _) = host::load_timed(&loader, "small", &small.bytes).unwrap();
    let main = module.symbol("main").unwrap();
    assert_eq!(call_main(main.as_u64()), 0);
    host::unload(module).unwrap();
    assert_eq!(region.usage().used, 0);

    // Packed, too: the same module runs from shared pages and gives them back.
    let packed = host::packed_region().unwrap();
    let loader = host::packed_loader(namespace, &packed);
    let (module, _) = host::load_timed(&loader, "small", &small.bytes).unwrap();
    assert_eq!(call_main(module.symbol("main").unwrap().as_u64()), 0);
    host::unload(module).unwrap();
    assert_eq!(packed.region.usage().used, 0);

    for linker in [Linker::JitLink, Linker::RuntimeDyld] {
        let jit = Jit::new(linker).unwrap();
        for _ in 0..2 {
            let loaded = jit.load(&c_string("small"), &small.bytes, c"main").unwrap();
            assert_eq!(call_main(loaded.address), 0, "{linker:?}");
            jit.unload(loaded).unwrap();
        }
    }
}

#[test]
fn scaling_modules_import_from_earlier_ones() {
    let (_, template) = objects::build_small(&objects::default_dir()).unwrap();
    let region = host::region().unwrap();
    let namespace = Namespace::new();
    host::export_scale_host(&namespace);
    let loader = host::loader(&namespace, region);
    let mut modules = Vec::new();
    for number in 1..=30 {
        let bytes = scale_module(&template.bytes, number).unwrap();
        let module = host::load(&loader, &format!("m{number}"), &bytes).unwrap();
        assert!(module.symbol(&scale_symbol(number, 1)).is_some());
        modules.push(module);
    }
    // Module 30's imports come from the modules it names, not the host.
    for (import, function) in scale_imports(30).into_iter().zip(1..) {
        if import > 0 {
            assert_eq!(
                namespace.lookup(&scale_symbol(import, function)),
                modules[import - 1].symbol(&scale_symbol(import, function))
            );
        }
    }
    // In use by later modules: the first one cannot go before them.
    let first = modules.remove(0);
    let first = first.unload().unwrap_err().module;
    while let Some(module) = modules.pop() {
        host::unload(module).unwrap();
    }
    host::unload(first).unwrap();
    assert_eq!(region.usage().used, 0);
}

#[test]
fn blanking_relocations_keeps_everything_else() {
    let (small, _) = objects::build_small(&objects::default_dir()).unwrap();
    let region = host::region().unwrap();
    let namespace: &'static Namespace = Box::leak(Box::new(Namespace::new()));
    host::export_process_symbols(namespace, &small.imports).unwrap();
    let loader = host::loader(namespace, region);
    let bare = host::without_relocations(&small.bytes).unwrap();
    assert!(host::relocation_count(&loader, "small", &small.bytes).unwrap() > 100);
    assert_eq!(host::relocation_count(&loader, "bare", &bare).unwrap(), 0);
    assert_eq!(
        host::copied_bytes(&loader, "small", &small.bytes).unwrap(),
        host::copied_bytes(&loader, "bare", &bare).unwrap()
    );
}
