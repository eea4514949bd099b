//! `modload link`: link objects for target addresses, on any machine the
//! loader supports, without running them. Each module's relocated bytes go to
//! a file and the layout (bases, areas, exported symbols) to `layout.json`, so
//! another tool can copy the images to their addresses or check them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use goblin::elf::sym::{STB_GLOBAL, STB_GNU_UNIQUE, STB_WEAK, STT_FILE, STT_SECTION};
use goblin::elf::Elf;
use modload::{
    ErrorKind, LoadError, Loader, Machine, Namespace, NoProtection, Object, PlacedPiece, Region,
    SectionKind, VirtAddr,
};

use crate::args::LinkArgs;
use crate::json::{json_string, machine_name};
use crate::Failure;

/// `STV_DEFAULT` and `STV_PROTECTED`: the visibilities a module exports.
const EXPORTED_VISIBILITIES: [u8; 2] = [0, 3];

/// One linked module, as `layout.json` describes it.
struct LinkedModule {
    name: String,
    input: String,
    file: String,
    base: u64,
    size: u64,
    alignment: u64,
    got_slots: u32,
    stub_slots: u32,
    stubs_used: u32,
    relocations: u64,
    pieces: Vec<PlacedPiece>,
}

/// Runs `modload link`.
///
/// Objects load one at a time in the order given, with late binding: a call
/// to a function of a later object waits in its slot and is bound when that
/// object loads, so the images are written only once every object is in.
/// Objects tied by references that cannot wait load as one module set
/// ([`crate::order::units`]). A name still awaited at the end is defined
/// nowhere, and the link fails.
pub fn command(args: &LinkArgs) -> Result<(), Failure> {
    let inputs = crate::read_objects(&args.objects)?;
    std::fs::create_dir_all(&args.output)
        .map_err(|error| Failure::io(&args.output.to_string_lossy(), &error))?;

    // Late binding keeps the namespace's address in each lazy entry: it
    // lives until the process ends.
    let namespace: &'static Namespace = Box::leak(Box::new(Namespace::new()));
    for (name, address) in &args.symbols {
        namespace
            .add_host_export(name, VirtAddr::new(*address))
            .map_err(|_| Failure::usage(format!("--sym `{name}` is given twice")))?;
    }
    let mut machine = None;
    for (name, bytes) in &inputs {
        let object_machine = Object::parse(name, bytes)
            .map_err(|error| Failure::load(&error))?
            .machine();
        match machine {
            None => machine = Some(object_machine),
            Some(first) if first != object_machine => {
                return Err(Failure::message(format!(
                    "{name}: machine {} differs from the first object's, {}",
                    machine_name(object_machine),
                    machine_name(first)
                )))
            }
            Some(_) => {}
        }
    }
    let units = crate::order::units(&inputs)?;
    if args.verbose {
        for unit in units.iter().filter(|unit| unit.members.len() > 1) {
            eprintln!("{}", crate::order::describe(unit, &inputs));
        }
    }
    let mut next = args.at;
    let mut count = 0usize;
    let linked = crate::order::load_in_order(&units, args.verbose, |unit, late| {
        let linked = link_unit(namespace, count, unit, &inputs, next, args, late)?;
        if let Ok(module) = &linked {
            next = module
                .module
                .base
                .checked_add(module.module.size)
                .ok_or_else(|| {
                    Failure::message(format!(
                        "{}: module at {:#x} ends past the address space",
                        module.module.name, module.module.base
                    ))
                })?;
            count += 1;
        }
        Ok(linked)
    })?;
    if let Some(failure) = crate::order::still_unresolved(namespace) {
        return Err(failure);
    }
    let mut modules = Vec::with_capacity(linked.len());
    for (_, module) in linked {
        let destination = args.output.join(&module.module.file);
        std::fs::write(&destination, module.bytes())
            .map_err(|error| Failure::io(&destination.to_string_lossy(), &error))?;
        modules.push(module.module);
    }

    let symbols = exported_symbols(namespace, &inputs)?;
    let machine = machine.unwrap_or(Machine::X86_64);
    let json = layout_json(machine, args.at, &modules, &symbols);
    let layout = args.output.join("layout.json");
    std::fs::write(&layout, json).map_err(|error| Failure::io(&layout.to_string_lossy(), &error))
}

/// A module linked and published, whose image is written at the end: its
/// bytes stay in its region, where later objects may still bind its slots.
struct Linked {
    module: LinkedModule,
    region: &'static Region,
    /// The image's offset in the region and its length.
    start: u64,
    len: usize,
}

impl Linked {
    fn bytes(&self) -> &[u8] {
        let start = self.region.start().as_u64().saturating_add(self.start);
        // SAFETY: the module's reservation lies in `region`, which is mapped
        // read-write for the rest of the process (nothing is protected with
        // `NoProtection`) and which nothing writes while the images are saved.
        unsafe { std::slice::from_raw_parts(start as usize as *const u8, self.len) }
    }
}

