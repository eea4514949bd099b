//! End-to-end tests of the `modload` binary: C objects are compiled with gcc at
//! test time, then loaded and run (or planned) through the command line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const MODLOAD: &str = env!("CARGO_BIN_EXE_modload");

mod common;

use common::{workdir as new_workdir, WorkDir};

fn workdir(test: &str) -> WorkDir {
    new_workdir("cli", test)
}

/// Compiles `source` to `dir/name.o` with gcc and `flags`.
fn compile(dir: &Path, name: &str, source: &str, flags: &[&str]) -> PathBuf {
    let c = dir.join(format!("{name}.c"));
    std::fs::write(&c, source).expect("write the C source");
    let flags: Vec<&str> = ["-O1", "-fno-asynchronous-unwind-tables"]
        .into_iter()
        .chain(flags.iter().copied())
        .collect();
    common::gcc(&c, dir.join(format!("{name}.o")), &flags)
}

fn modload(args: &[&str]) -> Output {
    Command::new(MODLOAD)
        .args(args)
        .output()
        .expect("run the modload binary")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn path(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// Checks the error contract: non-zero status, exactly one line on stderr
/// (returned), and no panic.
fn one_line_error(output: &Output) -> String {
    let text = stderr(output);
    assert!(!output.status.success(), "expected failure, stderr: {text}");
    assert_eq!(output.status.code(), Some(1), "stderr: {text}");
    assert!(!text.contains("panicked"), "panic: {text}");
    assert_eq!(text.matches('\n').count(), 1, "not one line: {text:?}");
    assert!(text.starts_with("modload: "), "{text}");
    text
}

const LIB_A: &str = r#"
int scale(int x) { return x * 3; }
"#;

const MAIN_B: &str = r#"
#include <stdio.h>
int scale(int);
int main(int argc, char **argv) {
    printf("argc=%d argv0=%s\n", argc, argv[0]);
    for (int i = 1; i < argc; i++)
        printf("argv[%d]=%s\n", i, argv[i]);
    printf("scale=%d\n", scale(argc));
    return argv[argc] == 0 ? 7 : 99;
}
"#;

#[test]
fn runs_two_objects_with_arguments() {
    let dir = workdir("two");
    let a = compile(&dir, "a", LIB_A, &[]);
    let b = compile(&dir, "b", MAIN_B, &[]);
    let output = modload(&["run", path(&a), path(&b), "--", "one", "two words"]);
    assert_eq!(
        stdout(&output),
        format!(
            "argc=3 argv0={}\nargv[1]=one\nargv[2]=two words\nscale=9\n",
            path(&a)
        )
    );
    assert_eq!(stderr(&output), "");
    assert_eq!(output.status.code(), Some(7));
}

#[test]
fn loads_objects_after_the_objects_they_need() {
    let dir = workdir("reorder");
    let a = compile(&dir, "a", LIB_A, &[]);
    let b = compile(&dir, "b", MAIN_B, &[]);
    // b.o needs a.o's `scale`, so it waits for a.o; argv[0] is still b.o.
    let output = modload(&["run", path(&b), path(&a)]);
    assert_eq!(
        stdout(&output),
        format!("argc=1 argv0={}\nscale=3\n", path(&b)),
        "{}",
        stderr(&output)
    );
    assert_eq!(output.status.code(), Some(7));
}

/// Two objects whose functions call each other: the first loads with its call
/// to `y` pending, the second binds it, in either order.
#[test]
fn objects_that_call_each_other_run_in_either_order() {
    let dir = workdir("cycle");
    let x = compile(
        &dir,
        "x",
        "int y(void); int x(void) { return 1; } int main(void) { return y(); }",
        &[],
    );
    let y = compile(
        &dir,
        "y",
        "int x(void); int y(void) { return x() + 1; }",
        &[],
    );
    for order in [[path(&x), path(&y)], [path(&y), path(&x)]] {
        let output = modload(&["run", order[0], order[1]]);
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    }
}

/// Two objects whose data refer to each other in a cycle load as one module
/// set, and `-v` says so and why.
#[test]
fn a_data_cycle_loads_as_one_set() {
    let dir = workdir("data-cycle");
    let x = compile(
        &dir,
        "x",
        "extern int y_value; int x_value = 40; int main(void) { return y_value + 2 == 42 ? 0 : 1; }",
        &["-fno-pic"],
    );
    let y = compile(
        &dir,
        "y",
        "extern int x_value; int y_value = 0; __attribute__((constructor)) static void init(void) { y_value = x_value; }",
        &["-fno-pic"],
    );
    let output = modload(&["run", "-v", path(&x), path(&y)]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let said = stderr(&output);
    assert!(said.contains("as one module set"), "{said}");
    assert!(
        said.contains("y_value") && said.contains("x_value"),
        "{said}"
    );
}

#[test]
fn runs_another_entry_point_and_destructors() {
    let dir = workdir("entry");
    let object = compile(
        &dir,
        "start",
        r#"
#include <stdio.h>
__attribute__((constructor)) static void hello(void) { printf("constructor\n"); }
__attribute__((destructor)) static void bye(void) { printf("destructor\n"); }
int start(int argc, char **argv) { printf("start %d %s\n", argc, argv[1]); return 0; }
"#,
        &[],
    );
    let output = modload(&["run", "--entry", "start", path(&object), "--", "x"]);
    assert_eq!(stdout(&output), "constructor\nstart 2 x\ndestructor\n");
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn exit_runs_atexit_handlers_then_destructors() {
    let dir = workdir("exit");
    let object = compile(
        &dir,
        "exits",
        r#"
#include <stdio.h>
#include <stdlib.h>
static void handler(void) { printf("atexit handler\n"); }
__attribute__((destructor)) static void bye(void) { printf("destructor\n"); }
int main(void) { atexit(handler); printf("exiting\n"); exit(4); }
"#,
        &[],
    );
    let output = modload(&["run", path(&object)]);
    assert_eq!(
        stdout(&output),
        "exiting\natexit handler\ndestructor\n",
        "{}",
        stderr(&output)
    );
    assert_eq!(output.status.code(), Some(4));
}

const SQRT: &str = r#"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    double x = atof(argc > 1 ? argv[1] : "0");
    printf("%.2f\n", sqrt(x));
    return 0;
}
"#;

#[test]
fn resolves_from_libm() {
    let dir = workdir("libm");
    // -fno-builtin keeps gcc from folding or inlining sqrt: the call must bind.
    let object = compile(&dir, "sqrt", SQRT, &["-fno-builtin"]);
    let undefined = Command::new("nm")
        .args(["-u", path(&object)])
        .output()
        .expect("run nm");
    assert!(stdout(&undefined).contains("sqrt"));

    let with_flag = modload(&["run", path(&object), "-lm", "--", "2.25"]);
    assert_eq!(stdout(&with_flag), "1.50\n", "{}", stderr(&with_flag));
    assert_eq!(with_flag.status.code(), Some(0));

    let split_flag = modload(&["run", "-l", "m", path(&object), "--", "16"]);
    assert_eq!(stdout(&split_flag), "4.00\n", "{}", stderr(&split_flag));

    let by_default = modload(&["run", path(&object), "--", "6.25"]);
    assert_eq!(stdout(&by_default), "2.50\n", "{}", stderr(&by_default));
    assert_eq!(by_default.status.code(), Some(0));

    let by_path = modload(&["run", path(&object), "--lib", "libm.so.6", "--", "9"]);
    assert_eq!(stdout(&by_path), "3.00\n", "{}", stderr(&by_path));
}

#[test]
fn runs_non_pic_small_model_objects_low() {
    let dir = workdir("nopic");
    let object = compile(
        &dir,
        "low",
        r#"
#include <stdio.h>
static const char message[] = "hello from below 2 GiB";
int main(void) {
    puts(message);
    printf("low=%d\n", (unsigned long)message < 0x80000000ul);
    return 5;
}
"#,
        &["-fno-pic", "-mcmodel=small"],
    );
    let relocations = readelf_counts(&object, "R_X86_64_");
    assert!(
        relocations.contains_key("R_X86_64_32") || relocations.contains_key("R_X86_64_32S"),
        "expected 32-bit absolute relocations: {relocations:?}"
    );
    let output = modload(&["run", path(&object)]);
    assert_eq!(
        stdout(&output),
        "hello from below 2 GiB\nlow=1\n",
        "{}",
        stderr(&output)
    );
    assert_eq!(output.status.code(), Some(5));
}

const PLANNED: &str = r#"
#include <stdio.h>
extern int shared_counter;
int local_counter = 4;
static int zeroed[16];
int *pointer = &local_counter;
const char *names[] = { "a", "b" };
int helper(int x) { return x + shared_counter + zeroed[x & 15]; }
int planned(int x) {
    printf("%d %s\n", helper(x), names[x & 1]);
    return *pointer + helper(x);
}
"#;

#[test]
fn plan_prints_a_table() {
    let dir = workdir("plan-table");
    let object = compile(&dir, "planned", PLANNED, &["-fpic"]);
    let output = modload(&["plan", path(&object)]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    for label in ["text", "stubs", "readonly", "got", "data", "bss"] {
        assert!(
            text.lines().any(|line| line.starts_with(label)),
            "no {label} row:\n{text}"
        );
    }
    for row in ["code", "writable", "r-x", "rw-", "got slots", "stub slots"] {
        assert!(text.contains(row), "no {row}:\n{text}");
    }
    let readelf = readelf_counts(&object, "R_X86_64_");
    let total: u64 = readelf.values().sum();
    for (kind, count) in &readelf {
        let row = text
            .lines()
            .find(|line| line.split_whitespace().next() == Some(kind))
            .unwrap_or_else(|| panic!("no {kind} row:\n{text}"));
        assert!(row.ends_with(&format!(" {count}")), "{row} vs {count}");
    }
    assert!(text
        .lines()
        .any(|line| line.starts_with("total") && line.ends_with(&format!(" {total}"))));
}

#[test]
fn plan_json_matches_readelf() {
    let dir = workdir("plan-json");
    for (name, flags) in [("pic", &["-fpic"][..]), ("nopic", &["-fno-pic"][..])] {
        let object = compile(&dir, name, PLANNED, flags);
        let output = modload(&["plan", "--json", path(&object)]);
        assert!(output.status.success(), "{}", stderr(&output));
        let text = stdout(&output);
        let json = json::parse(&text).unwrap_or_else(|error| panic!("{error}: {text}"));

        assert_eq!(
            json.get("module").and_then(json::Value::str),
            Some(path(&object))
        );
        assert_eq!(
            json.get("machine").and_then(json::Value::str),
            Some("x86_64")
        );
        let size = json.get("size").and_then(json::Value::num).expect("size");
        // A whole number of pages.
        assert!(size >= 4096, "size {size}");
        assert!(size.is_multiple_of(4096), "size {size}");
        for kind in ["text", "stubs", "readonly", "got", "data", "bss"] {
            let extent = json.get("kinds").and_then(|kinds| kinds.get(kind));
            for field in ["offset", "size", "align"] {
                assert!(
                    extent
                        .and_then(|e| e.get(field))
                        .and_then(json::Value::num)
                        .is_some(),
                    "kinds.{kind}.{field} in {text}"
                );
            }
        }
        let code = json.get("segments").and_then(|s| s.get("code"));
        assert_eq!(
            code.and_then(|c| c.get("permissions"))
                .and_then(json::Value::str),
            Some("r-x")
        );
        assert!(json.get("got_slots").and_then(json::Value::num).is_some());
        assert!(json.get("stub_slots").and_then(json::Value::num).is_some());

        let Some(json::Value::Object(relocations)) = json.get("relocations") else {
            panic!("no relocations object in {text}");
        };
        let planned: BTreeMap<String, u64> = relocations
            .iter()
            .map(|(kind, count)| (kind.clone(), count.num().expect("a count")))
            .collect();
        let readelf = readelf_counts(&object, "R_X86_64_");
        assert_eq!(planned, readelf, "{name}");
        assert_eq!(
            json.get("relocation_total").and_then(json::Value::num),
            Some(readelf.values().sum::<u64>())
        );
    }
}

/// Relocations per type, as `readelf -r` lists them.
fn readelf_counts(object: &Path, prefix: &str) -> BTreeMap<String, u64> {
    let output = Command::new("readelf")
        .args(["-rW", path(object)])
        .output()
        .expect("run readelf");
    assert!(output.status.success());
    let mut counts = BTreeMap::new();
    for line in stdout(&output).lines() {
        if let Some(kind) = line
            .split_whitespace()
            .nth(2)
            .filter(|kind| kind.starts_with(prefix))
        {
            *counts.entry(kind.to_owned()).or_insert(0) += 1;
        }
    }
    counts
}

const AARCH64_MODULE: &str = "
extern int ext_one(int);
extern int ext_two(int);
extern int shared;
static const char table[] = \"abcdefgh\";
int counter = 3;
int entry(int x) { return ext_one(x) + ext_two(table[x & 7]) + ext_one(counter) + shared; }
";

/// AArch64 objects plan on this x86-64 host, with counts matching readelf and
/// one veneer per distinct external call target.
#[test]
fn plans_aarch64_objects() {
    let dir = workdir("plan-aarch64");
    let c = dir.join("a64.c");
    std::fs::write(&c, AARCH64_MODULE).unwrap();
    for (name, flags) in [("small", &["-fno-pic"][..]), ("pic", &["-fPIC"][..])] {
        let object = dir.join(format!("{name}.o"));
        let status = Command::new("clang-22")
            .args([
                "--target=aarch64-none-elf",
                "-c",
                "-O2",
                "-fno-asynchronous-unwind-tables",
            ])
            .args(flags)
            .arg(&c)
            .arg("-o")
            .arg(&object)
            .status()
            .expect("clang-22 must be installed (scripts/install-deps.sh cross)");
        assert!(status.success());
        let output = modload(&["plan", "--json", path(&object)]);
        assert!(output.status.success(), "{}", stderr(&output));
        let text = stdout(&output);
        let json = json::parse(&text).unwrap_or_else(|error| panic!("{error}: {text}"));
        assert_eq!(
            json.get("machine").and_then(json::Value::str),
            Some("aarch64")
        );
        let Some(json::Value::Object(relocations)) = json.get("relocations") else {
            panic!("no relocations object in {text}");
        };
        let planned: BTreeMap<String, u64> = relocations
            .iter()
            .map(|(kind, count)| (kind.clone(), count.num().expect("a count")))
            .collect();
        assert_eq!(planned, readelf_counts(&object, "R_AARCH64_"), "{name}");
        assert_eq!(
            json.get("stub_slots").and_then(json::Value::num),
            Some(2),
            "{name}: ext_one and ext_two"
        );
        let got = json.get("got_slots").and_then(json::Value::num);
        // PIC reaches the two global variables, `shared` and `counter`, through
        // the GOT (default visibility makes even `counter` preemptible).
        let expected_got = if name == "pic" { 2 } else { 0 };
        assert_eq!(got, Some(expected_got), "{name}: {text}");
    }
}

#[test]
fn usage_text() {
    for args in [&["--help"][..], &[]] {
        let output = modload(args);
        assert!(output.status.success());
        assert!(stdout(&output).contains("modload run OBJECT..."));
        assert!(stdout(&output).contains("modload plan OBJECT [--json]"));
    }
}

#[test]
fn missing_file() {
    let dir = workdir("missing");
    let missing = dir.join("nothing-here.o");
    let message = one_line_error(&modload(&["run", path(&missing)]));
    assert!(message.contains("nothing-here.o"), "{message}");
    let message = one_line_error(&modload(&["plan", path(&missing)]));
    assert!(message.contains("nothing-here.o"), "{message}");
}

#[test]
fn not_an_elf_file() {
    let dir = workdir("not-elf");
    let text = dir.join("text.o");
    std::fs::write(&text, "just some text\n").expect("write");
    let message = one_line_error(&modload(&["run", path(&text)]));
    assert!(
        message.contains("text.o") && message.contains("not an ELF"),
        "{message}"
    );
    let message = one_line_error(&modload(&["plan", "--json", path(&text)]));
    assert!(message.contains("not an ELF"), "{message}");
    assert_eq!(stdout(&modload(&["plan", path(&text)])), "");

    let truncated = dir.join("truncated.o");
    let object = compile(&dir, "whole", LIB_A, &[]);
    let bytes = std::fs::read(object).expect("read");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("write");
    one_line_error(&modload(&["run", path(&truncated)]));
}

#[test]
fn unresolved_symbol() {
    let dir = workdir("unresolved");
    // b.o without a.o: `scale` is defined nowhere.
    let b = compile(&dir, "b", MAIN_B, &[]);
    let output = modload(&["run", path(&b)]);
    let message = one_line_error(&output);
    assert!(
        message.contains("unresolved") && message.contains("scale"),
        "{message}"
    );
    assert_eq!(stdout(&output), "");
}

#[test]
fn missing_entry_symbol() {
    let dir = workdir("no-entry");
    let a = compile(&dir, "a", LIB_A, &[]);
    let message = one_line_error(&modload(&["run", path(&a)]));
    assert!(message.contains("`main`"), "{message}");
    let message = one_line_error(&modload(&["run", path(&a), "--entry", "begin"]));
    assert!(message.contains("`begin`"), "{message}");
}

#[test]
fn bad_library_and_options() {
    let dir = workdir("bad-options");
    let a = compile(&dir, "a", LIB_A, &[]);
    let message = one_line_error(&modload(&["run", path(&a), "-lno_such_library_here"]));
    assert!(message.contains("libno_such_library_here.so"), "{message}");
    let message = one_line_error(&modload(&["run", path(&a), "--lib", "/nonexistent/x.so"]));
    assert!(message.contains("/nonexistent/x.so"), "{message}");

    for args in [
        &["run", path(&a), "--region-size", "lots"][..],
        &["run", path(&a), "--region-size"],
        &["run", path(&a), "--frobnicate"],
        &["run"],
        &["plan"],
        &["plan", path(&a), path(&a)],
        &["explode"],
    ] {
        let output = modload(args);
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {text}");
        assert_eq!(text.matches('\n').count(), 1, "{args:?}: {text:?}");
        assert!(!text.contains("panicked"), "{text}");
    }
}

#[test]
fn region_too_small() {
    let dir = workdir("small-region");
    let a = compile(&dir, "a", LIB_A, &[]);
    let b = compile(&dir, "b", MAIN_B, &[]);
    let message = one_line_error(&modload(&[
        "run",
        path(&a),
        path(&b),
        "--region-size",
        "4K",
    ]));
    assert!(message.contains("region has no free block"), "{message}");
}

/// Just enough JSON to check the tool's output: a strict recursive-descent
/// parser (no trailing data, escapes checked).
mod json {
    #[derive(Debug, PartialEq)]
    pub enum Value {
        Null,
        Bool(bool),
        Number(f64),
        String(String),
        Array(Vec<Value>),
        Object(Vec<(String, Value)>),
    }

    impl Value {
        pub fn get(&self, key: &str) -> Option<&Value> {
            match self {
                Value::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
                _ => None,
            }
        }

        pub fn str(&self) -> Option<&str> {
            match self {
                Value::String(text) => Some(text),
                _ => None,
            }
        }

        pub fn num(&self) -> Option<u64> {
            match self {
                Value::Number(n) if n.fract() == 0.0 && *n >= 0.0 => Some(*n as u64),
                _ => None,
            }
        }
    }

    pub fn parse(text: &str) -> Result<Value, String> {
        let mut parser = Parser {
            chars: text.chars().collect(),
            at: 0,
        };
        let value = parser.value()?;
        parser.space();
        if parser.at != parser.chars.len() {
            return Err(format!("trailing data at {}", parser.at));
        }
        Ok(value)
    }

    struct Parser {
        chars: Vec<char>,
        at: usize,
    }

    impl Parser {
        fn peek(&self) -> Option<char> {
            self.chars.get(self.at).copied()
        }

        fn next(&mut self) -> Result<char, String> {
            let c = self.peek().ok_or("unexpected end")?;
            self.at += 1;
            Ok(c)
        }

        fn space(&mut self) {
            while matches!(self.peek(), Some(' ' | '\n' | '\r' | '\t')) {
                self.at += 1;
            }
        }

        fn expect(&mut self, want: char) -> Result<(), String> {
            self.space();
            match self.next()? {
                c if c == want => Ok(()),
                c => Err(format!("expected {want:?}, found {c:?} at {}", self.at)),
            }
        }

        fn literal(&mut self, word: &str, value: Value) -> Result<Value, String> {
            for want in word.chars() {
                if self.next()? != want {
                    return Err(format!("bad literal at {}", self.at));
                }
            }
            Ok(value)
        }

        fn value(&mut self) -> Result<Value, String> {
            self.space();
            match self.peek().ok_or("unexpected end")? {
                '{' => self.object(),
                '[' => self.array(),
                '"' => self.string().map(Value::String),
                't' => self.literal("true", Value::Bool(true)),
                'f' => self.literal("false", Value::Bool(false)),
                'n' => self.literal("null", Value::Null),
                _ => self.number(),
            }
        }

        fn object(&mut self) -> Result<Value, String> {
            self.expect('{')?;
            let mut members = Vec::new();
            self.space();
            if self.peek() == Some('}') {
                self.at += 1;
                return Ok(Value::Object(members));
            }
            loop {
                self.space();
                let key = self.string()?;
                if members.iter().any(|(k, _)| *k == key) {
                    return Err(format!("duplicate key {key}"));
                }
                self.expect(':')?;
                members.push((key, self.value()?));
                self.space();
                match self.next()? {
                    ',' => continue,
                    '}' => return Ok(Value::Object(members)),
                    c => return Err(format!("unexpected {c:?} in object at {}", self.at)),
                }
            }
        }

        fn array(&mut self) -> Result<Value, String> {
            self.expect('[')?;
            let mut items = Vec::new();
            self.space();
            if self.peek() == Some(']') {
                self.at += 1;
                return Ok(Value::Array(items));
            }
            loop {
                items.push(self.value()?);
                self.space();
                match self.next()? {
                    ',' => continue,
                    ']' => return Ok(Value::Array(items)),
                    c => return Err(format!("unexpected {c:?} in array at {}", self.at)),
                }
            }
        }

        fn string(&mut self) -> Result<String, String> {
            self.expect('"')?;
            let mut out = String::new();
            loop {
                match self.next()? {
                    '"' => return Ok(out),
                    '\\' => match self.next()? {
                        '"' => out.push('"'),
                        '\\' => out.push('\\'),
                        '/' => out.push('/'),
                        'n' => out.push('\n'),
                        'r' => out.push('\r'),
                        't' => out.push('\t'),
                        'b' => out.push('\u{8}'),
                        'f' => out.push('\u{c}'),
                        'u' => {
                            let hex: String =
                                (0..4).map(|_| self.next()).collect::<Result<_, _>>()?;
                            let code = u32::from_str_radix(&hex, 16).map_err(|e| e.to_string())?;
                            out.push(char::from_u32(code).ok_or("bad \\u escape")?);
                        }
                        c => return Err(format!("bad escape {c:?}")),
                    },
                    c if (c as u32) < 0x20 => return Err("control character in string".into()),
                    c => out.push(c),
                }
            }
        }

        fn number(&mut self) -> Result<Value, String> {
            let start = self.at;
            while matches!(self.peek(), Some('0'..='9' | '-' | '+' | '.' | 'e' | 'E')) {
                self.at += 1;
            }
            let text: String = self.chars[start..self.at].iter().collect();
            text.parse()
                .map(Value::Number)
                .map_err(|_| format!("bad number {text:?} at {start}"))
        }
    }

    #[test]
    fn parses_and_rejects() {
        assert_eq!(
            parse(r#" {"a": [1, true, null], "b\n": "x\"\u0041"} "#),
            Ok(Value::Object(vec![
                (
                    "a".into(),
                    Value::Array(vec![Value::Number(1.0), Value::Bool(true), Value::Null])
                ),
                ("b\n".into(), Value::String("x\"A".into())),
            ]))
        );
        for bad in [
            "{",
            "{\"a\":1,}",
            "[1 2]",
            "\"a\nb\"",
            "{} x",
            "{\"a\":1,\"a\":2}",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
