//! The comparison of modload's link with lld's: identical bytes wherever the
//! two linkers must agree, and the same final destinations wherever they may
//! take different routes (GOT slots, stubs, veneers, thunks).

use std::collections::BTreeMap;
use std::fmt;

use super::isa::{Arch, Linkage};
use super::layout::{Area, Layout, LinkedModule};
use super::lld::LldImage;
use super::object::{InputObject, InputRelocation};
use super::x86_64;

/// Prefix of the renamed, placed sections: `.ml<module>_<section>`.
pub const PLACED_PREFIX: &str = ".ml";

/// The output section lld gives input section `section` of module `module`.
pub fn placed_name(module: usize, section: usize) -> String {
    format!("{PLACED_PREFIX}{module}_{section}")
}

/// The name the GOT symbol has in every object.
const GOT_SYMBOL: &str = "_GLOBAL_OFFSET_TABLE_";
/// At most this many byte differences are reported per section.
const MAX_REPORTS_PER_SECTION: usize = 8;

/// One disagreement between the two links.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// Module index in the load order.
    pub module: usize,
    /// The module's name.
    pub module_name: String,
    /// The section (or `symbols` for the symbol table).
    pub section: String,
    /// Offset in the section.
    pub offset: u64,
    /// What was compared: bytes, or a relocation type and its symbol.
    pub what: String,
    /// What modload's output has.
    pub modload: String,
    /// What lld's output has.
    pub lld: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "module {} ({}), {}+{:#x}, {}:\n    modload: {}\n    lld:     {}",
            self.module,
            self.module_name,
            self.section,
            self.offset,
            self.what,
            self.modload,
            self.lld
        )
    }
}

/// The result of a comparison: what was checked and what disagreed.
#[derive(Clone, Debug, Default)]
pub struct Comparison {
    /// Every disagreement.
    pub mismatches: Vec<Mismatch>,
    /// Bytes compared one to one.
    pub bytes_compared: u64,
    /// Relocations compared by where they lead.
    pub linkage_checked: u64,
    /// Relocations whose bytes were compared (no linkage).
    pub direct_relocations: u64,
    /// Exported symbols compared.
    pub symbols_checked: u64,
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} bytes, {} direct relocations, {} linkage relocations and {} symbols compared; \
             {} mismatches",
            self.bytes_compared,
            self.direct_relocations,
            self.linkage_checked,
            self.symbols_checked,
            self.mismatches.len()
        )?;
        for mismatch in &self.mismatches {
            writeln!(f, "  {mismatch}")?;
        }
        Ok(())
    }
}

/// Where a relocation led, in one output.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Reached {
    /// The final value: a call's destination, what a GOT slot holds, S + A.
    value: u64,
    /// How it got there, for the report.
    route: String,
}

/// One linker's output, as the comparison reads it.
trait Output {
    /// `len` bytes at `address`.
    fn read(&self, address: u64, len: usize) -> Option<Vec<u8>>;
    /// Whether `[address, address + len)` is inside a GOT that `module` may use.
    fn in_got(&self, module: usize, address: u64, len: u64) -> bool;
    /// The address GOT-relative relocations of `module` count from.
    fn got_base(&self, module: usize) -> Option<u64>;
    /// The GOT whose page `LD64_GOTPAGE_LO15` counts from.
    fn got_start(&self, module: usize) -> Option<u64>;
    /// Where a branch that lands at `address` finally goes, through stubs,
    /// veneers or thunks, and how.
    fn follow_call(&self, arch: Arch, address: u64) -> Result<Reached, String>;
}

struct ModloadOutput<'a> {
    layout: &'a Layout,
    images: Vec<Vec<u8>>,
    /// Per module: the GOT base its GOTPC relocations point at, used when the
    /// module has no GOT area (no slots) to learn the base from.
    derived_got: BTreeMap<usize, u64>,
}