/// Loads one unit (an object, or a set as one module) for the first address
/// at or after `next` that suits its alignment (exactly `--at` for the
/// first), and publishes its symbols for the units after it. The inner
/// error is a load that must wait for another unit. `late`: with late
/// binding, as every unit links; without, to name every missing name.
fn link_unit(
    namespace: &'static Namespace,
    index: usize,
    unit: &crate::order::Unit,
    inputs: &[(String, crate::ObjectBytes)],
    next: u64,
    args: &LinkArgs,
    late: bool,
) -> Result<Result<Linked, LoadError>, Failure> {
    let load = |error: LoadError| Failure::load(&error);
    let members: Vec<(&str, &[u8])> = unit
        .members
        .iter()
        .filter_map(|&member| inputs.get(member))
        .map(|(name, bytes)| (name.as_str(), bytes.as_slice()))
        .collect();
    let name = crate::order::set_name(&members);
    let parse = |loader: &Loader<'static>| -> Result<Object<'_>, LoadError> {
        match members.as_slice() {
            [(name, bytes)] => loader.parse(name, bytes),
            _ => loader.parse_set(&name, &members),
        }
    };
    // Sizing first: the region must exist before the plan that fills it.
    let with_late = |loader: Loader<'static>| if late { loader.late_binding() } else { loader };
    let sizing = with_late(Loader::new(
        namespace,
        crate::plan::scratch_region(args.page_size),
        &NoProtection,
    ));
    let plan = match sizing.plan(parse(&sizing).map_err(load)?) {
        Ok(planned) => planned.plan().clone(),
        Err(error) if matches!(error.kind, ErrorKind::Unresolved { .. }) => return Ok(Err(error)),
        Err(error) => return Err(load(error)),
    };
    let alignment = plan.alignment();
    let base = if index == 0 {
        if !alignment.is_aligned(next) {
            return Err(Failure::message(format!(
                "{name}: --at {next:#x} is not a multiple of the module's alignment, {:#x}",
                alignment.bytes()
            )));
        }
        next
    } else {
        alignment.align_up(next).ok_or_else(|| {
            Failure::message(format!("{name}: no aligned address after {next:#x}"))
        })?
    };
    let memory = plan
        .size()
        .checked_add(alignment.bytes())
        .and_then(|bytes| usize::try_from(bytes).ok())
        .ok_or_else(|| Failure::message(format!("{name}: module too large for this host")))?;
    // On the heap, in the target's pages, whatever this host's are: nothing
    // is protected here, the bytes are written out for the target.
    let region = crate::plan::heap_region(memory, args.page_size)?;

    let loader = with_late(Loader::new(namespace, region, &NoProtection));
    let planned = loader.plan(parse(&loader).map_err(load)?).map_err(load)?;
    let got_slots = planned.plan().got_slots();
    let stub_slots = planned.plan().stub_slots();
    let size = planned.plan().size();
    let mut placed = planned.allocate().map_err(load)?;
    placed.map_module(VirtAddr::new(base)).map_err(load)?;
    let pieces = placed.pieces();
    let start = placed
        .load_address()
        .as_u64()
        .saturating_sub(region.start().as_u64());
    let finalized = placed.relocate().map_err(load)?.finalize().map_err(load)?;
    let report = finalized.report();
    let len = finalized.bytes().len();

    let first = unit
        .members
        .first()
        .and_then(|&member| args.objects.get(member));
    let stem = first.and_then(|path| path.file_stem()).map_or_else(
        || format!("module{index}"),
        |stem| stem.to_string_lossy().into_owned(),
    );
    let file = format!("{index}-{stem}.bin");
    let input = unit
        .members
        .iter()
        .filter_map(|&member| args.objects.get(member))
        .map(|path| path.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    // Published without running anything: the code is for another address.
    finalized.publish().map_err(load)?;
    Ok(Ok(Linked {
        module: LinkedModule {
            name: stem,
            input,
            file,
            base,
            size,
            alignment: alignment.bytes(),
            got_slots,
            stub_slots,
            stubs_used: report.stubs_used,
            relocations: report.relocations_applied,
            pieces,
        },
        region,
        start,
        len,
    }))
}

/// Every name the modules export, with the address the namespace resolves it
/// to now (the first definition wins, as it does for later modules).
fn exported_symbols(
    namespace: &Namespace,
    inputs: &[(String, crate::ObjectBytes)],
) -> Result<BTreeMap<String, u64>, Failure> {
    let mut symbols = BTreeMap::new();
    for (name, bytes) in inputs {
        // The loader parsed the same bytes already, so this only fails if
        // goblin disagrees with itself; report it like a load error anyway.
        let elf =
            Elf::parse(bytes).map_err(|error| Failure::message(format!("{name}: {error}")))?;
        for symbol in elf.syms.iter() {
            let exported = matches!(symbol.st_bind(), STB_GLOBAL | STB_WEAK | STB_GNU_UNIQUE)
                && symbol.st_shndx != 0
                && !matches!(symbol.st_type(), STT_SECTION | STT_FILE)
                && EXPORTED_VISIBILITIES.contains(&symbol.st_visibility());
            let Some(symbol_name) = elf.strtab.get_at(symbol.st_name) else {
                continue;
            };
            if !exported || symbol_name.is_empty() || symbols.contains_key(symbol_name) {
                continue;
            }
            if let Some(address) = namespace.lookup(symbol_name) {
                symbols.insert(symbol_name.to_owned(), address.as_u64());
            }
        }
    }
    Ok(symbols)
}

/// The name `layout.json` gives a kind.
fn kind_name(kind: SectionKind) -> &'static str {
    match kind {
        SectionKind::Text => "text",
        SectionKind::Stubs => "stubs",
        SectionKind::ReadOnly => "rodata",
        SectionKind::Got => "got",
        SectionKind::Data => "data",
        SectionKind::Bss => "bss",
    }
}

