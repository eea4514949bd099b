//! Command-line parsing, by hand: the grammar is small enough that a parser
//! library would be larger than the parsing. Every command's argument type
//! lives here, so the command modules depend on this one and not the reverse.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use modload::PageSize;

/// The usage text, printed for `--help` and when no command is given.
pub const USAGE: &str = "\
modload: load relocatable ELF objects (.o) into this process and run them

Usage:
  modload run OBJECT... [OPTIONS] [-- ARGS...]
  modload plan OBJECT [--json] [--page-size BYTES]
  modload link OBJECT... --at ADDRESS -o DIR [--sym NAME=ADDRESS]... [--page-size BYTES]
  modload keygen -o PREFIX
  modload sign --key SECRET_KEY OBJECT [-o OUTPUT]
  modload --help

Commands:
  run     Load the objects in the order given into one namespace, each as
          its own module. Calls to functions of later objects wait in their
          slots until those load (late binding); objects whose data
          references form a cycle load together as one module set, as if
          `ld -r` had joined them; an object that needs a later one's data
          waits for it. What remains resolves from the named shared
          libraries, libc and libm. Then call the entry symbol
          as int main(int argc, char **argv), with argv[0] = the first
          object and ARGS after it, and exit with its return value.
          Destructors and atexit handlers run at exit.
  plan    Print the exact memory layout the loader plans for OBJECT:
          kinds, segments, GOT and stub slots, relocations by type.
  link    Link the objects in order for target addresses (any supported
          machine; no code runs): the first at ADDRESS, each next one at
          the first suitably aligned address after the previous. Calls
          between objects bind late and data cycles load as module sets,
          as for run; every name must be defined by the end. Writes
          DIR/<index>-<name>.bin (each module's bytes) and DIR/layout.json
          (bases, areas and exported symbols).

  keygen  Make an Ed25519 key pair: PREFIX.key (secret, mode 0600) and
          PREFIX.pub (public, also printed), each 64 hex digits.
  sign    Append a signature trailer to OBJECT (in place, or to OUTPUT),
          made with the secret key file SECRET_KEY.

Options for run:
  --entry SYMBOL        Symbol to call instead of `main`
  --trusted-key FILE    Require every object to be signed by a trusted key;
                        FILE holds a public key (repeatable)
  -l NAME, -lNAME       Also resolve symbols from what cc/g++ link for -lNAME
  --lib PATH            Also resolve symbols from the shared library at PATH
  --region-size BYTES   Memory for all modules (default 64M; suffixes K, M, G;
                        0x for hexadecimal)
  -v, --verbose         Say which objects load as one module set, and why
  --perf-map            Write /tmp/perf-PID.map, the modules' symbols for
                        `perf report` (written before any module code runs)
  --gdb                 Register each module with GDB's JIT interface, for a
                        debugger that attaches later (gdb -p); on anyway when
                        a debugger runs modload (gdb --args modload run ...)
  --                    Pass the words after it to the program

A fatal signal in a run (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP) prints a
report: the faulting address, the PC as function+offset [module] and a
frame-pointer backtrace (build modules with -fno-omit-frame-pointer); the
process then dies of the signal.

Options for plan:
  --json                Print the plan as one JSON object
  --page-size BYTES     The target's page size: 4096 (default), 16384 or 65536

Options for link:
  --at ADDRESS          Target address of the first module (0x for hex)
  -o DIR, --output DIR  Directory for the module images and layout.json
  --sym NAME=ADDRESS    Define a host symbol (repeatable)
  --page-size BYTES     The target's page size: 4096 (default), 16384 or 65536
  -v, --verbose         Say which objects load as one module set, and why
";

/// The default bytes of region memory for `run`.
pub const DEFAULT_REGION_SIZE: usize = 64 << 20;

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Print the usage text.
    Help,
    /// Load objects and call their entry point.
    Run(RunArgs),
    /// Print one object's layout plan.
    Plan(PlanArgs),
    /// Link objects for target addresses and write their images.
    Link(LinkArgs),
    /// Make a key pair for signing modules.
    Keygen(KeygenArgs),
    /// Sign a module.
    Sign(SignArgs),
}

