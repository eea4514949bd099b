//! Module sets: several objects joined by `Object::join` (an in-memory
//! `ld -r`) load as one module: one plan, one reservation, references
//! between members bound as in a static link, and one unload.

mod common;

use std::ffi::{c_char, c_int, CString};
use std::path::{Path, PathBuf};
use std::process::Command;

use modload::{
    ErrorKind, LoadError, Loader, Module, Namespace, NoProtection, Object, Region,
    RelocationProblem, SectionKind, SymbolProblem, VirtAddr,
};
use modload_platform::host::{new_region, Placement};
use modload_tests::{compile_c, compile_cxx, fixture, read, run_native, CModel};

use common::*;

/// The members as `(name, bytes)`, named after their fixture (`set_a.o`).
fn members(paths: &[PathBuf]) -> Vec<(String, Vec<u8>)> {
    paths
        .iter()
        .map(|path| (module_name(path), read(path)))
        .collect()
}

fn borrowed(members: &[(String, Vec<u8>)]) -> Vec<(&str, &[u8])> {
    members
        .iter()
        .map(|(name, bytes)| (name.as_str(), bytes.as_slice()))
        .collect()
}

fn try_load_set(
    loader: &Loader<'static>,
    name: &str,
    members: &[(String, Vec<u8>)],
) -> Result<Module<'static>, LoadError> {
    // SAFETY: the fixtures are this project's own test code.
    unsafe { loader.load_set(name, &borrowed(members)) }
}

fn joined<'a>(name: &str, members: &'a [(String, Vec<u8>)]) -> Result<Object<'a>, LoadError> {
    let objects = members
        .iter()
        .map(|(member, bytes)| Object::parse(member, bytes))
        .collect::<Result<Vec<_>, _>>()?;
    Object::join(name, objects)
}

fn call_ptr(module: &Module<'_>, name: &str) -> usize {
    // SAFETY: the fixtures declare these functions as `long *f(void)`.
    let function = unsafe { module.get::<extern "C" fn() -> *const i64>(name) }
        .unwrap_or_else(|| panic!("no symbol {name}"));
    function() as usize
}

/// The cycle's documented values, from a native link of the two files.
#[test]
fn the_cycle_fixture_computes_its_values_natively() {
    for model in [CModel::PieDefault, CModel::Pic, CModel::NoPicSmall] {
        let objects = [
            compile_c(&fixture("native/set_driver.c"), CModel::PieDefault, &[]),
            compile_c(&fixture("set_a.c"), model, &[]),
            compile_c(&fixture("set_b.c"), model, &[]),
        ];
        let (stdout, code) = run_native(&objects, &[]);
        assert_eq!(code, 0, "{model:?}");
        assert_eq!(
            stdout,
            "\
set_a_run(1) = 63
set_a_read_b() = 101
set_b_read_a() = 20
one set_a_value: 1
one set_b_value: 1
",
            "{model:?}"
        );
    }
}

/// Neither half of the cycle loads as a module, in either order; joined,
/// they load as one module, share one copy of each variable, and unload as
/// one.
#[test]
fn members_that_need_each_other_load_as_one_set() {
    for model in RUNNABLE {
        let env = Env::for_model(model);
        let paths = [
            compile_c(&fixture("set_a.c"), model, &[]),
            compile_c(&fixture("set_b.c"), model, &[]),
        ];
        for path in &paths {
            let error = env.try_load(path).unwrap_err();
            let ErrorKind::Unresolved { names } = &error.kind else {
                panic!("{model:?}: {error}")
            };
            assert!(
                names
                    .iter()
                    .any(|name| name.starts_with("set_") && name.ends_with("_value")),
                "{model:?}: {names:?}"
            );
            env.assert_back_to_baseline();
            assert!(env.namespace.modules().is_empty());
        }
        let members = members(&paths);
        let set = try_load_set(&env.loader(), "set", &members)
            .unwrap_or_else(|error| panic!("{model:?}: {error}"));
        assert_eq!(env.namespace.modules().len(), 1, "{model:?}: one module");
        assert_eq!(call1(&set, "set_a_run", 1), 63, "{model:?}");
        assert_eq!(call0(&set, "set_a_read_b"), 101, "{model:?}");
        assert_eq!(call0(&set, "set_b_read_a"), 20, "{model:?}");
        assert_eq!(
            call_ptr(&set, "set_a_value_addr"),
            call_ptr(&set, "set_b_a_value_addr"),
            "{model:?}"
        );
        assert_eq!(
            call_ptr(&set, "set_b_value_addr"),
            call_ptr(&set, "set_a_b_value_addr"),
            "{model:?}"
        );
        // Both members' names are the set's exports.
        for name in ["set_a_value", "set_b_value", "set_a_run", "set_b_scaled"] {
            let address = env.namespace.lookup(name);
            assert!(address.is_some(), "{model:?}: {name}");
        }
        unload(set);
        env.assert_back_to_baseline();
        assert!(env.namespace.modules().is_empty());
        assert_eq!(env.namespace.lookup("set_a_value"), None);
    }
}

