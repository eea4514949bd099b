//! Which objects must load together, and in what order the rest load.
//!
//! With late binding, an object whose calls reach functions of later objects
//! loads before them: its calls wait in their slots. What cannot wait is a
//! *hard* reference (data, an absolute or PC-relative address, a GOT load
//! that may be data) to a name another object defines, and any reference to
//! a name another object defines but hides (`STV_HIDDEN`: the namespace never
//! exports it, so only a static link binds it). Objects whose hard references
//! form a cycle, and objects bound by hidden names, load as one module set,
//! as if `ld -r` had joined them: the smallest sets that close every cycle.

use std::collections::{BTreeMap, HashMap};

use goblin::container::Ctx;
use goblin::elf::header::EM_X86_64;
use goblin::elf::reloc::{R_X86_64_32, R_X86_64_32S, R_X86_64_PC32};
use goblin::elf::section_header::{SectionHeader, SHF_ALLOC, SHN_UNDEF, SHT_RELA, SHT_SYMTAB};
use goblin::elf::sym::{
    STB_GLOBAL, STB_GNU_UNIQUE, STB_WEAK, STT_FILE, STT_SECTION, STV_DEFAULT, STV_PROTECTED,
};
use goblin::elf::Elf;
use modload::{ErrorKind, Loader, Namespace, NoProtection, Object, Region};

use crate::Failure;

/// Planning allocates nothing: finding an object's hard references needs
/// neither region memory nor names.
static SCRATCH_REGION: Region = Region::new();
static SCRATCH_NAMESPACE: Namespace = Namespace::new();

/// Objects that load as one module: one object, or a set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// Indices of the objects, in the order given.
    pub members: Vec<usize>,
    /// Why the members load together: references between them that cannot
    /// wait or cross modules.
    pub reasons: Vec<Reason>,
}

/// One reference that ties two objects into a set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    /// The object that refers.
    pub from: usize,
    /// The object that defines.
    pub to: usize,
    /// The name.
    pub symbol: String,
    /// How: a reference that cannot wait, or one to a hidden name.
    pub hidden: bool,
}

/// What one object defines and refers to, as far as ordering cares, and
/// what else `modload run` needs to know of it before anything loads: one
/// read of its symbol table and relocations serves them all ([`survey`]).
pub struct Names {
    /// Global definitions, with whether each is hidden.
    defines: Vec<(String, bool)>,
    /// Every undefined global name.
    refers: Vec<String>,
    /// The undefined names it needs at load: what late binding cannot defer.
    hard: Vec<String>,
    /// Undefined names of default visibility that x86-64 32-bit fields
    /// refer to (`R_X86_64_PC32`, `R_X86_64_32`, `R_X86_64_32S`), with the
    /// relocation type: what may need a copy within reach ([`crate::copies`]).
    pub short_references: Vec<(String, u32)>,
    /// Whether a section that loads has x86-64 32-bit absolute relocations
    /// (`R_X86_64_32`, `R_X86_64_32S`): code that needs the low 2 GiB.
    pub absolute_32: bool,
    /// The sizes of the sections that load, summed (alignment and the
    /// loader's own entries not counted): about what the module will take.
    pub loaded_bytes: u64,
}

impl Names {
    /// The names this object defines, hidden ones included.
    pub fn defined(&self) -> impl Iterator<Item = &str> {
        self.defines.iter().map(|(name, _)| name.as_str())
    }
}

/// The units to load, in the order given: a set takes the place of its
/// first member. `objects` are `(name, bytes)`.
pub fn units(objects: &[(String, crate::ObjectBytes)]) -> Result<Vec<Unit>, Failure> {
    units_of(&mut survey(objects)?, objects)
}

/// What each object defines and refers to, read from its symbol table and
/// relocations (see [`Names`]), in the order given; which references cannot
/// wait is left for [`units_of`], as it takes a plan of the object.
pub fn survey(objects: &[(String, crate::ObjectBytes)]) -> Result<Vec<Names>, Failure> {
    objects
        .iter()
        .map(|(name, bytes)| names_of(name, bytes))
        .collect()
}