/// Arguments of `modload run`.
#[derive(Debug)]
pub struct RunArgs {
    /// The objects, in load order.
    pub objects: Vec<PathBuf>,
    /// The symbol to call.
    pub entry: String,
    /// Shared libraries to resolve from, in command-line order.
    pub libraries: Vec<Library>,
    /// Bytes of region memory.
    pub region_size: usize,
    /// The words after `--`: the program's argv[1..].
    pub program_args: Vec<OsString>,
    /// Public key files; when any is given, objects must be signed by one.
    pub trusted_keys: Vec<PathBuf>,
    /// Say which objects load together as a module set, and why.
    pub verbose: bool,
    /// Write `/tmp/perf-PID.map` for `perf report`.
    pub perf_map: bool,
    /// Register modules with GDB's JIT interface even when no debugger
    /// traces the process at start.
    pub gdb: bool,
}

/// A shared library named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Library {
    /// `-l NAME`: `libNAME.so` on the library search path.
    Name(String),
    /// `--lib PATH`.
    Path(PathBuf),
}

/// Arguments of `modload plan`.
#[derive(Debug)]
pub struct PlanArgs {
    /// The object to plan.
    pub object: PathBuf,
    /// Print JSON instead of a table.
    pub json: bool,
    /// The page size the layout is for.
    pub page_size: PageSize,
}

/// Parses the arguments after the program name. The error is a one-line
/// message for a usage mistake.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    let mut args = args.into_iter();
    let Some(command) = args.next() else {
        return Ok(Command::Help);
    };
    match command.to_str() {
        Some("-h" | "--help" | "help") => Ok(Command::Help),
        Some("run") => parse_run(args),
        Some("plan") => parse_plan(args),
        Some("link") => parse_link(args).map(Command::Link),
        Some("keygen") => parse_keygen(args).map(Command::Keygen),
        Some("sign") => parse_sign(args).map(Command::Sign),
        _ => Err(format!(
            "unknown command `{}` (expected `run`, `plan` or `link`; see `modload --help`)",
            command.to_string_lossy()
        )),
    }
}

fn parse_run(mut args: impl Iterator<Item = OsString>) -> Result<Command, String> {
    let mut run = RunArgs {
        objects: Vec::new(),
        entry: String::from("main"),
        libraries: Vec::new(),
        region_size: DEFAULT_REGION_SIZE,
        program_args: Vec::new(),
        trusted_keys: Vec::new(),
        verbose: false,
        perf_map: false,
        gdb: false,
    };
    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str() else {
            // Only paths may be non-UTF-8; options and their values are ASCII.
            run.objects.push(PathBuf::from(arg));
            continue;
        };
        if text == "--" {
            run.program_args = args.collect();
            break;
        }
        if let Some(value) = option_value(text, "--entry", &mut args)? {
            run.entry = utf8(value, "--entry")?;
        } else if let Some(value) = option_value(text, "--trusted-key", &mut args)? {
            run.trusted_keys.push(PathBuf::from(value));
        } else if let Some(value) = option_value(text, "--lib", &mut args)? {
            run.libraries.push(Library::Path(PathBuf::from(value)));
        } else if let Some(value) = option_value(text, "--region-size", &mut args)? {
            run.region_size = parse_size(&utf8(value, "--region-size")?)?;
        } else if let Some(name) = text.strip_prefix("-l") {
            let name = if name.is_empty() {
                utf8(required(&mut args, "-l")?, "-l")?
            } else {
                name.to_owned()
            };
            if name.is_empty() {
                return Err(String::from("option -l needs a library name"));
            }
            run.libraries.push(Library::Name(name));
        } else if text == "-v" || text == "--verbose" {
            run.verbose = true;
        } else if text == "--perf-map" {
            run.perf_map = true;
        } else if text == "--gdb" {
            run.gdb = true;
        } else if text == "-h" || text == "--help" {
            return Ok(Command::Help);
        } else if text.starts_with('-') && text != "-" {
            return Err(unknown_option(text));
        } else {
            run.objects.push(PathBuf::from(arg));
        }
    }
    if run.objects.is_empty() {
        return Err(String::from(
            "run needs at least one object file (see `modload --help`)",
        ));
    }
    Ok(Command::Run(run))
}