/// The set is one plan and one reservation: its size is what the plan
/// said, and it is less than the two members' plans as separate modules
/// (each rounds three segments to pages).
#[test]
fn a_set_is_one_plan_and_one_reservation() {
    let env = Env::anywhere();
    let paths = [
        compile_c(&fixture("set_a.c"), CModel::Pic, &[]),
        compile_c(&fixture("set_b.c"), CModel::Pic, &[]),
    ];
    let members = members(&paths);
    let loader = env.loader();
    let planned = loader.plan(joined("set", &members).unwrap()).unwrap();
    assert_eq!(
        planned.object().members().collect::<Vec<_>>(),
        ["set_a.o", "set_b.o"]
    );
    let plan = planned.plan().clone();
    let alone: u64 = members
        .iter()
        .map(|(name, bytes)| {
            let object = Object::parse(name, bytes).unwrap();
            loader.plan(object).unwrap().plan().size()
        })
        .sum();
    assert!(plan.size() < alone, "{} vs {alone}", plan.size());
    // References between the members bind inside the set: no GOT slot or
    // stub is planned for them (-fPIC would take both for imports).
    assert_eq!(plan.stub_slots(), 0);
    let placed = planned.allocate().unwrap();
    assert_eq!(env.used() - env.baseline.used, plan.size() as usize);
    drop(placed);
    env.assert_back_to_baseline();
}

/// The multi-file program of `tests/fixtures/prog` runs `main` as one set
/// with the output and status of its native link. `main` prints through C
/// stdio, so each run happens in a child process (this test binary, running
/// `program_child`) whose output is compared.
#[test]
fn the_program_runs_as_one_set_like_its_native_link() {
    const SOURCES: [&str; 5] = [
        "prog/main.c",
        "prog/commands.c",
        "prog/numbers.c",
        "prog/words.c",
        "prog/state.c",
    ];
    for model in [CModel::PieDefault, CModel::Pic, CModel::NoPicSmall] {
        let objects: Vec<PathBuf> = SOURCES
            .iter()
            .map(|source| compile_c(&fixture(source), model, &[]))
            .collect();
        for args in [&["alpha", "beta"][..], &[]] {
            let native = run_native(&objects, args);
            let joined = run_child(&objects, model, args);
            assert_eq!(joined, native, "{model:?} {args:?}");
        }
    }
}

const CHILD_OBJECTS: &str = "MODLOAD_SET_CHILD_OBJECTS";
const CHILD_ARGS: &str = "MODLOAD_SET_CHILD_ARGS";
const CHILD_LOW: &str = "MODLOAD_SET_CHILD_LOW";
const OUTPUT_MARKER: &str = "=== program output ===\n";