impl Output for ModloadOutput<'_> {
    fn read(&self, address: u64, len: usize) -> Option<Vec<u8>> {
        self.layout.modules.iter().find_map(|module| {
            let start = address.checked_sub(module.base)?;
            let end = start.checked_add(len as u64)?;
            if end > module.size {
                return None;
            }
            self.images
                .get(module.index)?
                .get(start as usize..end as usize)
                .map(<[u8]>::to_vec)
        })
    }

    fn in_got(&self, module: usize, address: u64, len: u64) -> bool {
        self.layout
            .loader_area(module, "got")
            .is_some_and(|got| got.contains(address, len))
    }

    fn got_base(&self, module: usize) -> Option<u64> {
        self.layout
            .loader_area(module, "got")
            .map(|got| got.address)
            .or_else(|| self.derived_got.get(&module).copied())
    }

    fn got_start(&self, module: usize) -> Option<u64> {
        self.got_base(module)
    }

    fn follow_call(&self, arch: Arch, address: u64) -> Result<Reached, String> {
        let Some(stubs) = self
            .layout
            .areas
            .iter()
            .find(|area| area.kind == "stubs" && area.contains(address, 1))
        else {
            return Ok(Reached {
                value: address,
                route: format!("branches to {address:#x}"),
            });
        };
        if !(address - stubs.address).is_multiple_of(arch.stub_size()) {
            return Err(format!(
                "branches to {address:#x}, inside the stub area at {:#x} but not at a stub",
                stubs.address
            ));
        }
        let code = self
            .read(address, arch.stub_size() as usize)
            .ok_or_else(|| format!("branches to the stub at {address:#x}, which is cut off"))?;
        let target = arch.stub_target(&code).ok_or_else(|| {
            format!("branches to {address:#x} in the stub area, which holds no stub")
        })?;
        Ok(Reached {
            value: target,
            route: format!("branches to the stub at {address:#x}, which jumps to {target:#x}"),
        })
    }
}

struct LldOutput<'a> {
    image: &'a LldImage,
    layout: &'a Layout,
    arch: Arch,
}

impl Output for LldOutput<'_> {
    fn read(&self, address: u64, len: usize) -> Option<Vec<u8>> {
        self.image.read(address, len)
    }

    fn in_got(&self, _module: usize, address: u64, len: u64) -> bool {
        self.image
            .section_at(address, len)
            .is_some_and(|section| section.name == ".got")
    }

    fn got_base(&self, _module: usize) -> Option<u64> {
        // x86-64 lld puts _GLOBAL_OFFSET_TABLE_ at .got.plt, AArch64 at .got.
        let fallback = match self.arch {
            Arch::X86_64 => self.image.section(".got.plt"),
            Arch::AArch64 => self.image.section(".got"),
        };
        self.image
            .symbols
            .get(GOT_SYMBOL)
            .copied()
            .or_else(|| fallback.map(|section| section.address))
    }

    fn got_start(&self, _module: usize) -> Option<u64> {
        self.image.section(".got").map(|section| section.address)
    }

    fn follow_call(&self, arch: Arch, address: u64) -> Result<Reached, String> {
        // lld puts thunks after the input section of the caller, so in the
        // part of a placed output section beyond the bytes modload placed
        // there, or in a section of its own.
        let grown = self.layout.areas.iter().find_map(|area| {
            let section = self
                .image
                .section(&placed_name(area.module, area.section?))?;
            let tail = address.checked_sub(section.address)?;
            (tail >= area.size && tail < section.size).then_some((section, tail))
        });
        // A thunk is 16, 12 or (the short form) 4 bytes, and may end its section.
        let code = match grown {
            Some((section, tail)) => [16, 12, 4]
                .into_iter()
                .find_map(|len| self.image.read_in(section, tail, len)),
            None if self.layout.area_at(address, 1).is_some() => None,
            None => [16, 12, 4]
                .into_iter()
                .find_map(|len| self.read(address, len)),
        };
        let thunk = code.and_then(|code| arch.thunk_target(&code, address));
        Ok(match thunk {
            Some(target) => Reached {
                value: target,
                route: format!("branches to a thunk at {address:#x}, which jumps to {target:#x}"),
            },
            None => Reached {
                value: address,
                route: format!("branches to {address:#x}"),
            },
        })
    }
}