fn parse_plan(mut args: impl Iterator<Item = OsString>) -> Result<Command, String> {
    let mut object = None;
    let mut json = false;
    let mut page_size = PageSize::Size4KiB;
    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str() else {
            if object.is_some() {
                return Err(String::from(
                    "plan takes exactly one object file (see `modload --help`)",
                ));
            }
            object = Some(PathBuf::from(arg));
            continue;
        };
        if let Some(value) = option_value(text, "--page-size", &mut args)? {
            page_size = parse_page_size(&utf8(value, "--page-size")?)?;
            continue;
        }
        match text {
            "--json" => json = true,
            "-h" | "--help" => return Ok(Command::Help),
            _ if text.starts_with('-') && text != "-" => return Err(unknown_option(text)),
            _ if object.is_some() => {
                return Err(String::from(
                    "plan takes exactly one object file (see `modload --help`)",
                ))
            }
            _ => object = Some(PathBuf::from(arg)),
        }
    }
    let object =
        object.ok_or_else(|| String::from("plan needs an object file (see `modload --help`)"))?;
    Ok(Command::Plan(PlanArgs {
        object,
        json,
        page_size,
    }))
}

/// `--page-size`: one of the page sizes a region can have.
fn parse_page_size(text: &str) -> Result<PageSize, String> {
    text.parse::<u64>()
        .ok()
        .and_then(PageSize::new)
        .ok_or_else(|| format!("invalid --page-size `{text}`: expected 4096, 16384 or 65536"))
}

/// Arguments of `modload link`.
#[derive(Debug)]
pub struct LinkArgs {
    /// The objects, in load order.
    pub objects: Vec<PathBuf>,
    /// Target address of the first module.
    pub at: u64,
    /// Directory for the images and `layout.json`.
    pub output: PathBuf,
    /// Host symbols, in command-line order.
    pub symbols: Vec<(String, u64)>,
    /// Say which objects load as one module set, and why.
    pub verbose: bool,
    /// The target's page size, which the layout follows.
    pub page_size: PageSize,
}

/// Parses the arguments after `link`. The error is a one-line usage message.
fn parse_link(mut args: impl Iterator<Item = OsString>) -> Result<LinkArgs, String> {
    let mut objects = Vec::new();
    let mut at = None;
    let mut output = None;
    let mut symbols: Vec<(String, u64)> = Vec::new();
    let mut verbose = false;
    let mut page_size = PageSize::Size4KiB;
    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str() else {
            // Only paths may be non-UTF-8; options and their values are ASCII.
            objects.push(PathBuf::from(arg));
            continue;
        };
        if let Some(value) = option_value(text, "--page-size", &mut args)? {
            page_size = parse_page_size(&utf8(value, "--page-size")?)?;
        } else if let Some(value) = option_value(text, "--at", &mut args)? {
            at = Some(parse_address(&utf8(value, "--at")?, "--at")?);
        } else if let Some(value) = option_value(text, "--output", &mut args)? {
            output = Some(PathBuf::from(value));
        } else if let Some(value) = option_value(text, "--sym", &mut args)? {
            let (name, address) = parse_symbol(&utf8(value, "--sym")?)?;
            if symbols.iter().any(|(known, _)| *known == name) {
                return Err(format!("--sym `{name}` is given twice"));
            }
            symbols.push((name, address));
        } else if text == "-o" {
            let value = args
                .next()
                .ok_or_else(|| String::from("option -o needs a value"))?;
            output = Some(PathBuf::from(value));
        } else if text == "-v" || text == "--verbose" {
            verbose = true;
        } else if text == "-h" || text == "--help" {
            return Err(String::from("see `modload --help` for link's options"));
        } else if text.starts_with('-') && text != "-" {
            return Err(unknown_option(text));
        } else {
            objects.push(PathBuf::from(arg));
        }
    }
    if objects.is_empty() {
        return Err(String::from(
            "link needs at least one object file (see `modload --help`)",
        ));
    }
    let at = at.ok_or_else(|| String::from("link needs --at ADDRESS (see `modload --help`)"))?;
    let output = output.ok_or_else(|| String::from("link needs -o DIR (see `modload --help`)"))?;
    Ok(LinkArgs {
        objects,
        at,
        output,
        symbols,
        verbose,
        page_size,
    })
}

