#!/usr/bin/env python3
"""The real-program harness: builds real C and C++ programs one object per
source file, links each natively, runs the native binary and `modload run`
with the same objects, and compares their stdout and exit status.

Run it through scripts/real-programs.sh, which documents the options. Every
case prints one line, `PASS program/flagset/order` or
`FAIL program/flagset/order: reason`; the last line is `N passed, N failed`.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
REAL = REPO / "tests" / "real"
SOURCES_MANIFEST = REAL / "sources" / "Cargo.toml"
AARCH64_SYSROOT = "/usr/aarch64-linux-gnu"


@dataclasses.dataclass
class Program:
    """One program: its sources, how to compile and run it."""

    name: str
    language: str  # "c" or "c++"
    sources: list[Path]
    includes: list[Path] = dataclasses.field(default_factory=list)
    defines: list[str] = dataclasses.field(default_factory=list)
    args: list[str] = dataclasses.field(default_factory=list)
    orders: tuple[str, ...] = ("forward",)
    # `-l NAME` options for modload run (libc and libm it always opens).
    modload_libraries: list[str] = dataclasses.field(default_factory=list)
    native_libraries: list[str] = dataclasses.field(default_factory=lambda: ["-lm"])
    # The native run must exit with this status; anything else means the
    # program or its build is wrong, and no comparison is meaningful.
    expected_status: int = 0


@dataclasses.dataclass(frozen=True)
class FlagSet:
    """A compiler family and the flags every object of the set gets."""

    name: str
    family: str  # "gnu" or "clang"
    flags: tuple[str, ...]
    no_pie: bool


FLAG_SETS = [
    FlagSet("gcc-fpic", "gnu", ("-O2", "-fPIC"), no_pie=False),
    FlagSet("gcc-nopic", "gnu", ("-O2", "-fno-pic"), no_pie=True),
    FlagSet("clang-large", "clang", ("-O2", "-fno-pic", "-mcmodel=large"), no_pie=True),
]


@dataclasses.dataclass(frozen=True)
class Arch:
    """The compilers and the way to run binaries for one architecture."""

    name: str
    gnu_c: tuple[str, ...]
    gnu_cxx: tuple[str, ...]
    clang_c: tuple[str, ...]
    clang_cxx: tuple[str, ...]
    # Prefix that runs a binary of this arch on the host.
    runner: tuple[str, ...]

    def library_env(self) -> dict[str, str]:
        """Under qemu, `modload run -l NAME` would ask the host's g++ where
        libNAME.so is, and get the host's: point LIBRARY_PATH at the cross
        g++'s own library directory instead, which a native g++ on this
        architecture would name."""
        if not self.runner:
            return {}
        answer = subprocess.run([*self.gnu_cxx, "-print-file-name=libstdc++.so"],
                                capture_output=True, text=True, check=False).stdout.strip()
        return {"LIBRARY_PATH": str(Path(answer).parent)} if os.path.isabs(answer) else {}

    def compiler(self, family: str, language: str) -> tuple[str, ...]:
        if family == "gnu":
            return self.gnu_cxx if language == "c++" else self.gnu_c
        return self.clang_cxx if language == "c++" else self.clang_c


ARCHES = {
    "x86_64": Arch(
        "x86_64",
        gnu_c=("gcc",),
        gnu_cxx=("g++",),
        clang_c=("clang-22",),
        clang_cxx=("clang++-22",),
        runner=(),
    ),
    "aarch64": Arch(
        "aarch64",
        gnu_c=("aarch64-linux-gnu-gcc",),
        gnu_cxx=("aarch64-linux-gnu-g++",),
        clang_c=("clang-22", "--target=aarch64-linux-gnu"),
        clang_cxx=("clang++-22", "--target=aarch64-linux-gnu"),
        runner=("qemu-aarch64", "-L", AARCH64_SYSROOT),
    ),
}


def crate_dirs() -> dict[str, Path]:
    """Fetches the pinned source crates and returns each one's directory."""
    manifest = ["--manifest-path", str(SOURCES_MANIFEST), "--locked"]
    subprocess.run(["cargo", "fetch", "-q", *manifest], check=True)
    metadata = subprocess.run(
        ["cargo", "metadata", "-q", "--format-version", "1", *manifest],
        check=True,
        capture_output=True,
        text=True,
    )
    packages = json.loads(metadata.stdout)["packages"]
    return {package["name"]: Path(package["manifest_path"]).parent for package in packages}


