//! From an address back to a module, a section and a symbol
//! (`Namespace::locate`), the symbol list a profiler's map is written from
//! (`Module::symbols`), and the object a debugger reads (`Module::debug_object`).

mod common;

use common::*;
use goblin::elf::Elf;
use modload::{DebugObjectError, Location, VirtAddr};
use modload_tests::{compile_c, fixture, CModel};

/// The module, the section, and the symbol with the offset into it.
type Found = (String, String, Option<(String, u64)>);

/// What the namespace finds at `address`, owned.
fn at(env: &Env, address: u64) -> Option<Found> {
    env.namespace.locate(VirtAddr::new(address), |found| {
        found.map(|location: &Location<'_>| {
            (
                location.module_name.to_string(),
                location.section.to_string(),
                location
                    .symbol
                    .map(|symbol| (symbol.name.to_string(), symbol.offset)),
            )
        })
    })
}

/// The object's own symbols that name a place in a section, from its
/// symbol table: what the module's list must hold.
fn defined_names(bytes: &[u8]) -> Vec<String> {
    let elf = Elf::parse(bytes).unwrap();
    let mut names: Vec<String> = elf
        .syms
        .iter()
        .filter(|symbol| {
            matches!(
                symbol.st_type(),
                goblin::elf::sym::STT_FUNC | goblin::elf::sym::STT_OBJECT
            ) && symbol.st_shndx != 0
        })
        .filter_map(|symbol| elf.strtab.get_at(symbol.st_name).map(str::to_string))
        .collect();
    names.sort();
    names
}

#[test]
fn every_symbol_answers_for_its_first_and_last_byte() {
    let env = Env::anywhere();
    let path = compile_c(&fixture("m1.c"), CModel::Pic, &["-ffunction-sections"]);
    let bytes = modload_tests::read(&path);
    let module = env.load(&path);
    let symbols = module.symbols();
    let mut listed: Vec<String> = symbols
        .iter()
        .map(|symbol| symbol.name.to_string())
        .collect();
    listed.sort();
    assert_eq!(listed, defined_names(&bytes));
    // Local functions are named too.
    assert!(listed.iter().any(|name| name == "add_one"), "{listed:?}");
    for symbol in symbols.iter().filter(|symbol| symbol.size > 0) {
        let first = symbol.address.as_u64();
        let last = first + symbol.size - 1;
        let name = symbol.name.to_string();
        let section = symbol.section.to_string();
        assert_eq!(
            at(&env, first),
            Some(("m1.o".into(), section.clone(), Some((name.clone(), 0)))),
            "first byte of {name}"
        );
        assert_eq!(
            at(&env, last),
            Some((
                "m1.o".into(),
                section,
                Some((name.clone(), symbol.size - 1))
            )),
            "last byte of {name}"
        );
    }
    // The function's address is the one the namespace resolves it to.
    let value = symbols
        .iter()
        .find(|symbol| &*symbol.name == "m1_value")
        .unwrap();
    assert_eq!(Some(value.address), module.symbol("m1_value"));
    // Each function is in its own section here.
    assert_eq!(&*value.section, ".text.m1_value");
    let display = env
        .namespace
        .locate(VirtAddr::new(value.address.as_u64() + 3), |found| {
            found.unwrap().to_string()
        });
    assert_eq!(display, "m1_value+0x3 [m1.o]");
    unload(module);
    assert_eq!(
        at(&env, value.address.as_u64()),
        None,
        "gone with its module"
    );
    env.assert_back_to_baseline();
}

#[test]
fn addresses_outside_every_module_find_nothing() {
    let env = Env::anywhere();
    assert_eq!(
        at(&env, env.region.start().as_u64()),
        None,
        "empty namespace"
    );
    let module = env.load(&compile_c(&fixture("m1.c"), CModel::Pic, &[]));
    let host = host_add as *const () as u64;
    assert_eq!(at(&env, host), None, "host code is not a module's");
    assert_eq!(at(&env, 0), None);
    assert_eq!(at(&env, u64::MAX), None);
    // Past the module's used memory, in the region.
    let end = env.region.start().as_u64() + env.region.usage().used as u64 + 4096;
    assert_eq!(at(&env, end), None);
    unload(module);
}

#[test]
fn two_modules_answer_each_for_its_own() {
    let env = Env::anywhere();
    let first = env.load(&compile_c(&fixture("m1.c"), CModel::Pic, &[]));
    let second = env.load(&compile_c(&fixture("m2.c"), CModel::Pic, &[]));
    for (module, name) in [(&first, "m1.o"), (&second, "m2.o")] {
        for symbol in module.symbols() {
            let found = at(&env, symbol.address.as_u64()).unwrap();
            assert_eq!(found.0, name, "{}", symbol.name);
        }
    }
    unload(second);
    unload(first);
    env.assert_back_to_baseline();
}