fn run_child(objects: &[PathBuf], model: CModel, args: &[&str]) -> (String, i32) {
    let joined = |items: Vec<String>| items.join("\n");
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "program_child", "--ignored", "--nocapture"])
        .args(["--test-threads", "1"])
        .env(
            CHILD_OBJECTS,
            joined(objects.iter().map(|o| o.display().to_string()).collect()),
        )
        .env(
            CHILD_ARGS,
            joined(args.iter().map(|a| a.to_string()).collect()),
        )
        .env(
            CHILD_LOW,
            if model == CModel::NoPicSmall {
                "1"
            } else {
                "0"
            },
        )
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let Some((_, program)) = stdout.split_once(OUTPUT_MARKER) else {
        panic!(
            "the child did not run the program: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    (program.to_string(), output.status.code().unwrap_or(-1))
}

/// Resolves libc and libm names in this process, as `modload run` does.
fn from_libc(name: &str) -> Option<VirtAddr> {
    let name = CString::new(name).ok()?;
    // SAFETY: dlsym reads a NUL-terminated name; RTLD_DEFAULT searches the
    // process's global scope, which holds libc.
    let mut address = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    if address.is_null() {
        // SAFETY: dlopen of libm by its soname, which glibc provides; the
        // handle is never closed, so its symbols stay valid.
        let libm = unsafe { libc::dlopen(c"libm.so.6".as_ptr(), libc::RTLD_NOW) };
        if !libm.is_null() {
            // SAFETY: as above, on libm's handle.
            address = unsafe { libc::dlsym(libm, name.as_ptr()) };
        }
    }
    (!address.is_null()).then(|| VirtAddr::from_ptr(address.cast_const().cast::<()>()))
}

static FROM_LIBC: fn(&str) -> Option<VirtAddr> = from_libc;

/// Run by `the_program_runs_as_one_set_like_its_native_link` in a child
/// process: loads the objects it is given as one set, runs `main` and exits
/// with its status.
#[test]
#[ignore = "run in a child process by the_program_runs_as_one_set_like_its_native_link"]
fn program_child() {
    let Ok(objects) = std::env::var(CHILD_OBJECTS) else {
        return;
    };
    let args = std::env::var(CHILD_ARGS).unwrap_or_default();
    let env = if std::env::var(CHILD_LOW).as_deref() == Ok("1") {
        Env::low()
    } else {
        Env::anywhere()
    };
    let paths: Vec<PathBuf> = objects.lines().map(PathBuf::from).collect();
    let members = members(&paths);
    let loader = env.loader().with_fallback(&FROM_LIBC);
    let set = try_load_set(&loader, "prog", &members).unwrap_or_else(|error| panic!("{error}"));
    // SAFETY: `main` is `int main(int, char **)`.
    let main = unsafe { set.get::<extern "C" fn(c_int, *const *const c_char) -> c_int>("main") }
        .expect("main");
    let words: Vec<CString> = std::iter::once("prog")
        .chain(args.lines())
        .map(|word| CString::new(word).unwrap())
        .collect();
    let mut argv: Vec<*const c_char> = words.iter().map(|word| word.as_ptr()).collect();
    argv.push(std::ptr::null());
    print!("{OUTPUT_MARKER}");
    std::io::Write::flush(&mut std::io::stdout()).unwrap();
    let status = main(words.len() as c_int, argv.as_ptr());
    // SAFETY: fflush(NULL) flushes every C stream; it takes no pointer of ours.
    unsafe { libc::fflush(std::ptr::null_mut()) };
    std::process::exit(status);
}

/// Two members that both define a name strongly: refused like a static
/// link, naming both, and nothing changes.
#[test]
fn duplicate_strong_definitions_name_both_members() {
    let env = Env::anywhere();
    let members = members(&[
        compile_c(&fixture("m1.c"), CModel::Pic, &[]),
        compile_c(&fixture("dup_m1.c"), CModel::Pic, &[]),
    ]);
    let error = try_load_set(&env.loader(), "dups", &members).unwrap_err();
    assert_eq!(&*error.module, "dups");
    assert_eq!(
        error.kind,
        ErrorKind::DuplicateInSet {
            name: "m1_value".into(),
            first: "m1.o".into(),
            second: "dup_m1.o".into(),
        },
        "{error}"
    );
    assert!(error.to_string().contains("m1.o"), "{error}");
    env.assert_back_to_baseline();
    assert!(env.namespace.modules().is_empty());
}

/// Tentative definitions (`-fcommon`) in two members are one variable, as
/// large as the largest.
#[test]
fn common_symbols_of_members_are_one_variable() {
    for model in RUNNABLE {
        let env = Env::for_model(model);
        let members = members(&[
            compile_c(&fixture("common.c"), model, &["-fcommon"]),
            compile_c(&fixture("common_user.c"), model, &["-fcommon"]),
        ]);
        let set = try_load_set(&env.loader(), "commons", &members)
            .unwrap_or_else(|error| panic!("{model:?}: {error}"));
        assert_eq!(call1(&set, "common_touch", 5), 10, "{model:?}");
        assert_eq!(call0(&set, "common_user_read"), 5, "{model:?}: one copy");
        assert_eq!(call0(&set, "common_align"), 1, "{model:?}");
        unload(set);
        env.assert_back_to_baseline();
    }
}

/// Members with the same COMDAT groups keep the first member's copy: the
/// set plans less code than its members alone, and every member uses the
/// one copy.
#[test]
fn comdat_groups_in_several_members_keep_one_copy() {
    let pairs = comdat_pairs();
    for (a, b, prefix) in pairs {
        let env = Env::anywhere();
        let loader = env.loader();
        let members = members(&[a, b]);
        let text_alone: u64 = members
            .iter()
            .map(|(name, bytes)| {
                let object = Object::parse(name, bytes).unwrap();
                loader
                    .plan(object)
                    .unwrap()
                    .plan()
                    .kind(SectionKind::Text)
                    .size
            })
            .sum();
        let planned = loader.plan(joined("pair", &members).unwrap()).unwrap();
        let text = planned.plan().kind(SectionKind::Text).size;
        assert!(text < text_alone, "{prefix}: {text} vs {text_alone}");
        drop(planned);
        let set = try_load_set(&loader, "pair", &members)
            .unwrap_or_else(|error| panic!("{prefix}: {error}"));
        assert_eq!(call0(&set, &format!("{prefix}_a_call")), 1235);
        assert_eq!(call0(&set, &format!("{prefix}_b_call")), 1236);
        assert_eq!(call0(&set, &format!("{prefix}_a_bump")), 1);
        assert_eq!(
            call0(&set, &format!("{prefix}_b_bump")),
            2,
            "{prefix}: one shared copy"
        );
        unload(set);
        env.assert_back_to_baseline();
    }
}

/// A module loaded before the set owns the groups: the set's copies (the
/// one it keeps and the one it discards itself) all bind to the module's.
#[test]
fn comdat_groups_an_earlier_module_owns_bind_the_whole_set_to_it() {
    let env = Env::anywhere();
    let first = env.load(&compile_cxx(&fixture("comdat_a.cpp"), CModel::Pic, &[]));
    let members = members(&[
        compile_cxx(&fixture("comdat_b.cpp"), CModel::Pic, &[]),
        compile_cxx(&fixture("comdat_c.cpp"), CModel::Pic, &[]),
    ]);
    let set = try_load_set(&env.loader(), "later", &members).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(call0(&first, "comdat_cxx_a_bump"), 1);
    assert_eq!(call0(&set, "comdat_cxx_b_bump"), 2);
    assert_eq!(call0(&set, "comdat_cxx_c_bump"), 3);
    assert_eq!(call0(&set, "comdat_cxx_c_call"), 1237);
    let refused = first.unload().expect_err("the set uses the first module");
    unload(set);
    unload(refused.module);
    env.assert_back_to_baseline();
}

/// A load of a set that fails late (at relocation, here) leaves the region
/// and the namespace as they were, and the error names the member and the
/// section by the member's own index.
#[test]
fn relocation_failures_name_the_member() {
    // Small-model absolute addresses in a region far above 4 GiB.
    let env = Env::anywhere();
    assert!(env.region.start().as_u64() > 1 << 32);
    let keep = env.load(&compile_c(&fixture("m1.c"), CModel::Pic, &[]));
    let used = env.used();
    let members = members(&[
        compile_c(&fixture("set_a.c"), CModel::Pic, &[]),
        compile_c(&fixture("set_b.c"), CModel::NoPicSmall, &[]),
    ]);
    let error = try_load_set(&env.loader(), "far", &members).unwrap_err();
    assert_eq!(&*error.module, "far");
    assert_eq!(error.member.as_deref(), Some("set_b.o"), "{error}");
    let ErrorKind::Relocation(failure) = &error.kind else {
        panic!("{error}")
    };
    assert!(
        matches!(failure.problem, RelocationProblem::Overflow { .. }),
        "{error}"
    );
    let (_, b_bytes) = &members[1];
    assert_eq!(
        failure.section.index,
        section_index(b_bytes, &failure.section.name),
        "{error}"
    );
    assert!(error.to_string().starts_with("far: set_b.o: "), "{error}");
    assert_eq!(env.used(), used);
    assert_eq!(env.namespace.modules().len(), 1);
    unload(keep);
    env.assert_back_to_baseline();
}

/// Bad input inside a member is reported as that member's, with its own
/// indices: a relocation naming a symbol past the member's table (which
/// would otherwise land in the next member's symbols), and a symbol
/// outside its section.
#[test]
fn bad_input_in_a_member_names_the_member() {
    let env = Env::anywhere();
    let paths = [
        compile_c(&fixture("set_a.c"), CModel::Pic, &[]),
        compile_c(&fixture("set_b.c"), CModel::Pic, &[]),
    ];

    // set_a's last relocation names symbol (its count): set_b's first.
    let mut bad = members(&paths);
    let (_, a_bytes) = &mut bad[0];
    let count = raw_symbols(a_bytes).len() as u64;
    let entry = raw_relocations(a_bytes).last().unwrap().clone();
    let info = count << 32 | u64::from(entry.r_type);
    put_u64(a_bytes, entry.entry + 8, info);
    let error = try_load_set(&env.loader(), "bad", &bad).unwrap_err();
    assert_eq!(error.member.as_deref(), Some("set_a.o"), "{error}");
    let ErrorKind::Relocation(failure) = &error.kind else {
        panic!("{error}")
    };
    assert_eq!(failure.problem, RelocationProblem::BadSymbol, "{error}");
    assert_eq!(failure.section.index, entry.target, "{error}");
    env.assert_back_to_baseline();

    // set_b's set_b_value lies past its section's end.
    let mut bad = members(&paths);
    let (_, b_bytes) = &mut bad[1];
    let symbol = raw_symbols(b_bytes)
        .into_iter()
        .find(|symbol| symbol.name == "set_b_value")
        .unwrap();
    put_u64(b_bytes, symbol.entry + 8, 1 << 20);
    let error = try_load_set(&env.loader(), "bad", &bad).unwrap_err();
    assert_eq!(error.member.as_deref(), Some("set_b.o"), "{error}");
    assert_eq!(
        error.kind,
        ErrorKind::Symbol {
            index: symbol.index,
            name: "set_b_value".into(),
            problem: SymbolProblem::OutOfSection,
        },
        "{error}"
    );
    env.assert_back_to_baseline();
    assert!(env.namespace.modules().is_empty());

    // A member that does not parse.
    let mut bad = members(&paths);
    bad[1].1[0] = b'X';
    let error = try_load_set(&env.loader(), "bad", &bad).unwrap_err();
    assert_eq!(
        (error.member.as_deref(), &error.kind),
        (Some("set_b.o"), &ErrorKind::NotElf)
    );
}

fn aarch64_set_objects() -> Vec<(String, Vec<u8>)> {
    use modload_tests::aarch64;
    ["set_a", "set_b"]
        .iter()
        .map(|stem| {
            let path =
                aarch64::compile_c(&fixture(&format!("{stem}.c")), aarch64::CModel::SmallPic);
            (format!("{stem}.o"), read(&path))
        })
        .collect()
}

/// AArch64 members join too (the relocation engine follows the machine),
/// linked here for an address they never run at; a set mixing machines is
/// refused.
#[test]
fn aarch64_members_join_and_machines_do_not_mix() {
    let region: &'static Region = new_region(1 << 20, Placement::Anywhere).unwrap();
    let namespace: &'static Namespace = Box::leak(Box::new(Namespace::new()));
    let loader = Loader::new(namespace, region, &NoProtection);
    let members = aarch64_set_objects();
    for (name, bytes) in &members {
        let object = Object::parse(name, bytes).unwrap();
        let planned = loader.plan(object).unwrap();
        // Alone, the call to the other member may be out of reach: a veneer.
        assert!(planned.plan().stub_slots() > 0, "{name}");
        let mut placed = planned.allocate().unwrap();
        placed.map_module(VirtAddr::new(0x40_0000)).unwrap();
        let error = placed
            .relocate()
            .err()
            .expect("alone, a member is unresolved");
        assert!(
            matches!(error.kind, ErrorKind::Unresolved { .. }),
            "{error}"
        );
    }
    let set = joined("a64", &members).unwrap();
    assert_eq!(set.machine(), modload::Machine::AArch64);
    let planned = loader.plan(set).unwrap();
    // In the set, the calls stay inside the module: no veneers.
    assert_eq!(planned.plan().stub_slots(), 0);
    let mut placed = planned.allocate().unwrap();
    placed.map_module(VirtAddr::new(0x40_0000)).unwrap();
    let relocated = placed.relocate().unwrap_or_else(|e| panic!("{e}"));
    assert!(relocated.report().relocations_applied > 0);
    let module = relocated.finalize().unwrap().publish().unwrap();
    let a_value = namespace.lookup("set_a_value").unwrap().as_u64();
    let b_value = namespace.lookup("set_b_value").unwrap().as_u64();
    let end = 0x40_0000 + region.usage().used as u64;
    assert!((0x40_0000..end).contains(&a_value), "{a_value:#x}");
    assert!((0x40_0000..end).contains(&b_value), "{b_value:#x}");
    module.unload().map_err(|refused| refused.error).unwrap();
    assert_eq!(region.usage().used, 0);

    // x86-64 and AArch64 in one set.
    let x86 = members_of(&compile_c(&fixture("set_a.c"), CModel::Pic, &[]));
    let mixed = [x86, members[1].clone()];
    let error = joined("mixed", &mixed).err().expect("machines differ");
    assert_eq!(error.member.as_deref(), Some("set_b.o"), "{error}");
    assert_eq!(
        error.kind,
        ErrorKind::MixedMachines {
            set: modload::Machine::X86_64.e_machine(),
            member: modload::Machine::AArch64.e_machine(),
        }
    );
}

fn members_of(path: &Path) -> (String, Vec<u8>) {
    (module_name(path), read(path))
}

#[test]
fn an_empty_set_is_refused() {
    let error = Object::join("none", Vec::new()).err().unwrap();
    assert_eq!(error.kind, ErrorKind::EmptySet);
}

/// With signatures required, a set is trusted when every member was
/// checked with a key the planning loader trusts, whichever keys they are.
#[test]
fn a_signed_set_needs_every_member_signed_by_a_trusted_key() {
    use modload::signature::{self, public_key, SecretKey, TrustedKeys};
    const FIRST: SecretKey = [0x11; 32];
    const SECOND: SecretKey = [0x33; 32];
    fn signed(payload: &[u8], secret: &SecretKey) -> Vec<u8> {
        let mut bytes = payload.to_vec();
        bytes.extend_from_slice(&signature::sign(payload, secret));
        bytes
    }
    fn trusting(secrets: &[&SecretKey]) -> &'static TrustedKeys {
        let mut keys = TrustedKeys::new();
        for secret in secrets {
            keys.add(&public_key(secret)).unwrap();
        }
        Box::leak(Box::new(keys))
    }
    let env = Env::anywhere();
    let plain = members(&[
        compile_c(&fixture("set_a.c"), CModel::Pic, &[]),
        compile_c(&fixture("set_b.c"), CModel::Pic, &[]),
    ]);
    let both = [
        (plain[0].0.clone(), signed(&plain[0].1, &FIRST)),
        (plain[1].0.clone(), signed(&plain[1].1, &SECOND)),
    ];
    let trusts_both = env
        .loader()
        .require_signatures(trusting(&[&FIRST, &SECOND]));
    let set = try_load_set(&trusts_both, "signed", &both).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(call1(&set, "set_a_run", 1), 63);
    unload(set);
    env.assert_back_to_baseline();

    // Verified members, planned by a loader that trusts only one key.
    let trusts_first = env.loader().require_signatures(trusting(&[&FIRST]));
    let set = trusts_both.parse_set("signed", &borrowed(&both)).unwrap();
    let error = trusts_first.plan(set).err().expect("one member untrusted");
    assert!(matches!(error.kind, ErrorKind::Signature { .. }), "{error}");
    // Members parsed without their signatures checked.
    let error = trusts_both
        .plan(joined("plain", &plain).unwrap())
        .err()
        .expect("unchecked members");
    assert!(matches!(error.kind, ErrorKind::Signature { .. }), "{error}");
    // One unsigned member.
    let mixed = [both[0].clone(), plain[1].clone()];
    let error = try_load_set(&trusts_both, "mixed", &mixed).unwrap_err();
    assert_eq!(error.member.as_deref(), Some("set_b.o"), "{error}");
    assert!(matches!(error.kind, ErrorKind::Signature { .. }), "{error}");
    env.assert_back_to_baseline();
    assert!(env.namespace.modules().is_empty());
}