/// The units to load, from the objects' [`survey`]: it fills in which
/// references cannot wait (`hard`) for every object that a cycle of
/// references could join. References that cannot wait are some of an
/// object's references, so an object no cycle of references joins is in no
/// cycle of them either, and its own stay unknown, as they change no unit;
/// where no cycle of references joins any objects, the units are those
/// cycles leave, and nothing is planned. An object is planned with late
/// binding against an empty namespace, where every undefined name it needs
/// at load is unresolved. Planning is most of what finding units costs;
/// most programs (a main calling into a library that calls nothing back)
/// need none.
pub fn units_of(
    names: &mut [Names],
    objects: &[(String, crate::ObjectBytes)],
) -> Result<Vec<Unit>, Failure> {
    let cycles = group(names.len(), &edges(names, |object| &object.refers));
    if cycles.iter().all(|unit| unit.members.len() == 1) {
        return Ok(cycles);
    }
    let loader = Loader::new(&SCRATCH_NAMESPACE, &SCRATCH_REGION, &NoProtection).late_binding();
    for unit in cycles.iter().filter(|unit| unit.members.len() > 1) {
        for &index in &unit.members {
            let (Some((name, bytes)), Some(entry)) = (objects.get(index), names.get_mut(index))
            else {
                continue;
            };
            let object = Object::parse(name, bytes).map_err(|error| Failure::load(&error))?;
            entry.hard = match loader.plan(object) {
                Ok(_) => Vec::new(),
                Err(error) => match error.kind {
                    ErrorKind::Unresolved { names } => {
                        names.iter().map(|name| name.to_string()).collect()
                    }
                    _ => return Err(Failure::load(&error)),
                },
            };
        }
    }
    Ok(group(names.len(), &edges(names, |object| &object.hard)))
}

/// The references between objects: those `tied` gives for each object
/// (not hidden), and every reference to a name another object hides.
fn edges(names: &[Names], tied: impl Fn(&Names) -> &[String]) -> Vec<Reason> {
    // The first definition of each name wins, as in the namespace.
    let count = names.iter().map(|object| object.defines.len()).sum();
    let mut definer: HashMap<&str, (usize, bool)> = HashMap::with_capacity(count);
    for (index, object) in names.iter().enumerate() {
        for (name, hidden) in &object.defines {
            definer.entry(name).or_insert((index, *hidden));
        }
    }
    let mut edges: Vec<Reason> = Vec::new();
    for (from, object) in names.iter().enumerate() {
        let mut add = |symbol: &str, hidden: bool| {
            if let Some(&(to, _)) = definer.get(symbol).filter(|(to, _)| *to != from) {
                edges.push(Reason {
                    from,
                    to,
                    symbol: symbol.to_owned(),
                    hidden,
                });
            }
        };
        for symbol in tied(object) {
            add(symbol, false);
        }
        for symbol in &object.refers {
            if definer
                .get(symbol.as_str())
                .is_some_and(|(_, hidden)| *hidden)
            {
                add(symbol, true);
            }
        }
    }
    edges
}

/// Groups `count` objects: hidden references join their two ends, and each
/// cycle of hard references between groups joins the groups on it, until
/// no cycle is left.
fn group(count: usize, edges: &[Reason]) -> Vec<Unit> {
    let mut leader: Vec<usize> = (0..count).collect();
    for edge in edges.iter().filter(|edge| edge.hidden) {
        join(&mut leader, edge.from, edge.to);
    }
    loop {
        let mut graph: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for edge in edges.iter().filter(|edge| !edge.hidden) {
            let (from, to) = (find(&mut leader, edge.from), find(&mut leader, edge.to));
            if from != to {
                graph.entry(from).or_default().push(to);
            }
        }
        let mut merged = false;
        for component in strongly_connected(count, &graph) {
            if let Some((&first, rest)) = component.split_first() {
                for &other in rest {
                    join(&mut leader, first, other);
                    merged = true;
                }
            }
        }
        if !merged {
            break;
        }
    }
    let mut units: BTreeMap<usize, Unit> = BTreeMap::new();
    for index in 0..count {
        let root = find(&mut leader, index);
        units
            .entry(root)
            .or_insert_with(|| Unit {
                members: Vec::new(),
                reasons: Vec::new(),
            })
            .members
            .push(index);
    }
    for edge in edges {
        let root = find(&mut leader, edge.from);
        if root == find(&mut leader, edge.to) {
            if let Some(unit) = units.get_mut(&root) {
                unit.reasons.push(edge.clone());
            }
        }
    }
    let mut units: Vec<Unit> = units.into_values().collect();
    units.sort_by_key(|unit| unit.members.first().copied());
    units
}