/// Everything a comparison looks at.
pub struct Subject<'a> {
    /// The architecture.
    pub arch: Arch,
    /// modload's layout.
    pub layout: &'a Layout,
    /// The original (not renamed) objects, in load order.
    pub objects: &'a [InputObject],
    /// lld's output.
    pub lld: &'a LldImage,
}

/// One relocation being checked, with its place.
struct Site<'a> {
    module: usize,
    section_name: &'a str,
    relocation: InputRelocation,
    place: u64,
    /// The original bytes of the section, before any linker touched them.
    original: &'a [u8],
}

/// Compares the two links.
pub fn compare(subject: &Subject<'_>) -> Comparison {
    let layout = subject.layout;
    let mut modload = ModloadOutput {
        layout,
        images: (0..layout.modules.len())
            .map(|module| layout.image(module))
            .collect(),
        derived_got: BTreeMap::new(),
    };
    for module in &layout.modules {
        if layout.loader_area(module.index, "got").is_none() {
            if let Some(base) = derived_got_base(subject, &modload, module.index) {
                modload.derived_got.insert(module.index, base);
            }
        }
    }
    let mut comparer = Comparer {
        subject,
        modload,
        lld: LldOutput {
            image: subject.lld,
            layout,
            arch: subject.arch,
        },
        comparison: Comparison::default(),
    };
    for module in &layout.modules {
        comparer.module(module);
    }
    comparer.symbols();
    comparer.comparison
}

/// The comparison in progress: both outputs and what was found so far.
struct Comparer<'a> {
    subject: &'a Subject<'a>,
    modload: ModloadOutput<'a>,
    lld: LldOutput<'a>,
    comparison: Comparison,
}

/// Where a finding is: module and section.
struct Place<'a> {
    module: &'a LinkedModule,
    section: &'a str,
}

impl Place<'_> {
    fn mismatch(&self, offset: u64, what: String, modload: String, lld: String) -> Mismatch {
        Mismatch {
            module: self.module.index,
            module_name: self.module.name.clone(),
            section: self.section.to_owned(),
            offset,
            what,
            modload,
            lld,
        }
    }
}

