//! AArch64 modules planned, placed and relocated on this (x86-64) host: the
//! "link here, run there" use. Nothing here executes AArch64 code, so every
//! check decodes the patched instructions with the architecture's rules, written
//! out in this file rather than taken from the loader.

use std::path::PathBuf;
use std::process::Command;

use modload::RelocationType;
use modload::{
    ErrorKind, Finalized, LoadError, Loader, Module, Namespace, NoProtection, Object, Region,
    RelocationProblem, SectionKind, VirtAddr,
};
use modload_platform::host::{new_region, Placement};

/// Assembles AArch64 `source` with llvm-mc into a relocatable object.
fn assemble(name: &str, source: &str) -> Vec<u8> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("aarch64_host");
    std::fs::create_dir_all(&dir).unwrap();
    let source_path = dir.join(format!("{name}.s"));
    let object = dir.join(format!("{name}.o"));
    std::fs::write(&source_path, source).unwrap();
    let status = Command::new("llvm-mc-22")
        .args(["-triple=aarch64", "-filetype=obj", "-o"])
        .arg(&object)
        .arg(&source_path)
        .status()
        .expect("llvm-mc-22 runs (scripts/install-deps.sh cross)");
    assert!(status.success(), "llvm-mc-22 failed on {name}.s");
    std::fs::read(object).unwrap()
}

struct Env {
    region: &'static Region,
    namespace: &'static Namespace,
}

impl Env {
    /// A fresh region and namespace with `exports` as host symbols, given as
    /// offsets from the region's start (the addresses are never called).
    fn new(exports: &[(&str, i64)]) -> Self {
        let region = new_region(16 << 20, Placement::Anywhere).unwrap();
        let namespace: &'static Namespace = Box::leak(Box::new(Namespace::new()));
        for (name, offset) in exports {
            let address = region.start().as_u64().wrapping_add_signed(*offset);
            namespace
                .add_host_export(name, VirtAddr::new(address))
                .unwrap();
        }
        Self { region, namespace }
    }

    fn loader(&self) -> Loader<'static> {
        Loader::new(self.namespace, self.region, &NoProtection)
    }

    fn export(&self, name: &str) -> u64 {
        self.namespace.lookup(name).unwrap().as_u64()
    }

    /// Plans, places (at `target` if given) and relocates one object.
    fn link(&self, name: &str, bytes: &[u8], target: Option<u64>) -> Result<Linked, LoadError> {
        let object = Object::parse(name, bytes)?;
        let planned = self.loader().plan(object)?;
        let plan = planned.plan().clone();
        let mut placed = planned.allocate()?;
        if let Some(target) = target {
            placed.map_module(VirtAddr::new(target))?;
        }
        let pieces = placed.pieces();
        let finalized = placed.relocate()?.finalize()?;
        Ok(Linked {
            plan,
            pieces,
            finalized,
        })
    }
}

struct Linked {
    plan: modload::Plan,
    pieces: Vec<modload::PlacedPiece>,
    finalized: Finalized<'static>,
}

impl Linked {
    fn piece(&self, name: &str) -> &modload::PlacedPiece {
        self.pieces
            .iter()
            .find(|piece| &*piece.name == name)
            .unwrap_or_else(|| panic!("no piece {name}"))
    }

    /// The instruction at `offset` of piece `name`, and its target address.
    fn word(&self, name: &str, offset: u64) -> (u32, u64) {
        let piece = self.piece(name);
        let at = (piece.offset + offset) as usize;
        let bytes = self.finalized.bytes();
        let word = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        (word, piece.target.as_u64() + offset)
    }

    /// The 8 bytes at target address `address`, wherever they were placed.
    fn quad_at(&self, address: u64) -> u64 {
        let piece = self
            .pieces
            .iter()
            .find(|piece| {
                (piece.target.as_u64()..piece.target.as_u64() + piece.size).contains(&address)
            })
            .unwrap_or_else(|| panic!("{address:#x} is in no piece"));
        let at = (piece.offset + address - piece.target.as_u64()) as usize;
        u64::from_le_bytes(self.finalized.bytes()[at..at + 8].try_into().unwrap())
    }