/// The group of `index` (union-find with path halving). An index outside
/// `leader` is its own group.
fn find(leader: &mut [usize], mut index: usize) -> usize {
    loop {
        let Some(&parent) = leader.get(index) else {
            return index;
        };
        if parent == index {
            return index;
        }
        let grandparent = leader.get(parent).copied().unwrap_or(parent);
        if let Some(slot) = leader.get_mut(index) {
            *slot = grandparent;
        }
        index = grandparent;
    }
}

fn join(leader: &mut [usize], a: usize, b: usize) {
    let (a, b) = (find(leader, a), find(leader, b));
    // The smaller index leads, so a set keeps its first member's place.
    let (low, high) = if a < b { (a, b) } else { (b, a) };
    if let Some(slot) = leader.get_mut(high) {
        *slot = low;
    }
}

/// The components of more than one node (Tarjan's algorithm, iteratively),
/// among nodes `0..count`.
fn strongly_connected(count: usize, graph: &BTreeMap<usize, Vec<usize>>) -> Vec<Vec<usize>> {
    #[derive(Clone, Copy)]
    struct Node {
        index: Option<usize>,
        low: usize,
        on_stack: bool,
    }
    let mut nodes = vec![
        Node {
            index: None,
            low: 0,
            on_stack: false,
        };
        count
    ];
    let mut stack = Vec::new();
    let mut next = 0usize;
    let mut components = Vec::new();
    for start in 0..count {
        if nodes.get(start).is_none_or(|node| node.index.is_some()) {
            continue;
        }
        // (node, how many of its edges were followed)
        let mut work = vec![(start, 0usize)];
        while let Some((node, followed)) = work.pop() {
            if followed == 0 {
                if let Some(entry) = nodes.get_mut(node) {
                    *entry = Node {
                        index: Some(next),
                        low: next,
                        on_stack: true,
                    };
                }
                next += 1;
                stack.push(node);
            }
            let target = graph.get(&node).and_then(|targets| targets.get(followed));
            if let Some(&target) = target {
                work.push((node, followed + 1));
                match nodes.get(target).copied() {
                    Some(Node { index: None, .. }) => work.push((target, 0)),
                    Some(Node {
                        index: Some(index),
                        on_stack: true,
                        ..
                    }) => lower(&mut nodes, node, index),
                    _ => {}
                }
                continue;
            }
            let Some(Node {
                index: Some(index),
                low,
                ..
            }) = nodes.get(node).copied()
            else {
                continue;
            };
            if let Some(&(parent, _)) = work.last() {
                lower(&mut nodes, parent, low);
            }
            if low == index {
                let mut component = Vec::new();
                while let Some(member) = stack.pop() {
                    if let Some(entry) = nodes.get_mut(member) {
                        entry.on_stack = false;
                    }
                    component.push(member);
                    if member == node {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort_unstable();
                    components.push(component);
                }
            }
        }
    }
    fn lower(nodes: &mut [Node], node: usize, value: usize) {
        if let Some(entry) = nodes.get_mut(node) {
            entry.low = entry.low.min(value);
        }
    }
    components
}

/// What `name` defines and refers to, from one read of its symbol table
/// and relocations; `hard` stays empty (see [`units_of`]).
fn names_of(name: &str, bytes: &[u8]) -> Result<Names, Failure> {
    let elf = match Tables::read(bytes) {
        Ok(elf) => elf,
        // The loader's typed error if it has one: it names what is damaged.
        Err(error) => {
            Object::parse(name, bytes).map_err(|error| Failure::load(&error))?;
            return Err(Failure::message(format!(
                "{name}: not an ELF object: {error}"
            )));
        }
    };
    let mut defines = Vec::new();
    let mut refers = Vec::new();
    for symbol in elf.symbols() {
        let bind = symbol.info >> 4;
        if !matches!(bind, STB_GLOBAL | STB_WEAK | STB_GNU_UNIQUE)
            || matches!(symbol.info & 0xf, STT_FILE | STT_SECTION)
        {
            continue;
        }
        let Some(symbol_name) = elf.name(symbol.name) else {
            continue;
        };
        if symbol_name.is_empty() {
            continue;
        }
        if symbol.shndx == SHN_UNDEF as u16 {
            refers.push(symbol_name.to_owned());
        } else {
            // Hidden and internal names are never exported: only a static
            // link binds them.
            let exported = matches!(symbol.other & 0x3, STV_DEFAULT | STV_PROTECTED);
            defines.push((symbol_name.to_owned(), !exported));
        }
    }
    let (short_references, absolute_32) = short_fields(&elf);
    let loaded_bytes = elf
        .sections
        .iter()
        .filter(|section| section.sh_flags & u64::from(SHF_ALLOC) != 0)
        .fold(0u64, |sum, section| sum.saturating_add(section.sh_size));
    Ok(Names {
        defines,
        refers,
        hard: Vec::new(),
        short_references,
        absolute_32,
        loaded_bytes,
    })
}

/// The parts of an object the survey reads, decoded as they are read:
/// goblin's `Elf::parse` would first copy out every string and relocation
/// of the file (for SQLite, more than all the rest of the survey). ELF64
/// little-endian only, as the loader takes.
struct Tables<'a> {
    machine: u16,
    sections: Vec<SectionHeader>,
    /// The symbol table's entries.
    symbols: &'a [u8],
    /// The index of its first non-local symbol (`sh_info`): locals come
    /// first, and the survey wants none of them.
    first_global: usize,
    /// The symbol table's string table.
    strings: &'a [u8],
    bytes: &'a [u8],
}