impl Comparer<'_> {
    /// Every placed section of `module`, then its ADRP/LDR GOT pairs, which
    /// may span sections.
    fn module(&mut self, module: &LinkedModule) {
        let layout = self.subject.layout;
        let mut pairs: BTreeMap<(usize, i64), GotPair> = BTreeMap::new();
        for area in layout.areas_of(module.index) {
            assert!(
                !(area.kind == "bss" && area.section.is_none()),
                "module {} has COMMON symbols, which the oracle does not place; \
                 build it with -fno-common",
                module.name
            );
            if let Some(section) = area.section {
                self.section(module, area, section, &mut pairs);
            }
        }
        let object = &self.subject.objects[module.index];
        for ((symbol, addend), pair) in pairs {
            let what = format!(
                "R_AARCH64_ADR_GOT_PAGE/LD64_GOT_LO12_NC pair against {}{:+}",
                object.symbol_name(symbol),
                addend
            );
            let ours = pair.ours.resolve(&self.modload, module.index, addend);
            let theirs = pair.theirs.resolve(&self.lld, module.index, addend);
            if let Some((modload, lld)) = disagreement(ours, theirs) {
                let place = Place {
                    module,
                    section: &pair.section,
                };
                let found = place.mismatch(pair.offset, what, modload, lld);
                self.comparison.mismatches.push(found);
            }
        }
    }

    /// lld's copy of one placed section: where modload put it, and at least
    /// as long (lld may append thunks). `None` after reporting otherwise.
    fn lld_bytes(&mut self, place: &Place<'_>, area: &Area, section: usize) -> Option<Vec<u8>> {
        let lld = self.subject.lld;
        let placed = format!("{:#x}, {} bytes", area.address, area.size);
        let found = match lld.section(&placed_name(place.module.index, section)) {
            Some(output) if output.address == area.address && output.size >= area.size => {
                let mut contents = lld.contents(output);
                contents.truncate(area.size as usize);
                return Some(contents);
            }
            Some(output) => format!("{:#x}, {} bytes", output.address, output.size),
            // lld drops empty output sections.
            None if area.size == 0 => return None,
            None => String::from("missing from the output"),
        };
        let mismatch = place.mismatch(0, String::from("placement"), placed, found);
        self.comparison.mismatches.push(mismatch);
        None
    }

    /// One placed section: its linkage relocations by where they lead, and
    /// every other byte one to one.
    fn section(
        &mut self,
        module: &LinkedModule,
        area: &Area,
        section: usize,
        pairs: &mut BTreeMap<(usize, i64), GotPair>,
    ) {
        let arch = self.subject.arch;
        let object = &self.subject.objects[module.index];
        let place = Place {
            module,
            section: &area.name,
        };
        let ours = self
            .modload
            .read(area.address, area.size as usize)
            .unwrap_or_else(|| panic!("modload's image lacks {} of {}", area.name, module.name));
        let Some(theirs) = self.lld_bytes(&place, area, section) else {
            return;
        };
        let original = object
            .contents
            .get(section)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let relocations = object.relocations_of(section);
        let mut masked = vec![false; ours.len()];
        for relocation in relocations {
            let symbol = object.symbol_name(relocation.symbol);
            let linkage = match arch.linkage(relocation.r_type) {
                Linkage::Direct if symbol == GOT_SYMBOL => arch
                    .got_symbol_linkage(relocation.r_type)
                    .unwrap_or(Linkage::Direct),
                linkage => linkage,
            };
            if linkage == Linkage::Direct && symbol != GOT_SYMBOL {
                self.comparison.direct_relocations += 1;
                continue;
            }
            let (start, len) = arch.touched(relocation.r_type);
            let first = relocation.offset as i64 + start;
            for at in first.max(0)..first + len as i64 {
                if let Some(flag) = masked.get_mut(at as usize) {
                    *flag = true;
                }
            }
            let what = format!("{} against {symbol}", arch.type_name(relocation.r_type));
            if linkage == Linkage::Direct {
                let found = place.mismatch(
                    relocation.offset,
                    what,
                    String::from("not checked: the oracle has no rule for this type"),
                    String::from("against the GOT symbol"),
                );
                self.comparison.mismatches.push(found);
                continue;
            }
            self.comparison.linkage_checked += 1;
            let site = Site {
                module: module.index,
                section_name: &area.name,
                relocation: *relocation,
                place: area.address.wrapping_add(relocation.offset),
                original,
            };
            if matches!(linkage, Linkage::GotPage | Linkage::GotLow12) {
                let pair = pairs
                    .entry((relocation.symbol, relocation.addend))
                    .or_default();
                pair.add(arch, &site, linkage, &ours, &theirs);
                continue;
            }
            let reached_ours = follow(arch, &self.modload, &site, linkage, &ours);
            let reached_theirs = follow(arch, &self.lld, &site, linkage, &theirs);
            if let Some((modload, lld)) = disagreement(reached_ours, reached_theirs) {
                let found = place.mismatch(relocation.offset, what, modload, lld);
                self.comparison.mismatches.push(found);
            }
        }
        let mismatches = &mut self.comparison.mismatches;
        compare_bytes(
            &ours,
            &theirs,
            &masked,
            relocations,
            arch,
            object,
            |found| {
                mismatches.push(place.mismatch(found.0, found.1, found.2, found.3));
            },
        );
        self.comparison.bytes_compared += masked.iter().filter(|masked| !**masked).count() as u64;
    }

    /// Every exported symbol must have the same address in lld's output.
    fn symbols(&mut self) {
        for (name, address) in &self.subject.layout.symbols {
            self.comparison.symbols_checked += 1;
            let theirs = self.subject.lld.symbols.get(name).copied();
            if theirs != Some(*address) {
                self.comparison.mismatches.push(Mismatch {
                    module: 0,
                    module_name: String::from("all"),
                    section: String::from("symbols"),
                    offset: 0,
                    what: format!("exported symbol {name}"),
                    modload: format!("{address:#x}"),
                    lld: theirs.map_or_else(|| String::from("not defined"), |a| format!("{a:#x}")),
                });
            }
        }
    }
}