/// A 64-bit address, in decimal or `0x` hexadecimal.
fn parse_address(text: &str, option: &str) -> Result<u64, String> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse::<u64>(),
    };
    parsed.map_err(|_| {
        format!("invalid {option} `{text}`: expected an address such as 0x40000000 or 1073741824")
    })
}

/// `NAME=ADDRESS`.
fn parse_symbol(text: &str) -> Result<(String, u64), String> {
    let bad = || format!("invalid --sym `{text}`: expected NAME=ADDRESS, such as puts=0x401000");
    let (name, address) = text.split_once('=').ok_or_else(bad)?;
    if name.is_empty() || address.is_empty() {
        return Err(bad());
    }
    Ok((name.to_owned(), parse_address(address, "--sym")?))
}

/// Arguments of `modload sign`.
#[derive(Debug)]
pub struct SignArgs {
    /// The secret key file.
    pub key: PathBuf,
    /// The object to sign.
    pub object: PathBuf,
    /// Where to write the signed module; the object itself when `None`.
    pub output: Option<PathBuf>,
}

/// Arguments of `modload keygen`.
#[derive(Debug)]
pub struct KeygenArgs {
    /// Writes `PREFIX.key` and `PREFIX.pub`.
    pub prefix: PathBuf,
}

/// Parses `modload sign --key KEY OBJECT [-o OUT]`.
fn parse_sign(mut args: impl Iterator<Item = OsString>) -> Result<SignArgs, String> {
    let mut key = None;
    let mut object = None;
    let mut output = None;
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--key" | "-k") => key = Some(PathBuf::from(required(&mut args, "--key")?)),
            Some("-o" | "--output") => output = Some(PathBuf::from(required(&mut args, "-o")?)),
            Some(text) if text.starts_with("--key=") => {
                key = Some(PathBuf::from(text.trim_start_matches("--key=")));
            }
            Some(text) if text.starts_with('-') && text != "-" => return Err(unknown_option(text)),
            _ if object.is_some() => {
                return Err(String::from("sign takes exactly one object file"));
            }
            _ => object = Some(PathBuf::from(arg)),
        }
    }
    Ok(SignArgs {
        key: key.ok_or_else(|| String::from("sign needs --key SECRET_KEY_FILE"))?,
        object: object.ok_or_else(|| String::from("sign needs an object file"))?,
        output,
    })
}

/// Parses `modload keygen -o PREFIX`.
fn parse_keygen(mut args: impl Iterator<Item = OsString>) -> Result<KeygenArgs, String> {
    let mut prefix = None;
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("-o" | "--output") => prefix = Some(PathBuf::from(required(&mut args, "-o")?)),
            Some(text) => return Err(format!("unexpected argument `{text}` for keygen")),
            None => return Err(String::from("unexpected non-UTF-8 argument for keygen")),
        }
    }
    Ok(KeygenArgs {
        prefix: prefix.ok_or_else(|| String::from("keygen needs -o PREFIX"))?,
    })
}

