//! `modload link`: objects linked for target addresses, written as images
//! plus `layout.json`. The objects are assembled from the sources below at
//! test time, so every expected address follows from the source and the
//! command line.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use modload_tests::oracle::{InputObject, Layout};

const MODLOAD: &str = env!("CARGO_BIN_EXE_modload");

mod common;

use common::{workdir as new_workdir, WorkDir};

fn workdir(test: &str) -> WorkDir {
    new_workdir("link", test)
}

/// Assembles `source` to `dir/name.o`: x86-64 with gcc's `as`, AArch64 with
/// llvm-mc-22.
fn assemble(dir: &Path, name: &str, source: &str, aarch64: bool) -> PathBuf {
    let input = dir.join(format!("{name}.s"));
    let object = dir.join(format!("{name}.o"));
    std::fs::write(&input, source).expect("write the source");
    let output = if aarch64 {
        Command::new("llvm-mc-22")
            .args(["-triple=aarch64", "-filetype=obj"])
            .arg(&input)
            .arg("-o")
            .arg(&object)
            .output()
    } else {
        Command::new("gcc")
            .arg("-c")
            .arg(&input)
            .arg("-o")
            .arg(&object)
            .output()
    }
    .expect("the assembler must be installed to run these tests");
    assert!(
        output.status.success(),
        "assembling {name}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    object
}

fn modload(args: &[&str]) -> Output {
    Command::new(MODLOAD)
        .args(args)
        .output()
        .expect("run the modload binary")
}

fn path(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// Runs `modload link`, expecting success, and reads the layout.
fn link(objects: &[&Path], at: &str, out: &Path, symbols: &[&str]) -> Layout {
    let mut args = vec!["link"];
    args.extend(objects.iter().map(|object| path(object)));
    args.extend(["--at", at, "-o", path(out)]);
    for symbol in symbols {
        args.extend(["--sym", symbol]);
    }
    let output = modload(&args);
    assert!(
        output.status.success(),
        "modload {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.stderr.is_empty(),
        "a successful link prints nothing on stderr"
    );
    Layout::read(out)
}

/// Checks the error contract (status, exactly one line on stderr, no panic)
/// and returns the line.
fn one_line_error(output: &Output, status: i32) -> String {
    let text = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(status), "stderr: {text}");
    assert_eq!(text.lines().count(), 1, "one line expected, got: {text}");
    assert!(text.starts_with("modload: "), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    text
}

fn u64_at(image: &[u8], offset: u64) -> u64 {
    let at = offset as usize;
    u64::from_le_bytes(image[at..at + 8].try_into().unwrap())
}

fn i32_at(image: &[u8], offset: u64) -> i32 {
    let at = offset as usize;
    i32::from_le_bytes(image[at..at + 4].try_into().unwrap())
}

/// Module A: code, data with a known offset, and a 64 KiB-aligned section, so
/// the module after it must start on a 64 KiB boundary.
const MODULE_A: &str = "
    .text
    .globl a_fn
    .type a_fn, @function
a_fn:
    movl $7, %eax
    ret
    .data
    .quad 0
    .globl a_value
a_value:
    .quad 0x1111
    .section .data.big_align, \"aw\"
    .balign 0x10000
    .globl a_aligned
a_aligned:
    .quad 1
    .section .note.GNU-stack, \"\", @progbits
";

/// Module B: refers to module A (call, PC-relative load, absolute pointer)
/// and to a host symbol.
const MODULE_B: &str = "
    .text
    .globl b_fn
    .type b_fn, @function
b_fn:
    call a_fn
    movq a_value(%rip), %rax
    ret
    .data
    .globl b_pointers
b_pointers:
    .quad a_value
    .quad host_thing
    .quad a_aligned + 8
    .section .note.GNU-stack, \"\", @progbits
";

fn align_up(value: u64, align: u64) -> u64 {
    value.div_ceil(align) * align
}

#[test]
fn modules_follow_each_other_at_their_alignment() {
    let dir = workdir("layout");
    let a = assemble(&dir, "a", MODULE_A, false);
    let b = assemble(&dir, "b", MODULE_B, false);
    let out = dir.join("out");
    let layout = link(
        &[&a, &b],
        "0x40000000",
        &out,
        &["host_thing=0x123456789abcdef0"],
    );

    assert_eq!(layout.machine, "x86_64");
    assert_eq!(layout.at, 0x4000_0000);
    assert_eq!(layout.modules.len(), 2);
    let (first, second) = (&layout.modules[0], &layout.modules[1]);
    assert_eq!(first.base, 0x4000_0000, "module 0 goes exactly at --at");
    assert_eq!(first.alignment, 0x10000, "from `.balign 0x10000`");
    assert_eq!(
        second.base,
        align_up(first.base + first.size, second.alignment),
        "module 1 starts at the first aligned address after module 0"
    );
    assert_eq!((first.name.as_str(), second.name.as_str()), ("a", "b"));
    assert_eq!(
        (first.file.as_str(), second.file.as_str()),
        ("0-a.bin", "1-b.bin")
    );
    assert_eq!(first.input, path(&a));
    for module in &layout.modules {
        let image = std::fs::read(out.join(&module.file)).unwrap();
        assert_eq!(
            image.len() as u64,
            module.size,
            "the image is the whole reservation"
        );
        assert_eq!(module.size % 4096, 0);
    }
    // Every area sits in its module, at its offset from the module's base.
    for area in &layout.areas {
        let module = &layout.modules[area.module];
        assert_eq!(area.address, module.base + area.offset, "{area:?}");
        assert!(area.offset + area.size <= module.size, "{area:?}");
    }
    // Sections by name and kind, with the input section indices.
    let object = InputObject::parse("a.o", &std::fs::read(&a).unwrap());
    for (name, kind) in [
        (".text", "text"),
        (".data", "data"),
        (".data.big_align", "data"),
    ] {
        let index = object.sections.iter().position(|s| s.name == name).unwrap();
        let area = layout
            .section_area(0, index)
            .unwrap_or_else(|| panic!("{name} not placed"));
        assert_eq!((area.name.as_str(), area.kind.as_str()), (name, kind));
    }
    let aligned = object
        .sections
        .iter()
        .position(|s| s.name == ".data.big_align")
        .unwrap();
    assert_eq!(
        layout.section_area(0, aligned).unwrap().address % 0x10000,
        0
    );
    // Module B's call to an earlier module needs no stub: it is in reach.
    assert_eq!(second.stubs_used, 0);
}

#[test]
fn references_between_modules_and_to_the_host_are_patched() {
    let dir = workdir("references");
    let a = assemble(&dir, "a", MODULE_A, false);
    let b = assemble(&dir, "b", MODULE_B, false);
    let out = dir.join("out");
    let layout = link(
        &[&a, &b],
        "0xffffffff80000000",
        &out,
        &["host_thing=0x123456789abcdef0", "unused=0x10"],
    );
    let object_a = InputObject::parse("a.o", &std::fs::read(&a).unwrap());
    let section = |object: &InputObject, name: &str| {
        object.sections.iter().position(|s| s.name == name).unwrap()
    };
    // From the source: a_fn is at .text+0, a_value at .data+8, a_aligned at
    // .data.big_align+0.
    let a_text = layout.section_area(0, section(&object_a, ".text")).unwrap();
    let a_data = layout.section_area(0, section(&object_a, ".data")).unwrap();
    let a_big = layout
        .section_area(0, section(&object_a, ".data.big_align"))
        .unwrap();
    let a_fn = a_text.address;
    let a_value = a_data.address + 8;
    assert_eq!(layout.symbols["a_fn"], a_fn);
    assert_eq!(layout.symbols["a_value"], a_value);
    assert_eq!(layout.symbols["a_aligned"], a_big.address);
    assert!(layout.symbols.contains_key("b_fn"));
    assert!(
        !layout.symbols.contains_key("host_thing"),
        "symbols lists what modules export"
    );

    let object_b = InputObject::parse("b.o", &std::fs::read(&b).unwrap());
    let b_text = layout.section_area(1, section(&object_b, ".text")).unwrap();
    let b_data = layout.section_area(1, section(&object_b, ".data")).unwrap();
    let image = std::fs::read(out.join(&layout.modules[1].file)).unwrap();
    let base = layout.modules[1].base;
    // .quad a_value; .quad host_thing; .quad a_aligned + 8
    assert_eq!(u64_at(&image, b_data.address - base), a_value);
    assert_eq!(
        u64_at(&image, b_data.address - base + 8),
        0x1234_5678_9abc_def0
    );
    assert_eq!(
        u64_at(&image, b_data.address - base + 16),
        a_big.address + 8
    );
    // call a_fn: e8 <rel32> at .text+0, relative to the next instruction.
    let call = b_text.address - base;
    assert_eq!(image[call as usize], 0xe8);
    let target = (b_text.address + 5).wrapping_add_signed(i32_at(&image, call + 1).into());
    assert_eq!(target, a_fn);
    // movq a_value(%rip), %rax: 48 8b 05 <rel32> at .text+5.
    assert_eq!(
        image[call as usize + 5..call as usize + 8],
        [0x48, 0x8b, 0x05]
    );
    let load = (b_text.address + 12).wrapping_add_signed(i32_at(&image, call + 8).into());
    assert_eq!(load, a_value);
}

#[test]
fn aarch64_objects_link_on_this_host() {
    let dir = workdir("aarch64");
    let source = "
    .text
    .globl arm_fn
    .type arm_fn, %function
arm_fn:
    bl far_away
    adrp x0, :got:far_away
    ldr x0, [x0, :got_lo12:far_away]
    ret
    .section .note.GNU-stack, \"\", %progbits
";
    let object = assemble(&dir, "arm", source, true);
    let out = dir.join("out");
    // 4 GiB from the module: out of a BL's ±128 MiB, so the call needs a veneer.
    let far = 0x1_4000_0000u64;
    let layout = link(
        &[&object],
        "0x40000000",
        &out,
        &[&format!("far_away={far:#x}")],
    );
    assert_eq!(layout.machine, "aarch64");
    let module = &layout.modules[0];
    assert_eq!(
        (module.got_slots, module.stub_slots, module.stubs_used),
        (1, 1, 1)
    );
    let image = std::fs::read(out.join(&module.file)).unwrap();
    let text = layout
        .areas
        .iter()
        .find(|area| area.name == ".text")
        .unwrap();
    let veneers = layout.loader_area(0, "stubs").expect("a veneer area");
    let got = layout.loader_area(0, "got").expect("a GOT");
    let word = |address: u64| {
        let at = (address - module.base) as usize;
        u32::from_le_bytes(image[at..at + 4].try_into().unwrap())
    };
    // bl: imm26 words from the branch itself.
    let bl = word(text.address);
    assert_eq!(bl >> 26, 0b100101, "still a BL");
    let offset = (((bl & 0x03ff_ffff) << 6) as i32 >> 6) as i64 * 4;
    let veneer = text.address.wrapping_add_signed(offset);
    assert_eq!(veneer, veneers.address);
    // ldr x16, #8; br x16; .quad far_away
    assert_eq!((word(veneer), word(veneer + 4)), (0x5800_0050, 0xd61f_0200));
    assert_eq!(u64_at(&image, veneer + 8 - module.base), far);
    // adrp + ldr reach the GOT slot, which holds far_away.
    let adrp = word(text.address + 4);
    let pages = ((((adrp >> 5) & 0x7_ffff) << 2 | ((adrp >> 29) & 3)) << 11) as i32 >> 11;
    let page = (text.address & !0xfff).wrapping_add_signed(i64::from(pages) << 12);
    let ldr = word(text.address + 8);
    let slot = page + u64::from((ldr >> 10) & 0xfff) * 8;
    assert_eq!(slot, got.address);
    assert_eq!(u64_at(&image, slot - module.base), far);
}

#[test]
fn the_output_directory_is_created() {
    let dir = workdir("mkdir");
    let a = assemble(&dir, "a", MODULE_A, false);
    let out = dir.join("new").join("nested");
    let layout = link(&[&a], "4194304", &out, &[]);
    assert_eq!(layout.at, 0x40_0000, "decimal addresses are accepted");
    assert!(out.join("0-a.bin").exists());
}

#[test]
fn bad_addresses_and_symbols_are_usage_errors() {
    let dir = workdir("usage");
    let a = assemble(&dir, "a", MODULE_A, false);
    let out = dir.join("out");
    let (a, out) = (path(&a), path(&out));
    for (args, needle) in [
        (vec!["link", a, "--at", "0xzz", "-o", out], "--at"),
        (vec!["link", a, "--at", "-5", "-o", out], "--at"),
        (
            vec!["link", a, "--at", "0x10000000000000000", "-o", out],
            "--at",
        ),
        (vec!["link", a, "-o", out], "--at"),
        (vec!["link", a, "--at", "0x40000000"], "-o"),
        (vec!["link", "--at", "0x40000000", "-o", out], "object"),
        (
            vec!["link", a, "--at", "0x40000000", "-o", out, "--sym", "thing"],
            "--sym",
        ),
        (
            vec!["link", a, "--at", "0x40000000", "-o", out, "--sym", "=0x10"],
            "--sym",
        ),
        (
            vec![
                "link",
                a,
                "--at",
                "0x40000000",
                "-o",
                out,
                "--sym",
                "thing=x",
            ],
            "--sym",
        ),
        (
            vec!["link", a, "--at", "0x40000000", "-o", out, "--sym"],
            "--sym",
        ),
        (
            vec![
                "link",
                a,
                "--at",
                "0x40000000",
                "-o",
                out,
                "--sym",
                "t=1",
                "--sym",
                "t=2",
            ],
            "twice",
        ),
        (
            vec!["link", a, "--at", "0x40000000", "-o", out, "--frob"],
            "--frob",
        ),
    ] {
        let line = one_line_error(&modload(&args), 2);
        assert!(line.contains(needle), "{args:?}: {line}");
    }
    // A syntactically fine address the module cannot start at.
    let line = one_line_error(&modload(&["link", a, "--at", "0x40001000", "-o", out]), 1);
    assert!(
        line.contains("0x40001000") && line.contains("alignment"),
        "{line}"
    );
}

#[test]
fn unresolved_symbols_are_named_with_their_file() {
    let dir = workdir("unresolved");
    let b = assemble(&dir, "b", MODULE_B, false);
    let out = dir.join("out");
    // Without module A and the host symbol, b.o has three imports missing.
    let line = one_line_error(
        &modload(&["link", path(&b), "--at", "0x40000000", "-o", path(&out)]),
        1,
    );
    assert!(line.contains(path(&b)), "{line}");
    for name in ["a_fn", "a_value", "host_thing"] {
        assert!(line.contains(name), "{name} missing from: {line}");
    }
    assert!(
        !out.join("layout.json").exists(),
        "no layout for a failed link"
    );
}

#[test]
fn objects_of_two_machines_do_not_mix() {
    let dir = workdir("machines");
    let a = assemble(&dir, "a", MODULE_A, false);
    let arm = assemble(&dir, "arm", "    .text\n    ret\n", true);
    let out = dir.join("out");
    let line = one_line_error(
        &modload(&[
            "link",
            path(&a),
            path(&arm),
            "--at",
            "0x40000000",
            "-o",
            path(&out),
        ]),
        1,
    );
    assert!(
        line.contains(path(&arm)) && line.contains("aarch64"),
        "{line}"
    );
}

#[test]
fn out_of_range_values_are_refused_like_a_linker() {
    let dir = workdir("range");
    let source = "
    .text
    .globl abs32
abs32:
    movl $limit, %eax
    ret
    .section .note.GNU-stack, \"\", @progbits
";
    let object = assemble(&dir, "abs32", source, false);
    let out = dir.join("out");
    // R_X86_64_32 holds up to 0xffffffff.
    link(&[&object], "0x40000000", &out, &["limit=0xffffffff"]);
    let line = one_line_error(
        &modload(&[
            "link",
            path(&object),
            "--at",
            "0x40000000",
            "-o",
            path(&out),
            "--sym",
            "limit=0x100000000",
        ]),
        1,
    );
    assert!(
        line.contains(path(&object)) && line.contains("R_X86_64_32"),
        "{line}"
    );
}

/// C calls D, which comes after it: C links with the call pending, through
/// its stub and GOT slot, and D's arrival binds the slot in C's image.
#[test]
fn a_call_to_a_later_object_is_bound_in_the_earlier_image() {
    const CALLER: &str = "
    .text
    .globl c_fn
c_fn:
    call d_fn@PLT
    ret
    .section .note.GNU-stack, \"\", @progbits
";
    const DEFINER: &str = "
    .text
    .globl d_fn
d_fn:
    movl $9, %eax
    ret
    .section .note.GNU-stack, \"\", @progbits
";
    let dir = workdir("late");
    let c = assemble(&dir, "c", CALLER, false);
    let d = assemble(&dir, "d", DEFINER, false);
    let out = dir.join("out");
    let layout = link(&[&c, &d], "0x40000000", &out, &[]);
    let d_fn = layout.symbols["d_fn"];
    let image = layout.image(0);
    let base = layout.modules[0].base;
    let object_c = InputObject::parse("c.o", &std::fs::read(&c).unwrap());
    let text_index = object_c
        .sections
        .iter()
        .position(|s| s.name == ".text")
        .unwrap();
    let text = layout.section_area(0, text_index).unwrap();
    // call <rel32> lands on C's stub...
    let call = text.address - base;
    assert_eq!(image[call as usize], 0xe8);
    let stub = (text.address + 5).wrapping_add_signed(i32_at(&image, call + 1).into());
    let stubs = layout.loader_area(0, "stubs").unwrap();
    assert!(stubs.contains(stub, 6), "the call goes through C's stub");
    // ...which is `jmp *slot(%rip)`, and the slot now holds d_fn.
    assert_eq!(image[(stub - base) as usize..][..2], [0xff, 0x25]);
    let slot = (stub + 6).wrapping_add_signed(i32_at(&image, stub - base + 2).into());
    let got = layout.loader_area(0, "got").unwrap();
    assert!(got.contains(slot, 8), "the stub reads C's GOT");
    assert_eq!(u64_at(&image, slot - base), d_fn);

    // In the other order D is there first: the call is bound at once.
    let out = dir.join("out-reverse");
    let layout = link(&[&d, &c], "0x40000000", &out, &[]);
    assert!(layout.symbols.contains_key("c_fn"));
}

/// Without D, C's pending call is never bound: the link fails, naming it.
#[test]
fn a_call_nothing_defines_fails_the_link() {
    let dir = workdir("late-missing");
    let c = assemble(
        &dir,
        "c",
        "    .text\n    .globl c_fn\nc_fn:\n    call d_fn@PLT\n    ret\n",
        false,
    );
    let out = dir.join("out");
    let line = one_line_error(
        &modload(&["link", path(&c), "--at", "0x40000000", "-o", path(&out)]),
        1,
    );
    assert!(line.contains("d_fn") && line.contains(path(&c)), "{line}");
}

/// The permission class of an area's kind: areas of different classes must
/// not share a page, which the target protects as a whole.
fn segment_of(kind: &str) -> &'static str {
    match kind {
        "text" | "stubs" => "code",
        "rodata" | "got" => "readonly",
        "data" | "bss" => "writable",
        other => panic!("unknown area kind {other}"),
    }
}

#[test]
fn the_layout_follows_the_targets_page_size() {
    let dir = workdir("page-size");
    let a = assemble(&dir, "a", MODULE_A, false);
    let b = assemble(&dir, "b", MODULE_B, false);
    for page in [4096u64, 16384, 65536] {
        let out = dir.join(format!("out-{page}"));
        let page_text = page.to_string();
        let output = modload(&[
            "link",
            path(&a),
            path(&b),
            "--at",
            "0x40000000",
            "-o",
            path(&out),
            "--sym",
            "host_thing=0x1000",
            "--page-size",
            &page_text,
        ]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let layout = Layout::read(&out);
        let (first, second) = (&layout.modules[0], &layout.modules[1]);
        // B has nothing aligned beyond a page, so its alignment is the page.
        assert_eq!(second.alignment, page, "{page}");
        assert_eq!(second.base % page, 0, "{page}");
        for module in &layout.modules {
            assert_eq!(module.size % page, 0, "{page}: {module:?}");
        }
        for (index, area) in layout.areas.iter().enumerate() {
            for other in &layout.areas[index + 1..] {
                let pages = |offset: u64, size: u64| (offset / page, (offset + size - 1) / page);
                let (first_page, last_page) = pages(area.offset, area.size);
                let (other_first, other_last) = pages(other.offset, other.size);
                let shares_a_page = area.module == other.module
                    && area.size > 0
                    && other.size > 0
                    && first_page <= other_last
                    && other_first <= last_page;
                if segment_of(&area.kind) != segment_of(&other.kind) {
                    assert!(
                        !shares_a_page,
                        "{page}: {area:?} and {other:?} share a page"
                    );
                }
            }
        }
        assert_eq!(
            second.base,
            align_up(first.base + first.size, page.max(second.alignment)),
            "{page}"
        );
    }
    let output = modload(&[
        "link",
        path(&a),
        "--at",
        "0x40000000",
        "-o",
        "x",
        "--page-size",
        "8192",
    ]);
    let message = one_line_error(&output, 2);
    assert!(message.contains("--page-size `8192`"), "{message}");
}