/// The fields of an `Elf64_Sym` the survey reads.
struct Symbol {
    name: usize,
    info: u8,
    other: u8,
    shndx: u16,
}

/// `Elf64_Sym` and `Elf64_Rela` are 24 bytes each.
const ENTRY_SIZE: usize = 24;

impl<'a> Tables<'a> {
    fn read(bytes: &'a [u8]) -> goblin::error::Result<Self> {
        let malformed = |what: &str| goblin::error::Error::Malformed(what.to_owned());
        let header = Elf::parse_header(bytes)?;
        let ctx = Ctx::new(header.container()?, header.endianness()?);
        if !ctx.is_big() || !ctx.is_little_endian() {
            return Err(malformed("not a 64-bit little-endian object"));
        }
        let sections = SectionHeader::parse(
            bytes,
            usize::try_from(header.e_shoff).unwrap_or(usize::MAX),
            usize::from(header.e_shnum),
            ctx,
        )?;
        let mut symbols: &[u8] = &[];
        let mut strings: &[u8] = &[];
        let mut first_global = 0;
        if let Some(table) = sections
            .iter()
            .rfind(|section| section.sh_type == SHT_SYMTAB)
        {
            symbols = file_range(bytes, table.sh_offset, table.sh_size)
                .ok_or_else(|| malformed("the symbol table is outside the file"))?;
            first_global = table.sh_info as usize;
            strings = sections
                .get(table.sh_link as usize)
                .and_then(|names| file_range(bytes, names.sh_offset, names.sh_size))
                .ok_or_else(|| malformed("the symbol table's string table is outside the file"))?;
        }
        Ok(Self {
            machine: header.e_machine,
            sections,
            symbols,
            first_global,
            strings,
            bytes,
        })
    }

    /// The non-local symbols (a bad `sh_info` only makes it read more).
    fn symbols(&self) -> impl Iterator<Item = Symbol> + 'a {
        let start = self.first_global.saturating_mul(ENTRY_SIZE);
        let globals = self.symbols.get(start..).unwrap_or(self.symbols);
        globals.chunks_exact(ENTRY_SIZE).map(|entry| Symbol {
            name: word(entry, 0) as usize,
            info: entry.get(4).copied().unwrap_or(0),
            other: entry.get(5).copied().unwrap_or(0),
            shndx: word(entry, 6) as u16,
        })
    }

    fn symbol(&self, index: usize) -> Option<Symbol> {
        let start = index.checked_mul(ENTRY_SIZE)?;
        let entry = self.symbols.get(start..start.checked_add(ENTRY_SIZE)?)?;
        Some(Symbol {
            name: word(entry, 0) as usize,
            info: *entry.get(4)?,
            other: *entry.get(5)?,
            shndx: word(entry, 6) as u16,
        })
    }

    /// `(type, symbol index)` of each entry of a `SHT_RELA` section.
    fn relocations(&self, section: &SectionHeader) -> impl Iterator<Item = (u32, usize)> + 'a {
        file_range(self.bytes, section.sh_offset, section.sh_size)
            .unwrap_or(&[])
            .chunks_exact(ENTRY_SIZE)
            .map(|entry| (word(entry, 8), word(entry, 12) as usize))
    }

    /// The name at `offset` in the symbol string table, if it is there and UTF-8.
    fn name(&self, offset: usize) -> Option<&'a str> {
        let rest = self.strings.get(offset..)?;
        let end = rest.iter().position(|&byte| byte == 0)?;
        std::str::from_utf8(rest.get(..end)?).ok()
    }
}