/// The value of `--name VALUE` or `--name=VALUE` if `arg` is that option.
fn option_value(
    arg: &str,
    name: &str,
    rest: &mut impl Iterator<Item = OsString>,
) -> Result<Option<OsString>, String> {
    match arg.strip_prefix(name) {
        Some("") => required(rest, name).map(Some),
        Some(value) => Ok(value.strip_prefix('=').map(OsString::from)),
        None => Ok(None),
    }
}

fn required(rest: &mut impl Iterator<Item = OsString>, name: &str) -> Result<OsString, String> {
    rest.next()
        .ok_or_else(|| format!("option {name} needs a value"))
}

fn utf8(value: OsString, option: &str) -> Result<String, String> {
    value.into_string().map_err(|value| invalid(option, &value))
}

fn invalid(option: &str, value: &OsStr) -> String {
    format!("invalid value `{}` for {option}", value.to_string_lossy())
}

fn unknown_option(option: &str) -> String {
    format!("unknown option `{option}` (see `modload --help`)")
}

/// Parses a byte count: decimal or `0x` hexadecimal, with an optional binary
/// suffix `K`, `M` or `G`.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let bad = || {
        format!("invalid --region-size `{text}`: expected a byte count such as 67108864, 0x4000000 or 64M")
    };
    let (digits, shift) = match text.char_indices().last() {
        Some((at, 'k' | 'K')) => (text.get(..at).unwrap_or_default(), 10),
        Some((at, 'm' | 'M')) => (text.get(..at).unwrap_or_default(), 20),
        Some((at, 'g' | 'G')) => (text.get(..at).unwrap_or_default(), 30),
        _ => (text, 0),
    };
    let value = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => usize::from_str_radix(hex, 16),
        None => digits.parse::<usize>(),
    }
    .map_err(|_| bad())?;
    let bytes = value
        .checked_mul(1usize << shift)
        .filter(|bytes| *bytes > 0)
        .ok_or_else(bad)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("0x1000"), Ok(4096));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("2k"), Ok(2048));
        assert!(parse_size("").is_err());
        assert!(parse_size("0").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("-5").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
    }

    #[test]
    fn run_options() {
        let Ok(Command::Run(run)) = parse(args(&[
            "run",
            "a.o",
            "-lm",
            "b.o",
            "--gdb",
            "--entry=start",
            "-l",
            "z",
            "--lib",
            "x.so",
            "--region-size",
            "1M",
            "--",
            "-v",
            "--entry",
        ])) else {
            panic!("run should parse");
        };
        assert_eq!(run.objects, [PathBuf::from("a.o"), PathBuf::from("b.o")]);
        assert_eq!(run.entry, "start");
        assert_eq!(
            run.libraries,
            [
                Library::Name("m".into()),
                Library::Name("z".into()),
                Library::Path("x.so".into())
            ]
        );
        assert_eq!(run.region_size, 1 << 20);
        assert!(run.gdb);
        assert_eq!(run.program_args, args(&["-v", "--entry"]));
    }

    #[test]
    fn perf_map_option() {
        let parsed = |words: &[&str]| match parse(args(words)) {
            Ok(Command::Run(run)) => run.perf_map,
            other => panic!("run should parse: {other:?}"),
        };
        assert!(!parsed(&["run", "a.o"]));
        assert!(parsed(&["run", "a.o", "--perf-map"]));
        // After `--` it is the program's argument.
        assert!(!parsed(&["run", "a.o", "--", "--perf-map"]));
    }

    #[test]
    fn mistakes() {
        assert!(parse(args(&["run"])).is_err());
        assert!(parse(args(&["run", "a.o", "--entry"])).is_err());
        assert!(parse(args(&["run", "a.o", "--bogus"])).is_err());
        assert!(parse(args(&["run", "a.o", "--region-size", "lots"])).is_err());
        assert!(parse(args(&["plan"])).is_err());
        assert!(parse(args(&["plan", "a.o", "b.o"])).is_err());
        assert!(parse(args(&["frobnicate"])).is_err());
        assert!(matches!(parse(args(&[])), Ok(Command::Help)));
        assert!(matches!(
            parse(args(&["plan", "x.o", "--json"])),
            Ok(Command::Plan(PlanArgs { json: true, .. }))
        ));
        assert!(matches!(
            parse(args(&["plan", "x.o", "--page-size", "65536"])),
            Ok(Command::Plan(PlanArgs {
                page_size: PageSize::Size64KiB,
                ..
            }))
        ));
        assert!(matches!(
            parse(args(&["plan", "x.o"])),
            Ok(Command::Plan(PlanArgs {
                page_size: PageSize::Size4KiB,
                ..
            }))
        ));
        assert!(parse(args(&["plan", "x.o", "--page-size", "8192"])).is_err());
        assert!(parse(args(&["plan", "x.o", "--page-size"])).is_err());
    }

    fn link_args(words: &[&str]) -> Result<LinkArgs, String> {
        parse_link(words.iter().map(OsString::from))
    }

    #[test]
    fn link_options() {
        let link = link_args(&[
            "a.o",
            "--at",
            "0x40000000",
            "b.o",
            "-o",
            "out",
            "--sym",
            "puts=0x1000",
            "--sym=exit=4096",
        ])
        .unwrap();
        assert_eq!(link.objects, [PathBuf::from("a.o"), PathBuf::from("b.o")]);
        assert_eq!(link.at, 0x4000_0000);
        assert_eq!(link.output, PathBuf::from("out"));
        assert_eq!(
            link.symbols,
            [("puts".to_owned(), 0x1000), ("exit".to_owned(), 4096)]
        );
        let top = link_args(&["a.o", "--at=0xffffffff80000000", "--output=d"]).unwrap();
        assert_eq!(top.at, 0xffff_ffff_8000_0000);
    }

    #[test]
    fn link_mistakes() {
        for words in [
            &["--at", "0x1000", "-o", "d"][..],
            &["a.o", "-o", "d"],
            &["a.o", "--at", "0x1000"],
            &["a.o", "--at", "0xg", "-o", "d"],
            &["a.o", "--at", "0x10000000000000000", "-o", "d"],
            &["a.o", "--at", "-1", "-o", "d"],
            &["a.o", "--at", "0x1000", "-o", "d", "--sym", "puts"],
            &["a.o", "--at", "0x1000", "-o", "d", "--sym", "=0x10"],
            &["a.o", "--at", "0x1000", "-o", "d", "--sym", "puts="],
            &["a.o", "--at", "0x1000", "-o", "d", "--sym", "puts=zz"],
            &[
                "a.o", "--at", "0x1000", "-o", "d", "--sym", "a=1", "--sym", "a=2",
            ],
            &["a.o", "--at", "0x1000", "-o"],
            &["a.o", "--at", "0x1000", "-o", "d", "--bogus"],
        ] {
            assert!(link_args(words).is_err(), "{words:?} should be refused");
        }
    }

    #[test]
    fn sign_arguments() {
        let sign = parse_sign(args(&["--key", "k", "x.o", "-o", "y.o"]).into_iter()).unwrap();
        assert_eq!(sign.key, PathBuf::from("k"));
        assert_eq!(sign.object, PathBuf::from("x.o"));
        assert_eq!(sign.output, Some(PathBuf::from("y.o")));
        assert!(parse_sign(args(&["x.o"]).into_iter()).is_err());
        assert!(parse_sign(args(&["--key", "k"]).into_iter()).is_err());
        assert!(parse_sign(args(&["--key", "k", "a.o", "b.o"]).into_iter()).is_err());
        assert!(parse_keygen(args(&["-o", "p"]).into_iter()).is_ok());
        assert!(parse_keygen(args(&[]).into_iter()).is_err());
    }
}