/// Addresses are hex strings (JSON numbers lose precision above 2^53); sizes
/// and offsets are numbers. One object per line keeps diffs and greps easy.
fn layout_json(
    machine: Machine,
    at: u64,
    modules: &[LinkedModule],
    symbols: &BTreeMap<String, u64>,
) -> String {
    // `write!` to a String cannot fail, so its results are ignored below.
    let mut out = String::from("{");
    let _ = write!(
        out,
        "\"machine\":{},\"at\":\"{at:#x}\",\n\"modules\":[",
        json_string(machine_name(machine))
    );
    for (index, module) in modules.iter().enumerate() {
        let _ = write!(
            out,
            "{}\n {{\"index\":{index},\"name\":{},\"input\":{},\"file\":{},\"base\":\"{:#x}\",\
             \"size\":{},\"alignment\":{},\"got_slots\":{},\"stub_slots\":{},\
             \"stubs_used\":{},\"relocations\":{}}}",
            if index == 0 { "" } else { "," },
            json_string(&module.name),
            json_string(&module.input),
            json_string(&module.file),
            module.base,
            module.size,
            module.alignment,
            module.got_slots,
            module.stub_slots,
            module.stubs_used,
            module.relocations
        );
    }
    out.push_str("],\n\"areas\":[");
    let mut first = true;
    for (index, module) in modules.iter().enumerate() {
        let mut pieces: Vec<&PlacedPiece> = module.pieces.iter().collect();
        pieces.sort_by_key(|piece| (piece.target.as_u64(), piece.offset));
        for piece in pieces {
            let section = piece
                .section
                .map_or_else(|| String::from("null"), |section| section.to_string());
            let _ = write!(
                out,
                "{}\n {{\"module\":{index},\"section\":{section},\"name\":{},\"kind\":\"{}\",\
                 \"address\":\"{:#x}\",\"size\":{},\"file\":{},\"offset\":{}}}",
                if first { "" } else { "," },
                json_string(&piece.name),
                kind_name(piece.kind),
                piece.target.as_u64(),
                piece.size,
                json_string(&module.file),
                piece.offset
            );
            first = false;
        }
    }
    out.push_str("],\n\"symbols\":{");
    for (index, (name, address)) in symbols.iter().enumerate() {
        let _ = write!(
            out,
            "{}\n {}:\"{address:#x}\"",
            if index == 0 { "" } else { "," },
            json_string(name)
        );
    }
    out.push_str("}}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_json() {
        let modules = [LinkedModule {
            name: "m\"1".into(),
            input: "dir/m\"1.o".into(),
            file: "0-m\"1.bin".into(),
            base: 0xffff_ffff_8000_0000,
            size: 8192,
            alignment: 4096,
            got_slots: 1,
            stub_slots: 2,
            stubs_used: 0,
            relocations: 3,
            pieces: vec![PlacedPiece {
                section: None,
                name: ".got".into(),
                kind: SectionKind::Got,
                offset: 4096,
                size: 8,
                target: VirtAddr::new(0xffff_ffff_8000_1000),
            }],
        }];
        let symbols = BTreeMap::from([("f".to_owned(), 0xffff_ffff_8000_0010)]);
        let json = layout_json(Machine::AArch64, 0xffff_ffff_8000_0000, &modules, &symbols);
        assert!(json.starts_with("{\"machine\":\"aarch64\",\"at\":\"0xffffffff80000000\""));
        assert!(json.contains("\"name\":\"m\\\"1\""));
        assert!(json.contains(
            "{\"module\":0,\"section\":null,\"name\":\".got\",\"kind\":\"got\",\
             \"address\":\"0xffffffff80001000\",\"size\":8,\"file\":\"0-m\\\"1.bin\",\"offset\":4096}"
        ));
        assert!(json.contains("\"f\":\"0xffffffff80000010\""));
        assert!(json.trim_end().ends_with('}'));
    }
}