def crate_versions() -> dict[str, str]:
    """The pinned version of each source crate, for the report header."""
    metadata = subprocess.run(
        ["cargo", "metadata", "-q", "--offline", "--locked", "--format-version", "1",
         "--manifest-path", str(SOURCES_MANIFEST)],
        check=True, capture_output=True, text=True,
    )
    return {p["name"]: p["version"] for p in json.loads(metadata.stdout)["packages"]}


def programs(crates: dict[str, Path], arch: Arch) -> list[Program]:
    lua = crates["lua-src"] / "lua-5.4.8"
    zlib = crates["libz-sys"] / "src" / "zlib"
    lz4 = crates["lz4-sys"] / "liblz4" / "lib"
    zstd = crates["zstd-sys"] / "zstd" / "lib"
    bzip2 = crates["bzip2-sys"] / "bzip2-1.0.8"
    sqlite = crates["libsqlite3-sys"] / "sqlite3"

    def c_files(directory: Path) -> list[Path]:
        return sorted(directory.glob("*.c"))

    zstd_sources = c_files(zstd / "common") + c_files(zstd / "compress") + c_files(
        zstd / "decompress"
    )
    if arch.name == "x86_64":
        # The Huffman decoder's hand-written loop: one more object, in assembly.
        zstd_sources.append(zstd / "decompress" / "huf_decompress_amd64.S")
    bzip2_library = [
        bzip2 / f"{name}.c"
        for name in (
            "blocksort", "bzlib", "compress", "crctable", "decompress", "huffman", "randtable",
        )
    ]
    return [
        Program(
            "lua",
            "c",
            c_files(lua) + [REAL / "lua" / "lua_main.c"],
            includes=[lua],
            defines=["-std=gnu99", "-DLUA_USE_LINUX"],
            args=[str(REAL / "lua" / "test.lua")],
            orders=("forward", "reverse", "shuffled"),
        ),
        Program(
            "zlib",
            "c",
            c_files(zlib) + [REAL / "zlib" / "main.c"],
            includes=[zlib],
            defines=["-DSTDC", "-D_LARGEFILE64_SOURCE=1", "-DHAVE_UNISTD_H", "-DZ_HAVE_UNISTD_H"],
        ),
        Program(
            "lz4",
            "c",
            c_files(lz4) + [REAL / "lz4" / "main.c"],
            includes=[lz4],
        ),
        Program(
            "zstd",
            "c",
            zstd_sources + [REAL / "zstd" / "main.c"],
            includes=[zstd, zstd / "common"],
        ),
        Program(
            "bzip2",
            "c",
            bzip2_library + [REAL / "bzip2" / "main.c"],
            includes=[bzip2],
            defines=["-D_FILE_OFFSET_BITS=64"],
        ),
        Program(
            "sqlite",
            "c",
            [sqlite / "sqlite3.c", REAL / "sqlite" / "main.c"],
            includes=[sqlite],
            defines=["-DSQLITE_THREADSAFE=0", "-DSQLITE_OMIT_LOAD_EXTENSION"],
        ),
        Program(
            "cpp",
            "c++",
            sorted((REAL / "cpp").glob("*.cpp")),
            includes=[REAL / "cpp"],
            defines=["-std=c++17"],
            modload_libraries=["stdc++"],
        ),
        Program(
            "atomics",
            "c",
            sorted((REAL / "atomics").glob("*.c")),
            includes=[REAL / "atomics"],
            native_libraries=["-pthread"],
        ),
        Program(
            "prog",
            "c",
            sorted((REAL.parent / "fixtures" / "prog").glob("*.c")),
            args=["alpha", "beta"],
            expected_status=3,
        ),
    ]


# ---------------------------------------------------------------- building