#[test]
fn a_section_linked_for_another_address_answers_at_both() {
    let env = Env::anywhere();
    let path = compile_c(&fixture("m1.c"), CModel::Pic, &[]);
    let bytes = modload_tests::read(&path);
    let loader = env.loader();
    let object = loader.parse("m1.o", &bytes).unwrap();
    let mut placed = loader.plan(object).unwrap().allocate().unwrap();
    // The whole module is linked to run at another base, as for an alias
    // mapping, so its references between sections still reach.
    let load = placed.load_address().as_u64();
    let alias = 0x6000_0000u64;
    placed.map_module(VirtAddr::new(alias)).unwrap();
    let module = placed
        .relocate()
        .and_then(|relocated| relocated.finalize())
        .and_then(|finalized| finalized.publish())
        .unwrap();
    let value = module.symbol("m1_value").unwrap().as_u64();
    let offset = value - alias;
    let expected = Some((
        "m1.o".to_string(),
        ".text".to_string(),
        Some(("m1_value".to_string(), 0)),
    ));
    assert_eq!(at(&env, value), expected, "at the target address");
    assert_eq!(
        at(&env, load + offset),
        expected,
        "where the bytes were placed"
    );
    let start = env
        .namespace
        .locate(VirtAddr::new(value), |found| found.unwrap().section_start);
    // Text is first in the layout.
    assert_eq!(start, VirtAddr::new(alias));
    unload(module);
    env.assert_back_to_baseline();
}

#[test]
fn try_locate_does_not_wait_for_a_held_lock() {
    let env = Env::anywhere();
    let module = env.load(&compile_c(&fixture("m1.c"), CModel::Pic, &[]));
    let value = module.symbol("m1_value").unwrap();
    let free = env.namespace.try_locate(value, |found| found.is_some());
    assert_eq!(free, Some(true));
    // Inside `locate` the lock is held, as in a fault taken by code that holds it.
    let nested = env.namespace.locate(value, |_| {
        env.namespace.try_locate(value, |found| found.is_some())
    });
    assert_eq!(nested, None);
    unload(module);
}

#[test]
fn the_debug_object_puts_each_loaded_section_where_it_runs() {
    let env = Env::anywhere();
    let path = compile_c(&fixture("m1.c"), CModel::Pic, &["-g"]);
    let bytes = modload_tests::read(&path);
    let module = env.load(&path);
    let debug = module.debug_object(&bytes).unwrap();
    assert_eq!(debug.len(), bytes.len());
    let elf = Elf::parse(&debug).unwrap();
    let mut loaded = 0;
    for header in &elf.section_headers {
        let name = elf.shdr_strtab.get_at(header.sh_name).unwrap_or("?");
        let allocated = header.sh_flags & u64::from(goblin::elf::section_header::SHF_ALLOC) != 0;
        if !allocated || header.sh_size == 0 || name.starts_with(".rela") {
            assert_eq!(header.sh_addr, 0, "{name} stays as it was");
            continue;
        }
        loaded += 1;
        let found = env
            .namespace
            .locate(VirtAddr::new(header.sh_addr), |found| {
                found.map(|location| (location.section.to_string(), location.section_offset))
            });
        assert_eq!(
            found,
            Some((name.to_string(), 0)),
            "{name} at {:#x}",
            header.sh_addr
        );
    }
    assert!(loaded >= 3, "text, data and bss at least: {loaded}");
    // Its symbols, read as a debugger reads a relocatable object (section
    // address plus value), are where the module's are.
    let value = elf
        .syms
        .iter()
        .find(|symbol| elf.strtab.get_at(symbol.st_name) == Some("m1_value"))
        .unwrap();
    let section = &elf.section_headers[value.st_shndx];
    assert_eq!(
        section.sh_addr + value.st_value,
        module.symbol("m1_value").unwrap().as_u64()
    );

    assert_eq!(
        module.debug_object(b"not an object").unwrap_err(),
        DebugObjectError::NotAnObject
    );
    let other = modload_tests::read(&compile_c(&fixture("m2.c"), CModel::Pic, &["-g"]));
    assert!(matches!(
        module.debug_object(&other).unwrap_err(),
        DebugObjectError::NotTheLoadedObject { .. }
    ));
    assert_eq!(
        module.member_debug_object(1, &bytes).unwrap_err(),
        DebugObjectError::NoSuchMember { member: 1 }
    );
    unload(module);
}