/// Weak and strong definitions across members settle as in a static link
/// (strong wins, else the first weak one), and a weak winner still yields to
/// a definition loaded before the set, for every member that uses the name.
#[test]
fn weak_definitions_in_a_set_settle_as_in_a_static_link() {
    for model in [CModel::Pic, CModel::PieDefault] {
        let env = Env::anywhere();
        let weak = compile_c(&fixture("weak_def.c"), model, &[]);
        let weak_again = compile_c(
            &fixture("weak_def.c"),
            model,
            &["-DWEAK_DEF_ADDR=weak_def_addr_again"],
        );
        let strong = compile_c(&fixture("strong_def.c"), model, &[]);
        let user = compile_c(&fixture("shared_user.c"), model, &[]);
        let value = |address: usize| {
            // SAFETY: the address of `long shared_value` in a loaded module.
            unsafe { *(address as *const i64) }
        };

        // The strong definition wins, though a weak one comes first.
        let mut members = members(&[weak.clone(), strong.clone(), user.clone()]);
        members[1].0 = "strong.o".into();
        let set = try_load_set(&env.loader(), "strong", &members).unwrap();
        let address = call_ptr(&set, "strong_def_addr");
        assert_eq!(call_ptr(&set, "weak_def_addr"), address, "{model:?}");
        assert_eq!(call_ptr(&set, "shared_user_addr"), address, "{model:?}");
        assert_eq!(value(address), 1, "{model:?}");
        unload(set);

        // Only weak ones: the first.
        let members = members_named(&[(&weak, "w1.o"), (&weak_again, "w2.o"), (&user, "u.o")]);
        let set = try_load_set(&env.loader(), "weak", &members).unwrap();
        let address = call_ptr(&set, "weak_def_addr");
        assert_eq!(call_ptr(&set, "weak_def_addr_again"), address, "{model:?}");
        assert_eq!(call_ptr(&set, "shared_user_addr"), address, "{model:?}");
        assert_eq!(value(address), 2, "{model:?}");
        unload(set);
        env.assert_back_to_baseline();

        // A strong definition loaded before: every member binds to it.
        let first = env.load(&strong);
        let members = members_named(&[(&weak, "w1.o"), (&weak_again, "w2.o"), (&user, "u.o")]);
        let set = try_load_set(&env.loader(), "late", &members).unwrap();
        let address = call_ptr(&first, "strong_def_addr");
        for name in ["weak_def_addr", "weak_def_addr_again", "shared_user_addr"] {
            assert_eq!(call_ptr(&set, name), address, "{model:?}: {name}");
        }
        unload(set);
        unload(first);
        env.assert_back_to_baseline();
    }
}