@dataclasses.dataclass
class Compile:
    source: Path
    object: Path
    command: list[str]
    seconds: float = 0.0

    def up_to_date(self) -> bool:
        """True when the object was built by this very command from sources
        (every file in its -MMD dependency list) no newer than itself."""
        command_file = self.object.with_suffix(".cmd")
        depfile = self.object.with_suffix(".d")
        try:
            if command_file.read_text() != shlex.join(self.command):
                return False
            built = self.object.stat().st_mtime
            text = depfile.read_text().replace("\\\n", " ")
        except OSError:
            return False
        _, _, dependencies = text.partition(":")
        try:
            return all(Path(d).stat().st_mtime <= built for d in dependencies.split())
        except OSError:
            return False

    def run(self) -> str | None:
        """Compiles; returns None, or the compiler's first error line."""
        self.object.parent.mkdir(parents=True, exist_ok=True)
        command_file = self.object.with_suffix(".cmd")
        command_file.unlink(missing_ok=True)
        started = time.monotonic()
        result = subprocess.run(self.command, capture_output=True, text=True)
        self.seconds = time.monotonic() - started
        log = self.object.with_suffix(".log")
        log.write_text(result.stderr)
        if result.returncode != 0:
            errors = [line for line in result.stderr.splitlines() if "error" in line]
            first = errors[0] if errors else (result.stderr.strip().splitlines() or ["?"])[0]
            return f"compiling {self.source.name} failed: {first}"
        command_file.write_text(shlex.join(self.command))
        return None


@dataclasses.dataclass
class Build:
    """One program built with one flag set."""

    program: Program
    flag_set: FlagSet
    directory: Path
    compiles: list[Compile]
    error: str | None = None

    @property
    def objects(self) -> list[Path]:
        return [compile.object for compile in self.compiles]

    @property
    def native(self) -> Path:
        return self.directory / "native"


def plan_build(program: Program, flag_set: FlagSet, arch: Arch, root: Path) -> Build:
    directory = root / flag_set.name / program.name
    compiler = arch.compiler(flag_set.family, program.language)
    compiles = []
    stems: set[str] = set()
    for source in program.sources:
        stem = source.stem
        if stem in stems:
            raise SystemExit(f"harness: two sources named {stem} in {program.name}")
        stems.add(stem)
        obj = directory / "obj" / f"{stem}.o"
        command = [
            *compiler,
            *flag_set.flags,
            *program.defines,
            *(f"-I{include}" for include in program.includes),
            "-c",
            str(source),
            "-o",
            str(obj),
            "-MMD",
            "-MF",
            str(obj.with_suffix(".d")),
        ]
        compiles.append(Compile(source, obj, command))
    return Build(program, flag_set, directory, compiles)