/// The little-endian `u32` at `offset` of `entry` (a `u16` reads as the
/// low half of one: callers mask), or 0 past the end.
fn word(entry: &[u8], offset: usize) -> u32 {
    let mut bytes = [0u8; 4];
    if let Some(field) = entry.get(offset..offset.saturating_add(4)) {
        bytes.copy_from_slice(field);
    } else if let Some(field) = entry.get(offset..offset.saturating_add(2)) {
        // A `u16` at the end of an entry.
        bytes[..2].copy_from_slice(field);
    }
    u32::from_le_bytes(bytes)
}

fn file_range(bytes: &[u8], offset: u64, size: u64) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(size).ok()?)?;
    bytes.get(start..end)
}

/// An x86-64 object's references to undefined names through 32-bit fields
/// (see [`Names::short_references`]), and whether a section that loads has
/// 32-bit absolute relocations.
fn short_fields(elf: &Tables<'_>) -> (Vec<(String, u32)>, bool) {
    let mut references = Vec::new();
    let mut absolute_32 = false;
    if elf.machine != EM_X86_64 {
        return (references, absolute_32);
    }
    for section in elf
        .sections
        .iter()
        .filter(|section| section.sh_type == SHT_RELA)
    {
        // Debugging sections never load, and their 32-bit offsets bind nothing.
        let loads = elf
            .sections
            .get(section.sh_info as usize)
            .is_some_and(|target| target.sh_flags & u64::from(SHF_ALLOC) != 0);
        for (r_type, r_sym) in elf.relocations(section) {
            if !matches!(r_type, R_X86_64_PC32 | R_X86_64_32 | R_X86_64_32S) {
                continue;
            }
            if loads && r_type != R_X86_64_PC32 {
                absolute_32 = true;
            }
            let Some(symbol) = elf.symbol(r_sym) else {
                continue;
            };
            // A hidden or protected reference (`__dso_handle`) never binds
            // to a shared library.
            let default_visibility = symbol.other & 0x3 == STV_DEFAULT;
            if symbol.shndx != SHN_UNDEF as u16 || r_sym == 0 || !default_visibility {
                continue;
            }
            if let Some(symbol_name) = elf.name(symbol.name) {
                references.push((symbol_name.to_owned(), r_type));
            }
        }
    }
    (references, absolute_32)
}

/// Loads `units` one at a time in the order given. `attempt(unit, late)`
/// loads one (with late binding when `late`) and answers `Ok(Err(error))`
/// when it must wait, because a name it needs at load is not defined yet;
/// a waiting unit is tried again once another has loaded. When none can
/// load, the first waiting unit is attempted once more without late
/// binding, whose error names every missing name, the functions that could
/// have waited too (with `verbose`, every waiting unit's error is printed
/// first). Returns each unit with what its load gave, in load order.
pub fn load_in_order<'u, T>(
    units: &'u [Unit],
    verbose: bool,
    mut attempt: impl FnMut(&'u Unit, bool) -> Result<Result<T, modload::LoadError>, Failure>,
) -> Result<Vec<(&'u Unit, T)>, Failure> {
    let mut loaded = Vec::with_capacity(units.len());
    let mut waiting: Vec<&Unit> = units.iter().collect();
    while !waiting.is_empty() {
        let loaded_before = loaded.len();
        let mut still_waiting: Vec<(&Unit, modload::LoadError)> = Vec::new();
        for unit in waiting {
            match attempt(unit, true)? {
                Ok(value) => loaded.push((unit, value)),
                Err(error) => still_waiting.push((unit, error)),
            }
        }
        if loaded.len() == loaded_before {
            if let Some((unit, error)) = still_waiting.first() {
                if verbose {
                    for (_, error) in &still_waiting {
                        eprintln!("modload: still waiting: {error}");
                    }
                }
                return Err(match attempt(unit, false)? {
                    Err(full) => Failure::load(&full),
                    Ok(_) => Failure::load(error),
                });
            }
        }
        waiting = still_waiting.into_iter().map(|(unit, _)| unit).collect();
    }
    Ok(loaded)
}