/// `None` when both reached the same value, else the two sides as text.
fn disagreement(
    ours: Result<Option<Reached>, String>,
    theirs: Result<Option<Reached>, String>,
) -> Option<(String, String)> {
    let show = |side: &Result<Option<Reached>, String>| match side {
        Ok(Some(reached)) => reached.route.clone(),
        Ok(None) => String::from("consistent"),
        Err(problem) => format!("PROBLEM: {problem}"),
    };
    match (&ours, &theirs) {
        (Ok(Some(a)), Ok(Some(b))) if a.value == b.value => None,
        (Ok(None), Ok(None)) => None,
        _ => Some((show(&ours), show(&theirs))),
    }
}

/// Byte differences outside the masked fields, reported run by run.
fn compare_bytes(
    ours: &[u8],
    theirs: &[u8],
    masked: &[bool],
    relocations: &[InputRelocation],
    arch: Arch,
    object: &InputObject,
    mut report: impl FnMut((u64, String, String, String)),
) {
    let mut at = 0;
    let mut reported = 0;
    while at < ours.len() {
        if masked[at] || ours[at] == theirs[at] {
            at += 1;
            continue;
        }
        let start = at;
        while at < ours.len() && at - start < 16 && !masked[at] && ours[at] != theirs[at] {
            at += 1;
        }
        reported += 1;
        if reported > MAX_REPORTS_PER_SECTION {
            continue;
        }
        let covering = relocations.iter().find(|relocation| {
            let (first, len) = arch.touched(relocation.r_type);
            let first = relocation.offset as i64 + first;
            (first..first + len as i64).contains(&(start as i64))
        });
        let what = covering.map_or_else(
            || String::from("bytes (no relocation here)"),
            |relocation| {
                format!(
                    "bytes of {} against {}{:+}",
                    arch.type_name(relocation.r_type),
                    object.symbol_name(relocation.symbol),
                    relocation.addend
                )
            },
        );
        report((
            start as u64,
            what,
            hex(&ours[start..at]),
            hex(&theirs[start..at]),
        ));
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn read_u64(output: &dyn Output, address: u64) -> Result<u64, String> {
    let bytes = output
        .read(address, 8)
        .ok_or_else(|| format!("nothing mapped at {address:#x}"))?;
    Ok(u64::from_le_bytes(bytes.try_into().unwrap_or_default()))
}

/// The value in the GOT slot at `slot`, which must lie in a GOT.
fn slot_value(output: &dyn Output, module: usize, slot: u64) -> Result<Reached, String> {
    if !output.in_got(module, slot, 8) {
        return Err(format!("points at {slot:#x}, outside the GOT"));
    }
    let value = read_u64(output, slot)?;
    Ok(Reached {
        value,
        route: format!("GOT slot {slot:#x} holds {value:#x}"),
    })
}

/// Where one relocation leads in one output. `Ok(None)` means the relocation
/// was checked against that output alone (its GOT base) and is consistent.
fn follow(
    arch: Arch,
    output: &dyn Output,
    site: &Site<'_>,
    linkage: Linkage,
    section_bytes: &[u8],
) -> Result<Option<Reached>, String> {
    let relocation = &site.relocation;
    let offset = relocation.offset as usize;
    let place = site.place;
    let addend = relocation.addend;
    let value = section_bytes
        .get(offset..)
        .and_then(|bytes| arch.field(relocation.r_type, bytes))
        .ok_or_else(|| format!("field at {offset:#x} is cut off"))?;
    let base = || {
        output
            .got_base(site.module)
            .ok_or_else(|| String::from("no GOT base to count from"))
    };
    let reached = match linkage {
        Linkage::Direct | Linkage::GotPage | Linkage::GotLow12 => {
            return Err(format!("{linkage:?} is not followed on its own"));
        }
        Linkage::Call => output.follow_call(arch, arch.call_destination(place, value, addend))?,
        Linkage::GotPcRelative { relaxable } => {
            return got_pc_relative(output, site, section_bytes, value, relaxable).map(Some);
        }
        Linkage::GotSlotOffset => {
            let slot = base()?
                .wrapping_add_signed(value)
                .wrapping_sub(addend as u64);
            slot_value(output, site.module, slot)?
        }
        Linkage::GotRelative => {
            let target = base()?.wrapping_add_signed(value);
            Reached {
                value: target,
                route: format!("GOT base + {value:#x} = {target:#x}"),
            }
        }
        Linkage::GotPc => {
            let got = place.wrapping_add_signed(value).wrapping_sub(addend as u64);
            let base = base()?;
            if got != base {
                return Err(format!("points at {got:#x}, not at the GOT base {base:#x}"));
            }
            return Ok(None);
        }
        Linkage::GotBasePage => {
            let page = (place & !0xfff).wrapping_add_signed(value);
            let got = base()?.wrapping_add_signed(addend);
            if page != got & !0xfff {
                return Err(format!(
                    "ADRP gives page {page:#x}, not the GOT's page {got:#x}"
                ));
            }
            return Ok(None);
        }
        Linkage::GotBaseLow12 => {
            let got = base()?.wrapping_add_signed(addend);
            if value as u64 != got & 0xfff {
                return Err(format!(
                    "ADD gives {value:#x}, not the GOT's low bits {got:#x}"
                ));
            }
            return Ok(None);
        }
        Linkage::GotPageLow15 => {
            let got = output
                .got_start(site.module)
                .ok_or_else(|| String::from("no GOT"))?;
            let slot = (got & !0xfff)
                .wrapping_add_signed(value)
                .wrapping_sub(addend as u64);
            slot_value(output, site.module, slot)?
        }
        Linkage::GotLiteral => {
            let slot = place.wrapping_add_signed(value).wrapping_sub(addend as u64);
            slot_value(output, site.module, slot)?
        }
    };
    Ok(Some(reached))
}

/// An x86-64 GOTPCREL-family relocation. A `mov` that modload relaxed to
/// `lea` must put into the register what lld's `mov` loads from its slot;
/// everything else must load from a GOT slot holding the same value.
fn got_pc_relative(
    output: &dyn Output,
    site: &Site<'_>,
    section_bytes: &[u8],
    value: i64,
    relaxable: bool,
) -> Result<Reached, String> {
    let relocation = &site.relocation;
    let offset = relocation.offset as usize;
    let opcode_at = offset.checked_sub(2);
    let original = opcode_at.and_then(|at| site.original.get(at)).copied();
    let now = opcode_at.and_then(|at| section_bytes.get(at)).copied();
    let is_mov = relaxable && original == Some(x86_64::MOV_LOAD);
    if relaxable && original != now {
        let relaxed = is_mov && now == Some(x86_64::LEA);
        if !relaxed {
            return Err(format!(
                "opcode changed from {original:02x?} to {now:02x?} in {}",
                site.section_name
            ));
        }
    }
    if is_mov {
        // The displacement is the instruction's last field, so the address it
        // uses is the end of the field plus the displacement.
        let effective = site.place.wrapping_add(4).wrapping_add_signed(value);
        let wide = x86_64::loads_64_bits(site.original, offset);
        let mask = if wide { u64::MAX } else { u64::from(u32::MAX) };
        if now == Some(x86_64::LEA) {
            return Ok(Reached {
                value: effective & mask,
                route: format!("relaxed to lea of {effective:#x}"),
            });
        }
        let width = if wide { 8 } else { 4 };
        if !output.in_got(site.module, effective, width) {
            return Err(format!("mov loads from {effective:#x}, outside the GOT"));
        }
        let bytes = output
            .read(effective, width as usize)
            .ok_or_else(|| format!("nothing mapped at {effective:#x}"))?;
        let mut word = [0u8; 8];
        word[..bytes.len()].copy_from_slice(&bytes);
        let loaded = u64::from_le_bytes(word);
        return Ok(Reached {
            value: loaded,
            route: format!("mov loads {loaded:#x} from {effective:#x}"),
        });
    }
    let slot = site
        .place
        .wrapping_add_signed(value)
        .wrapping_sub(relocation.addend as u64);
    slot_value(output, site.module, slot)
}

/// The values one output's ADRP and LDR relocations for one GOT slot encode.
#[derive(Default)]
struct GotHalves {
    pages: Vec<(u64, u64)>,
    lows: Vec<(u64, u64)>,
}

impl GotHalves {
    /// The slot both halves agree on, and what it holds.
    fn resolve(
        &self,
        output: &dyn Output,
        module: usize,
        addend: i64,
    ) -> Result<Option<Reached>, String> {
        let single = |values: &[(u64, u64)], what: &str| -> Result<u64, String> {
            let (first_place, first) = *values
                .first()
                .ok_or_else(|| format!("no {what} for this slot"))?;
            match values.iter().find(|(_, value)| *value != first) {
                Some((place, other)) => Err(format!(
                    "{what}s disagree: {first:#x} at {first_place:#x}, {other:#x} at {place:#x}"
                )),
                None => Ok(first),
            }
        };
        let page = single(&self.pages, "ADRP page")?;
        let low = single(&self.lows, "LDR offset")?;
        let slot = (page | low).wrapping_sub(addend as u64);
        slot_value(output, module, slot).map(Some)
    }
}

/// ADRP/LDR halves per output, and where the first one is (for reports).
#[derive(Default)]
struct GotPair {
    ours: GotHalves,
    theirs: GotHalves,
    section: String,
    offset: u64,
}

impl GotPair {
    fn add(&mut self, arch: Arch, site: &Site<'_>, linkage: Linkage, ours: &[u8], theirs: &[u8]) {
        if self.section.is_empty() {
            self.section = site.section_name.to_owned();
            self.offset = site.relocation.offset;
        }
        let offset = site.relocation.offset as usize;
        let r_type = site.relocation.r_type;
        for (bytes, halves) in [(ours, &mut self.ours), (theirs, &mut self.theirs)] {
            let Some(value) = bytes.get(offset..).and_then(|b| arch.field(r_type, b)) else {
                continue;
            };
            if linkage == Linkage::GotPage {
                let page = (site.place & !0xfff).wrapping_add_signed(value);
                halves.pages.push((site.place, page));
            } else {
                halves.lows.push((site.place, value as u64));
            }
        }
    }
}

/// The GOT base a module's GOTPC relocations point at in modload's output,
/// for a module without GOT slots (and so without a GOT area).
fn derived_got_base(
    subject: &Subject<'_>,
    modload: &ModloadOutput<'_>,
    module: usize,
) -> Option<u64> {
    let object = subject.objects.get(module)?;
    for area in subject.layout.areas_of(module) {
        let Some(section) = area.section else {
            continue;
        };
        for relocation in object.relocations_of(section) {
            if subject.arch.linkage(relocation.r_type) != Linkage::GotPc {
                continue;
            }
            let place = area.address.wrapping_add(relocation.offset);
            let bytes = modload.read(place, 8).or_else(|| modload.read(place, 4))?;
            let value = subject.arch.field(relocation.r_type, &bytes)?;
            return Some(
                place
                    .wrapping_add_signed(value)
                    .wrapping_sub(relocation.addend as u64),
            );
        }
    }
    None
}