fn members_named(paths: &[(&PathBuf, &str)]) -> Vec<(String, Vec<u8>)> {
    paths
        .iter()
        .map(|(path, name)| (name.to_string(), read(path)))
        .collect()
}

/// The limits bound the set as a whole: members that each fit may not fit
/// together, whether joined with limits or planned by a loader with them.
#[test]
fn limits_apply_to_the_joined_object() {
    use modload::{Limit, Limits};
    let members = members(&[
        compile_c(&fixture("set_a.c"), CModel::Pic, &[]),
        compile_c(&fixture("set_b.c"), CModel::Pic, &[]),
    ]);
    let objects = || {
        members
            .iter()
            .map(|(name, bytes)| Object::parse(name, bytes).unwrap())
            .collect::<Vec<_>>()
    };
    let largest = |count: fn(&[u8]) -> usize| {
        members
            .iter()
            .map(|(_, bytes)| count(bytes) as u64)
            .max()
            .unwrap()
    };
    let sections = largest(|bytes| raw_sections(bytes).len());
    let symbols = largest(|bytes| raw_symbols(bytes).len());
    let relocations = largest(|bytes| raw_relocations(bytes).len());
    let cases = [
        (Limits::DEFAULT.max_sections(sections), Limit::Sections),
        (Limits::DEFAULT.max_symbols(symbols), Limit::Symbols),
        (
            Limits::DEFAULT.max_relocations(relocations),
            Limit::Relocations,
        ),
    ];
    for (limits, limit) in cases {
        let error = Object::join_with_limits("big", objects(), &limits)
            .err()
            .expect("too big together");
        assert!(
            matches!(error.kind, ErrorKind::LimitExceeded { limit: l, .. } if l == limit),
            "{error}"
        );
        // Joined with room to spare, planned by a loader with the limits.
        let env = Env::anywhere();
        let set = Object::join("big", objects()).unwrap();
        let error = env.loader().with_limits(limits).plan(set).err().unwrap();
        assert!(
            matches!(error.kind, ErrorKind::LimitExceeded { limit: l, .. } if l == limit),
            "{error}"
        );
        env.assert_back_to_baseline();
    }
}