/// After every unit has loaded: the names still awaited, which nothing
/// defines, as one message per waiting module (`file: unresolved symbols:
/// ...`, as the loader words it), or `None` if every import was bound.
pub fn still_unresolved(namespace: &Namespace) -> Option<Failure> {
    let awaited = namespace.pending_imports();
    if awaited.is_empty() {
        return None;
    }
    let modules: BTreeMap<modload::ModuleId, Box<str>> = namespace.modules().into_iter().collect();
    let mut by_module: BTreeMap<modload::ModuleId, Vec<&str>> = BTreeMap::new();
    for (name, waiting) in &awaited {
        for module in waiting {
            by_module.entry(*module).or_default().push(name);
        }
    }
    let lines: Vec<String> = by_module
        .iter()
        .map(|(module, names)| {
            let file = modules.get(module).map_or("?", |name| &**name);
            format!("{file}: unresolved symbols: {}", names.join(" "))
        })
        .collect();
    Some(Failure::message(lines.join("; ")))
}

/// The name a set loads under: its first member's, and how many more.
pub fn set_name(members: &[(&str, &[u8])]) -> String {
    match members {
        [] => String::from("(empty set)"),
        [(first, _)] => (*first).to_owned(),
        [(first, _), rest @ ..] => format!("{first}+{}", rest.len()),
    }
}