def link(build: Build, arch: Arch) -> None:
    """Links the native binary from the objects in forward order."""
    if build.error:
        return
    linker = arch.compiler("gnu", build.program.language)
    command = [
        *linker,
        *(["-no-pie"] if build.flag_set.no_pie else []),
        "-o",
        str(build.native),
        *map(str, ordered(build.objects, "forward")),
        *build.program.native_libraries,
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    (build.directory / "link.log").write_text(shlex.join(command) + "\n" + result.stderr)
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        build.error = f"native link failed: {lines[0] if lines else result.returncode}"


def ordered(objects: list[Path], order: str) -> list[Path]:
    """The load order of a case: sorted by name, its reverse, or a fixed
    shuffle (sorted by a hash of the name, so every run loads alike)."""
    forward = sorted(objects, key=lambda path: path.name)
    if order == "forward":
        return forward
    if order == "reverse":
        return forward[::-1]
    if order == "shuffled":
        return sorted(objects, key=lambda path: hashlib.sha256(path.name.encode()).hexdigest())
    raise ValueError(order)


# ---------------------------------------------------------------- running


@dataclasses.dataclass
class Outcome:
    stdout: bytes
    stderr: bytes
    status: int | None  # None: timed out
    seconds: float


def execute(command: list[str], cwd: Path, timeout: float,
            extra_env: dict[str, str] | None = None) -> Outcome:
    env = dict(os.environ, LC_ALL="C", **(extra_env or {}))
    started = time.monotonic()
    with subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
            status: int | None = process.returncode
        except subprocess.TimeoutExpired:
            # The whole session: qemu and whatever the program started.
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            status = None
    return Outcome(stdout, stderr, status, time.monotonic() - started)


def describe_status(status: int | None, timeout: float) -> str:
    if status is None:
        return f"timed out after {timeout:.0f} s"
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exit status {status}"


def first_line(data: bytes) -> str:
    for line in data.decode(errors="replace").splitlines():
        if line.strip():
            return line.strip()
    return ""


def first_difference(got: bytes, expected: bytes) -> str:
    got_lines = got.decode(errors="replace").splitlines()
    expected_lines = expected.decode(errors="replace").splitlines()
    for number, (mine, theirs) in enumerate(zip(got_lines, expected_lines), start=1):
        if mine != theirs:
            return f"line {number}: got {mine[:60]!r}, native {theirs[:60]!r}"
    if len(got_lines) != len(expected_lines):
        return (
            f"{len(got_lines)} lines, native {len(expected_lines)}"
            f" (first missing or extra: line {min(len(got_lines), len(expected_lines)) + 1})"
        )
    return "line endings differ"


@dataclasses.dataclass
class Case:
    build: Build
    order: str

    @property
    def name(self) -> str:
        return f"{self.build.program.name}/{self.build.flag_set.name}/{self.order}"


@dataclasses.dataclass
class Verdict:
    case: Case
    passed: bool | None  # None: skipped
    reason: str = ""
    seconds: float = 0.0

    def line(self) -> str:
        if self.passed is None:
            return f"SKIP {self.case.name}: {self.reason}"
        if self.passed:
            return f"PASS {self.case.name}"
        return f"FAIL {self.case.name}: {self.reason}"


class Runner:
    def __init__(self, arch: Arch, modload: list[str] | None, skip_reason: str,
                 timeout: float, keep: bool):
        self.arch = arch
        self.modload = modload
        self.skip_reason = skip_reason
        self.timeout = timeout
        self.keep = keep
        self.native_outcomes: dict[Path, Outcome] = {}

    def native(self, build: Build) -> Outcome:
        """Runs the native binary once per build; the reference output."""
        outcome = execute(
            [*self.arch.runner, str(build.native), *build.program.args],
            build.directory,
            self.timeout,
        )
        save(build.directory / "native", outcome)
        return outcome

    def judge(self, case: Case, native: Outcome) -> Verdict:
        build = case.build
        program = build.program
        if native.status != program.expected_status:
            detail = first_line(native.stderr) or first_line(native.stdout)
            return Verdict(
                case,
                False,
                f"the native binary failed ({describe_status(native.status, self.timeout)},"
                f" expected exit status {program.expected_status}): {detail}",
            )
        if self.modload is None:
            return Verdict(case, None, self.skip_reason)
        command = [*self.arch.runner, *self.modload, "run"]
        command += map(str, ordered(build.objects, case.order))
        for library in program.modload_libraries:
            command += ["-l", library]
        command += ["--", *program.args]
        outcome = execute(command, build.directory, self.timeout, self.arch.library_env())
        prefix = build.directory / case.order
        save(prefix, outcome, command)
        if outcome.status != native.status:
            reason = first_line(outcome.stderr)
            status = describe_status(outcome.status, self.timeout)
            if not reason:
                reason = f"{status}, native exit status {native.status}"
            elif outcome.status is None or outcome.status < 0:
                reason = f"{status}: {reason}"
            return Verdict(case, False, reason, outcome.seconds)
        if outcome.stdout != native.stdout:
            reason = "stdout differs from native, " + first_difference(outcome.stdout, native.stdout)
            stderr = first_line(outcome.stderr)
            if stderr:
                reason += f"; stderr: {stderr}"
            return Verdict(case, False, reason, outcome.seconds)
        if not self.keep:
            for suffix in (".stdout", ".stderr", ".status", ".cmd"):
                prefix.with_suffix(suffix).unlink(missing_ok=True)
        return Verdict(case, True, "", outcome.seconds)


def save(prefix: Path, outcome: Outcome, command: list[str] | None = None) -> None:
    prefix.with_suffix(".stdout").write_bytes(outcome.stdout)
    prefix.with_suffix(".stderr").write_bytes(outcome.stderr)
    prefix.with_suffix(".status").write_text(f"{outcome.status}\n")
    if command is not None:
        prefix.with_suffix(".cmd").write_text(shlex.join(command) + "\n")


# ---------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=sorted(ARCHES), default="x86_64")
    parser.add_argument("--only", action="append", default=[],
                        help="program to run (repeatable, or comma-separated)")
    parser.add_argument("--flag-set", action="append", default=[],
                        help="flag set to run (repeatable, or comma-separated)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the outputs of passing cases too")
    parser.add_argument("--jobs", "-j", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds per run (default 120, 600 under qemu)")
    options = parser.parse_args()

    arch = ARCHES[options.arch]
    timeout = options.timeout or (600.0 if arch.runner else 120.0)
    started = time.monotonic()

    if arch.name == "x86_64":
        modload_path = os.environ.get("MODLOAD") or str(REPO / "target" / "release" / "modload")
        modload: list[str] | None = [modload_path]
        skip_reason = ""
        if not Path(modload_path).is_file():
            raise SystemExit(f"harness: no modload binary at {modload_path}")
    else:
        aarch64_cli = os.environ.get("MODLOAD_AARCH64")
        if aarch64_cli and Path(aarch64_cli).is_file():
            modload, skip_reason = [aarch64_cli], ""
        else:
            modload = None
            skip_reason = (
                "no aarch64 modload CLI (MODLOAD_AARCH64 is unset)"
                if not aarch64_cli
                else f"no aarch64 modload CLI (MODLOAD_AARCH64={aarch64_cli} is not a file)"
            )

    crates = crate_dirs()
    versions = crate_versions()
    wanted = {name for value in options.only for name in value.split(",") if name}
    wanted_sets = {name for value in options.flag_set for name in value.split(",") if name}
    all_programs = programs(crates, arch)
    unknown = wanted - {p.name for p in all_programs}
    unknown_sets = wanted_sets - {f.name for f in FLAG_SETS}
    if unknown or unknown_sets:
        raise SystemExit(f"harness: unknown program or flag set: {sorted(unknown | unknown_sets)}")
    selected = [p for p in all_programs if not wanted or p.name in wanted]
    flag_sets = [f for f in FLAG_SETS if not wanted_sets or f.name in wanted_sets]

    root = REPO / "target" / "real" / arch.name
    builds = [plan_build(p, f, arch, root) for f in flag_sets for p in selected]
    print(f"real-programs: arch {arch.name}, modload {shlex.join(modload) if modload else '(none)'}")
    print("sources: " + ", ".join(
        f"{name} {versions[name]}"
        for name in ("lua-src", "libz-sys", "lz4-sys", "zstd-sys", "bzip2-sys", "libsqlite3-sys")
    ))

    # Compile: everything stale, biggest sources first so that SQLite's
    # amalgamation does not start last and stretch the tail.
    stale = [(b, c) for b in builds for c in b.compiles if not c.up_to_date()]
    stale.sort(key=lambda pair: -pair[1].source.stat().st_size)
    total_objects = sum(len(b.compiles) for b in builds)
    print(f"compiling {len(stale)} of {total_objects} objects with {options.jobs} jobs", flush=True)
    with concurrent.futures.ThreadPoolExecutor(options.jobs) as pool:
        for (build, _), error in zip(stale, pool.map(lambda pair: pair[1].run(), stale)):
            if error and not build.error:
                build.error = error
        compiled = time.monotonic()
        list(pool.map(lambda b: link(b, arch), builds))
    linked = time.monotonic()

    runner = Runner(arch, modload, skip_reason, timeout, options.keep)
    cases = [Case(b, order) for b in builds for order in b.program.orders]

    def run_build(build: Build) -> list[Verdict]:
        mine = [case for case in cases if case.build is build]
        if build.error:
            return [Verdict(case, False, build.error) for case in mine]
        native = runner.native(build)
        return [runner.judge(case, native) for case in mine]

    verdicts: list[Verdict] = []
    with concurrent.futures.ThreadPoolExecutor(options.jobs) as pool:
        for results in pool.map(run_build, builds):
            for verdict in results:
                print(verdict.line(), flush=True)
                verdicts.append(verdict)

    passed = sum(1 for v in verdicts if v.passed is True)
    failed = sum(1 for v in verdicts if v.passed is False)
    skipped = sum(1 for v in verdicts if v.passed is None)
    finished = time.monotonic()
    print(
        f"time: {finished - started:.1f} s (compile {compiled - started:.1f} s,"
        f" link {linked - compiled:.1f} s, run {finished - linked:.1f} s)"
    )
    slowest_compiles = sorted(stale, key=lambda pair: -pair[1].seconds)[:3]
    if slowest_compiles:
        print("slowest compiles: " + ", ".join(
            f"{c.source.name} ({b.flag_set.name}) {c.seconds:.1f} s" for b, c in slowest_compiles
        ))
    ran = [v for v in verdicts if v.seconds]
    if ran:
        slowest = max(ran, key=lambda v: v.seconds)
        print(f"slowest modload run: {slowest.case.name} {slowest.seconds:.1f} s")
    if skipped:
        print(
            f"{skipped} cases skipped: {skip_reason}. Set MODLOAD_AARCH64 to an aarch64"
            " build of the modload CLI to run them under qemu-aarch64; the native"
            " binaries were built and checked."
        )
    summary = f"{passed} passed, {failed} failed"
    print(summary + (f", {skipped} skipped" if skipped else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