    /// Where a B/BL at `offset` of `.text` ends up: its own target, or through a
    /// veneer (`ldr x16, #8; br x16; .quad target`) the veneer's target.
    fn branch_destination(&self, offset: u64) -> (u64, bool) {
        let (word, place) = self.word(".text", offset);
        let imm26 = i64::from(((word & 0x03ff_ffff) << 6) as i32 >> 6);
        let landing = place.wrapping_add_signed(imm26 * 4);
        let stubs = self
            .pieces
            .iter()
            .find(|piece| piece.kind == SectionKind::Stubs);
        match stubs {
            Some(stubs)
                if (stubs.target.as_u64()..stubs.target.as_u64() + stubs.size)
                    .contains(&landing) =>
            {
                let at = (stubs.offset + landing - stubs.target.as_u64()) as usize;
                let bytes = &self.finalized.bytes()[at..at + 16];
                assert_eq!(bytes[..4], 0x5800_0050u32.to_le_bytes(), "ldr x16, #8");
                assert_eq!(bytes[4..8], 0xd61f_0200u32.to_le_bytes(), "br x16");
                (u64::from_le_bytes(bytes[8..16].try_into().unwrap()), true)
            }
            _ => (landing, false),
        }
    }

    fn publish(self) -> Module<'static> {
        self.finalized.publish().unwrap()
    }
}

/// The address an ADRP at `offset` computes, decoded from immlo/immhi.
fn adrp_page(word: u32, place: u64) -> u64 {
    let immlo = u64::from((word >> 29) & 3);
    let immhi = u64::from((word >> 5) & 0x7_ffff);
    let pages = (((immhi << 2 | immlo) << 43) as i64) >> 43;
    (place & !0xfff).wrapping_add_signed(pages << 12)
}

fn relocation_problem(error: &LoadError) -> (RelocationProblem, String, Option<String>) {
    match &error.kind {
        ErrorKind::Relocation(failure) => (
            failure.problem,
            failure.r_type.to_string(),
            Some(failure.symbol.to_string()),
        ),
        other => panic!("expected a relocation error, got {other:?}"),
    }
}

const MIB: i64 = 1 << 20;

const CALLS: &str = "
    .text
    .globl entry
entry:
    bl far_function
    bl near_function
    b far_function
    bl far_function + 16
    bl local
    ret
local:
    ret
";

#[test]
fn far_calls_go_through_veneers_and_near_ones_do_not() {
    let env = Env::new(&[("far_function", 1024 * MIB), ("near_function", 64 * MIB)]);
    let before = env.region.usage();
    let linked = env.link("calls", &assemble("calls", CALLS), None).unwrap();
    // One veneer per distinct external target (symbol + addend): far, near and
    // far+16. The local call needs none.
    assert_eq!(linked.plan.stub_slots(), 3);
    assert_eq!(linked.plan.kind(SectionKind::Stubs).size, 3 * 16);
    let far = env.export("far_function");
    let near = env.export("near_function");
    assert_eq!(linked.branch_destination(0), (far, true));
    assert_eq!(linked.branch_destination(4), (near, false));
    assert_eq!(
        linked.branch_destination(8),
        (far, true),
        "B shares BL's veneer"
    );
    assert_eq!(linked.branch_destination(12), (far + 16, true));
    let local = linked.piece(".text").target.as_u64() + 24;
    assert_eq!(linked.branch_destination(16), (local, false));
    // Two veneers were needed; the near target's stays unused but reserved.
    assert_eq!(linked.finalized.report().stubs_used, 2);
    assert!(linked.finalized.report().stubs_used <= linked.plan.stub_slots());
    drop(linked);
    assert_eq!(
        env.region.usage(),
        before,
        "dropping a stage frees its memory"
    );
}

#[test]
fn veneer_use_depends_on_the_target_address() {
    let env = Env::new(&[("far_function", 1024 * MIB), ("near_function", 64 * MIB)]);
    let bytes = assemble("calls_mapped", CALLS);
    // Linked to run right next to far_function, every call is direct: the
    // plan is the same, and the veneers stay unused.
    let far = env.export("far_function");
    let linked = env.link("calls", &bytes, Some(far + (1 << 20))).unwrap();
    assert_eq!(linked.plan.stub_slots(), 3);
    assert_eq!(
        linked.finalized.report().stubs_used,
        1,
        "only near_function is out of reach now"
    );
    assert_eq!(linked.branch_destination(0), (far, false));
    assert_eq!(linked.branch_destination(12), (far + 16, false));
    let near = env.export("near_function");
    assert_eq!(linked.branch_destination(4), (near, true));
}