/// Every symbol of every module answers for its own first byte.
fn assert_each_symbol_found(
    namespace: &modload::Namespace,
    modules: &[(&modload::Module<'_>, &str)],
) {
    for (module, name) in modules {
        let symbols = module.symbols();
        assert!(!symbols.is_empty(), "{name} lists symbols");
        for symbol in symbols {
            let found = namespace.locate(symbol.address, |found| {
                found.map(|location| {
                    (
                        location.module_name.to_string(),
                        location.symbol.map(|symbol| symbol.name.to_string()),
                    )
                })
            });
            assert_eq!(
                found,
                Some((name.to_string(), Some(symbol.name.to_string()))),
                "{} at {}",
                symbol.name,
                symbol.address
            );
        }
    }
}

/// Loads the fixture `source`, built position-independent, with `loader`.
fn load_with(loader: modload::Loader<'static>, source: &str) -> modload::Module<'static> {
    let path = compile_c(&fixture(source), CModel::Pic, &[]);
    let bytes = modload_tests::read(&path);
    // SAFETY: the fixtures are this project's own test code.
    unsafe { loader.load(&module_name(&path), &bytes) }.unwrap()
}

#[test]
fn grouped_modules_answer_in_each_segment() {
    let env = Env::anywhere();
    let loader = env.loader().grouped();
    let first = load_with(loader, "m1.c");
    let second = load_with(loader, "m2.c");
    assert_each_symbol_found(env.namespace, &[(&first, "m1.o"), (&second, "m2.o")]);
    unload(second);
    unload(first);
    env.assert_back_to_baseline();
}

#[test]
fn packed_modules_sharing_pages_answer_each_for_its_own() {
    use modload_platform::host::{new_packed_region, Placement};
    let packed = new_packed_region(8 << 20, Placement::Anywhere).expect("packed region");
    let namespace: &'static modload::Namespace = Box::leak(Box::new(modload::Namespace::new()));
    for (name, function) in [
        ("host_add", host_add as *const ()),
        ("host_mul", host_mul as *const ()),
    ] {
        namespace.add_host_export(name, address(function)).unwrap();
    }
    let loader = modload::Loader::new(
        namespace,
        packed.region,
        &modload_platform::host::HOST_PROTECTION,
    )
    .packed(packed.writer);
    let first = load_with(loader, "m1.c");
    let second = load_with(loader, "m2.c");
    // Both modules' code shares one page, so addresses interleave by module.
    let page =
        |module: &modload::Module<'_>, name: &str| module.symbol(name).unwrap().as_u64() >> 12;
    assert_eq!(
        page(&first, "m1_value"),
        page(&second, "m2_scale"),
        "code packed into one page"
    );
    assert_each_symbol_found(namespace, &[(&first, "m1.o"), (&second, "m2.o")]);
    unload(second);
    unload(first);
}

#[test]
fn the_debug_object_of_a_module_with_its_unwind_tables_kept() {
    // A kept `.eh_frame` is loaded 4 bytes longer, for its terminator:
    // the header's size is still the object's.
    let env = Env::anywhere();
    let path = compile_c(
        &fixture("m1.c"),
        CModel::Pic,
        &["-g", "-fasynchronous-unwind-tables"],
    );
    let bytes = modload_tests::read(&path);
    let loader = env.loader().keep_unwind_tables();
    // SAFETY: the fixtures are this project's own test code.
    let module = unsafe { loader.load("m1.o", &bytes) }.unwrap();
    assert!(!module.unwind_tables().is_empty());
    let debug = module.debug_object(&bytes).unwrap();
    let elf = Elf::parse(&debug).unwrap();
    let frames = elf
        .section_headers
        .iter()
        .find(|header| elf.shdr_strtab.get_at(header.sh_name) == Some(".eh_frame"))
        .unwrap();
    assert_eq!(VirtAddr::new(frames.sh_addr), module.unwind_tables()[0]);
    unload(module);
}

/// What the unload hook saw: the module's id, whether the namespace still
/// found the module's function, and the region's usage.
static UNLOADS: std::sync::Mutex<Vec<(u64, bool, usize)>> = std::sync::Mutex::new(Vec::new());
/// The namespace, region and function address the hook checks.
static HOOK_ENV: std::sync::OnceLock<(&'static modload::Namespace, &'static modload::Region, u64)> =
    std::sync::OnceLock::new();

fn record_unload(id: modload::ModuleId) {
    let (namespace, region, function) = *HOOK_ENV.get().unwrap();
    let found = namespace.locate(VirtAddr::new(function), |found| found.is_some());
    UNLOADS
        .lock()
        .unwrap()
        .push((id.get(), found, region.usage().used));
}

#[test]
fn the_unload_hook_runs_after_the_module_left_and_before_its_memory_did() {
    let env = Env::anywhere();
    let module = env.load(&compile_c(&fixture("m1.c"), CModel::Pic, &[]));
    let function = module.symbol("m1_value").unwrap().as_u64();
    assert!(HOOK_ENV.set((env.namespace, env.region, function)).is_ok());
    env.namespace.set_unload_hook(Some(record_unload));
    let used = env.used();
    let id = module.id().get();
    unload(module);
    assert_eq!(*UNLOADS.lock().unwrap(), [(id, false, used)]);
    env.assert_back_to_baseline();
    // A refused unload is not reported.
    let first = env.load(&compile_c(&fixture("m1.c"), CModel::Pic, &[]));
    let second = env.load(&compile_c(&fixture("m2.c"), CModel::Pic, &[]));
    let first = first.unload().unwrap_err().module;
    assert_eq!(UNLOADS.lock().unwrap().len(), 1);
    env.namespace.set_unload_hook(None);
    unload(second);
    unload(first);
    assert_eq!(
        UNLOADS.lock().unwrap().len(),
        1,
        "removed hooks are not called"
    );
}

/// The namespace `host_where_am_i` asks, and what it answered.
static WHERE_NAMESPACE: std::sync::OnceLock<&'static modload::Namespace> =
    std::sync::OnceLock::new();
static WHERE_ANSWERS: std::sync::Mutex<Vec<Option<String>>> = std::sync::Mutex::new(Vec::new());

extern "C" fn host_where_am_i(address: *const ()) {
    let namespace = WHERE_NAMESPACE.get().unwrap();
    let answer = namespace.locate(VirtAddr::from_ptr(address), |found| {
        found.map(ToString::to_string)
    });
    WHERE_ANSWERS.lock().unwrap().push(answer);
}

#[test]
fn a_module_is_still_located_while_its_destructors_run() {
    let env = Env::anywhere();
    assert!(WHERE_NAMESPACE.set(env.namespace).is_ok());
    env.namespace
        .add_host_export("host_where_am_i", address(host_where_am_i as *const ()))
        .unwrap();
    let module = env.load(&compile_c(&fixture("fini_locate.c"), CModel::Pic, &[]));
    assert_eq!(call0(&module, "fini_locate_value"), 7);
    let id = module.id();
    unload(module);
    assert_eq!(
        *WHERE_ANSWERS.lock().unwrap(),
        [Some("fini_locate_goodbye+0x0 [fini_locate.o]".to_string())]
    );
    // Once unloaded it is gone, and its id names nothing.
    assert!(modload::Module::from_id(env.namespace, id).is_none());
    assert!(env.namespace.modules().is_empty());
    env.assert_back_to_baseline();
}

#[test]
fn a_set_has_a_debug_object_per_member() {
    let env = Env::anywhere();
    let members: Vec<(String, Vec<u8>)> = ["m1.c", "m2.c"]
        .iter()
        .map(|source| {
            let path = compile_c(&fixture(source), CModel::Pic, &["-g"]);
            (module_name(&path), modload_tests::read(&path))
        })
        .collect();
    let borrowed: Vec<(&str, &[u8])> = members
        .iter()
        .map(|(name, bytes)| (name.as_str(), bytes.as_slice()))
        .collect();
    // SAFETY: the fixtures are this project's own test code.
    let set = unsafe { env.loader().load_set("set", &borrowed) }.unwrap();
    for (member, (name, function)) in [("m1.o", "m1_value"), ("m2.o", "m2_scale")]
        .into_iter()
        .enumerate()
    {
        let bytes = &members[member].1;
        assert_eq!(members[member].0, name);
        let elf_bytes = set.member_debug_object(member, bytes).unwrap();
        let elf = Elf::parse(&elf_bytes).unwrap();
        // Each member's own function sits where the set placed it.
        let symbol = elf
            .syms
            .iter()
            .find(|symbol| elf.strtab.get_at(symbol.st_name) == Some(function))
            .unwrap();
        let section = &elf.section_headers[symbol.st_shndx];
        assert_eq!(
            section.sh_addr + symbol.st_value,
            set.symbol(function).unwrap().as_u64(),
            "{function} in {name}"
        );
    }
    assert_eq!(
        set.member_debug_object(2, &members[0].1).unwrap_err(),
        DebugObjectError::NoSuchMember { member: 2 }
    );
    unload(set);
    env.assert_back_to_baseline();
}