/// One line per set, for `-v`: its members and the references that tie them.
pub fn describe(unit: &Unit, objects: &[(String, crate::ObjectBytes)]) -> String {
    let name = |index: usize| objects.get(index).map_or("?", |(name, _)| name.as_str());
    let members: Vec<&str> = unit.members.iter().map(|&index| name(index)).collect();
    let mut reasons: Vec<String> = unit
        .reasons
        .iter()
        .map(|reason| {
            let how = if reason.hidden {
                "hidden"
            } else {
                "needed at load"
            };
            format!(
                "{} -> {} ({how}: {})",
                name(reason.from),
                name(reason.to),
                reason.symbol
            )
        })
        .collect();
    reasons.sort();
    reasons.dedup();
    let shown = reasons.len().min(8);
    let more = reasons.len() - shown;
    let mut line = format!(
        "modload: loading {} as one module set: {}",
        members.join(" "),
        reasons.get(..shown).unwrap_or_default().join("; ")
    );
    if more > 0 {
        line.push_str(&format!("; and {more} more"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(from: usize, to: usize, hidden: bool) -> Reason {
        Reason {
            from,
            to,
            symbol: format!("s{from}_{to}"),
            hidden,
        }
    }

    fn members(units: &[Unit]) -> Vec<Vec<usize>> {
        units.iter().map(|unit| unit.members.clone()).collect()
    }

    #[test]
    fn a_chain_of_hard_references_needs_no_set() {
        let units = group(3, &[edge(0, 1, false), edge(1, 2, false)]);
        assert_eq!(members(&units), [vec![0], vec![1], vec![2]]);
    }

    #[test]
    fn a_hard_cycle_is_one_set_and_only_its_members() {
        let units = group(
            4,
            &[edge(0, 2, false), edge(2, 0, false), edge(1, 3, false)],
        );
        assert_eq!(members(&units), [vec![0, 2], vec![1], vec![3]]);
        assert_eq!(units[0].reasons.len(), 2);
    }

    #[test]
    fn hidden_names_join_and_joining_can_close_a_cycle() {
        // 0 hides what 1 uses; 1 -> 2 and 2 -> 0 are hard: once 0 and 1 are
        // one group, 2 closes a cycle with it.
        let units = group(4, &[edge(1, 0, true), edge(1, 2, false), edge(2, 0, false)]);
        assert_eq!(members(&units), [vec![0, 1, 2], vec![3]]);
    }

    #[test]
    fn a_long_cycle_is_found_whatever_the_order() {
        let edges: Vec<Reason> = (0..50)
            .map(|i| edge((i * 7) % 50, (i * 7 + 7) % 50, false))
            .collect();
        let units = group(50, &edges);
        assert_eq!(units.len(), 1);
        assert_eq!(units[0].members.len(), 50);
    }
}

#[cfg(test)]
mod survey_tests {
    use super::*;

    /// Compiles `source` with gcc and `flags`, and surveys the object.
    fn survey_of(name: &str, source: &str, flags: &[&str]) -> Names {
        let dir =
            std::env::temp_dir().join(format!("modload-survey-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let c = dir.join("a.c");
        let object = dir.join("a.o");
        std::fs::write(&c, source).expect("write source");
        let status = std::process::Command::new("gcc")
            .args(flags)
            .args(["-O2", "-c", "-o"])
            .arg(&object)
            .arg(&c)
            .status()
            .expect("gcc");
        assert!(status.success());
        let bytes = std::fs::read(&object).expect("read object");
        std::fs::remove_dir_all(&dir).expect("clean up");
        names_of(name, &bytes).expect("survey")
    }

    const SOURCE: &str = "extern int shared; extern void called(void);\n\
        __attribute__((visibility(\"hidden\"))) int secret = 1;\n\
        int exported(void) { called(); return shared + secret; }\n\
        long address(void) { return (long)&shared; }\n";

    #[test]
    fn reads_names_short_references_and_absolute_fields() {
        let names = survey_of("nopic", SOURCE, &["-fno-pic", "-g"]);
        let mut defines = names.defines.clone();
        defines.sort();
        assert_eq!(
            defines,
            [
                (String::from("address"), false),
                (String::from("exported"), false),
                (String::from("secret"), true)
            ]
        );
        let mut refers = names.refers.clone();
        refers.sort();
        assert_eq!(refers, ["called", "shared"]);
        assert!(names.absolute_32);
        assert!(names
            .short_references
            .iter()
            .any(|(name, r_type)| name == "shared" && *r_type == R_X86_64_PC32));
        assert!(names
            .short_references
            .iter()
            .any(|(name, r_type)| name == "shared" && *r_type != R_X86_64_PC32));
        assert!(names.hard.is_empty());
        assert!(names.loaded_bytes > 0);
    }

    #[test]
    fn debugging_sections_do_not_make_code_absolute() {
        // -g adds R_X86_64_32 relocations to .debug_* sections, which never load.
        let names = survey_of("pic", SOURCE, &["-fPIC", "-g"]);
        assert!(!names.absolute_32);
        assert!(names
            .short_references
            .iter()
            .all(|(name, _)| name != "secret"));
    }

    #[test]
    fn only_objects_a_cycle_of_references_joins_are_planned() {
        let sources = [
            (
                "x",
                "extern int y_value; int x_value = 1; int x(void) { return y_value; }",
            ),
            (
                "y",
                "extern int x_value; int y_value = 2; int y(void) { return x_value; }",
            ),
            ("z", "extern int x_value; int z(void) { return x_value; }"),
        ];
        let dir = std::env::temp_dir().join(format!("modload-hard-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut objects = Vec::new();
        for (name, source) in sources {
            let c = dir.join(format!("{name}.c"));
            let object = dir.join(format!("{name}.o"));
            std::fs::write(&c, source).expect("write source");
            let status = std::process::Command::new("gcc")
                .args(["-O2", "-fno-pic", "-c", "-o"])
                .arg(&object)
                .arg(&c)
                .status()
                .expect("gcc");
            assert!(status.success());
            let bytes = crate::ObjectBytes::read(&object).expect("read object");
            objects.push((name.to_owned(), bytes));
        }
        std::fs::remove_dir_all(&dir).expect("clean up");
        let mut names = survey(&objects).expect("survey");
        let units = units_of(&mut names, &objects).expect("plans");
        assert_eq!(names[0].hard, ["y_value"]);
        assert_eq!(names[1].hard, ["x_value"]);
        // z's reference cannot wait either, but no cycle can pass through z.
        assert!(names[2].hard.is_empty());
        assert_eq!(members_of(&units), [vec![0, 1], vec![2]]);
    }

    fn members_of(units: &[Unit]) -> Vec<Vec<usize>> {
        units.iter().map(|unit| unit.members.clone()).collect()
    }

    #[test]
    fn damage_gets_the_loaders_error() {
        let error = names_of("junk.o", b"not an object at all")
            .err()
            .expect("refused");
        assert!(error.message.contains("junk.o"), "{}", error.message);
    }
}