#[test]
fn got_loads_reach_a_slot_holding_the_address() {
    let env = Env::new(&[("shared_data", 3000 * MIB)]);
    let source = "
        .text
        .globl entry
    entry:
        adrp x0, :got:shared_data
        ldr x0, [x0, :got_lo12:shared_data]
        adrp x1, :got:shared_data
        ldr x1, [x1, :got_lo12:shared_data]
        ldr x2, [x2, #:gotpage_lo15:shared_data]
        ret
    ";
    let linked = env.link("got", &assemble("got", source), None).unwrap();
    assert_eq!(linked.plan.got_slots(), 1, "one slot per symbol");
    let (adrp, place) = linked.word(".text", 0);
    let (ldr, _) = linked.word(".text", 4);
    let low12 = u64::from((ldr >> 10) & 0xfff) * 8;
    let slot = adrp_page(adrp, place) + low12;
    let got = linked.piece(".got");
    assert_eq!(slot, got.target.as_u64(), "the only slot");
    assert_eq!(linked.quad_at(slot), env.export("shared_data"));
    // gotpage_lo15 is relative to the GOT's page.
    let (lo15, _) = linked.word(".text", 16);
    let from_page = u64::from((lo15 >> 10) & 0xfff) * 8;
    assert_eq!((got.target.as_u64() & !0xfff) + from_page, slot);
}

#[test]
fn modules_link_against_earlier_ones_at_their_target_addresses() {
    let env = Env::new(&[("kernel_print", 8 * MIB)]);
    let provider = "
        .text
        .globl provide
    provide:
        b kernel_print
        .data
        .globl counter
        .p2align 3
    counter:
        .quad 7
    ";
    let user = "
        .text
        .globl entry
    entry:
        bl provide
        adrp x0, counter
        add x0, x0, :lo12:counter
        ldr x1, [x0, :lo12:counter]
        ret
        .data
        .p2align 3
    pointers:
        .quad provide
        .quad counter + 8
        .word counter - .
    ";
    // Linked for addresses far from where the bytes are: the kernel would copy them.
    let base = 0x4000_0000;
    let first = env
        .link("provider", &assemble("provider", provider), Some(base))
        .unwrap();
    let provide = first.piece(".text").target.as_u64();
    assert_eq!(provide, base);
    assert_eq!(first.branch_destination(0).0, env.export("kernel_print"));
    let counter = first.piece(".data").target.as_u64();
    let provider = first.publish();
    assert_eq!(provider.symbol("provide").unwrap().as_u64(), provide);

    let second = env
        .link("user", &assemble("user", user), Some(base + (1 << 20)))
        .unwrap();
    assert_eq!(second.branch_destination(0), (provide, false));
    let (adrp, place) = second.word(".text", 4);
    assert_eq!(adrp_page(adrp, place), counter & !0xfff);
    let (add, _) = second.word(".text", 8);
    assert_eq!(u64::from((add >> 10) & 0xfff), counter & 0xfff);
    let data = second.piece(".data").target.as_u64();
    assert_eq!(second.quad_at(data), provide);
    assert_eq!(second.quad_at(data + 8), counter + 8);
    let prel = second.quad_at(data + 16) as u32 as i32;
    assert_eq!(i64::from(prel), counter as i64 - (data + 16) as i64);
    // The user binds to the provider, so the provider cannot go first.
    let user = second.publish();
    let refused = provider.unload().unwrap_err();
    user.unload().unwrap();
    refused.module.unload().unwrap();
}

#[test]
fn out_of_reach_references_are_typed_errors_that_change_nothing() {
    let env = Env::new(&[
        ("far_function", 1024 * MIB),
        ("near_function", 64 * MIB),
        ("odd_data", 4 * MIB + 4),
    ]);
    let good = env
        .link("good", &assemble("good", CALLS), None)
        .unwrap()
        .publish();
    let usage = env.region.usage();
    let modules = env.namespace.modules();

    let conditional = "
        .text
    entry:
        b.eq far_function
        ret
    ";
    let error = env
        .link("cond", &assemble("cond", conditional), None)
        .err()
        .expect("a conditional branch cannot reach 1 GiB and has no veneer");
    assert_eq!(error.module.as_ref(), "cond");
    let (problem, r_type, symbol) = relocation_problem(&error);
    assert!(
        matches!(problem, RelocationProblem::Overflow { .. }),
        "{problem:?}"
    );
    assert_eq!(r_type, "R_AARCH64_CONDBR19");
    assert_eq!(symbol.as_deref(), Some("far_function"));

    let misaligned = "
        .text
    entry:
        adrp x0, odd_data
        ldr x1, [x0, :lo12:odd_data]
        ret
    ";
    let error = env
        .link("odd", &assemble("odd", misaligned), None)
        .err()
        .expect("an 8-byte load of a 4-aligned address breaks LDST64's rule");
    let (problem, r_type, _) = relocation_problem(&error);
    assert!(
        matches!(problem, RelocationProblem::Misaligned { .. }),
        "{problem:?}"
    );
    assert_eq!(r_type, "R_AARCH64_LDST64_ABS_LO12_NC");

    assert_eq!(
        env.region.usage(),
        usage,
        "failed loads leave no memory behind"
    );
    assert_eq!(env.namespace.modules(), modules, "and no symbols");
    assert!(
        good.symbol("entry").is_some(),
        "the earlier module is untouched"
    );
}

#[test]
fn plans_count_aarch64_relocations_by_type() {
    let env = Env::new(&[("far_function", 1024 * MIB), ("near_function", 64 * MIB)]);
    let object = assemble("counts", CALLS);
    let planned = env
        .loader()
        .plan(Object::parse("counts", &object).unwrap())
        .unwrap();
    let counts: Vec<(String, u64)> = planned
        .plan()
        .relocation_counts()
        .iter()
        .map(|(r_type, count)| (r_type.to_string(), *count))
        .collect();
    assert_eq!(
        counts,
        [
            ("R_AARCH64_JUMP26".to_owned(), 1),
            // The assembler resolves `bl local` itself: same section.
            ("R_AARCH64_CALL26".to_owned(), 3)
        ]
    );
    let machine = planned.plan().relocation_counts()[0].0.machine;
    assert_eq!(
        RelocationType { machine, raw: 283 }.name(),
        Some("R_AARCH64_CALL26")
    );
}

#[test]
fn absent_weak_symbols_follow_aaelf64() {
    // Nothing defines `maybe`: a branch to it falls through to the next
    // instruction, and a PC-relative reference resolves to the place (S = P),
    // while an absolute one reads 0.
    let env = Env::new(&[]);
    let source = "
        .weak maybe
        .text
        .globl entry
    entry:
        bl maybe
        cbz x0, maybe
        adr x1, maybe
        adrp x2, maybe
        ret
        .data
        .p2align 3
    words:
        .quad maybe
        .word maybe - .
    ";
    let linked = env.link("weak", &assemble("weak", source), None).unwrap();
    let text = linked.piece(".text").target.as_u64();
    assert_eq!(
        linked.branch_destination(0),
        (text + 4, false),
        "bl falls through"
    );
    let (cbz, place) = linked.word(".text", 4);
    let imm19 = i64::from(((cbz >> 5) & 0x7_ffff) << 13) as i32 >> 13;
    assert_eq!(place.wrapping_add_signed(i64::from(imm19) * 4), place + 4);
    let (adr, place) = linked.word(".text", 8);
    let low = (adr >> 29) & 3;
    let high = (adr >> 5) & 0x7_ffff;
    assert_eq!((high << 2) | low, 0, "adr x1, . ({place:#x})");
    let (adrp, place) = linked.word(".text", 12);
    assert_eq!(adrp_page(adrp, place), place & !0xfff);
    let data = linked.piece(".data").target.as_u64();
    assert_eq!(linked.quad_at(data), 0, "an absolute reference is 0");
    assert_eq!(linked.quad_at(data + 8) as u32, 0, "maybe - . with S = P");
    assert_eq!(linked.finalized.report().stubs_used, 0);
}
