//! The address map a module is published with: each placed section's load
//! and target addresses, and the symbols in them.

use crate::link::Targets;
use crate::memory::ModuleMemory;
use crate::namespace::{AddressMap, AddressMapBuilder};
use crate::object::{Object, STT_FILE, STT_SECTION};
use crate::plan::{Layout, Placement};

/// `STT_TLS`: a thread-local's value is an offset into the TLS block, not
/// an address in the section.
const STT_TLS: u8 = 6;

/// The map of the sections `layout` placed: every symbol of the object
/// that names a place in one (locals too), but not mapping symbols
/// (`$x`, `$d`) or local labels (`.L`), which are not names a reader
/// looks for.
pub(super) fn address_map(
    object: &Object<'_>,
    layout: &Layout<'_>,
    targets: &Targets,
    memory: &ModuleMemory,
) -> AddressMap {
    let loaded = layout.placements.iter().flatten().count();
    let mut map = AddressMapBuilder::with_capacity(loaded.saturating_add(3), object.symbols.len());
    let load = |placement: &Placement| memory.target(placement.kind.segment(), placement.offset);
    // Position in the map of each section index, where placed.
    let mut positions = alloc::vec![None; layout.placements.len()];
    for (index, placement) in layout.placements.iter().enumerate() {
        let (Some(placement), Some(section)) = (placement, object.sections.get(index)) else {
            continue;
        };
        let target = targets.sections.get(index).copied().unwrap_or(0);
        let header =
            member_index(object, index).map(|(member, index)| (member, index, section.size));
        let position = map.section(
            section.name,
            header,
            load(placement),
            target,
            placement.size,
        );
        if let Some(slot) = positions.get_mut(index) {
            *slot = Some(position);
        }
    }
    let areas = [
        (".got", layout.got, targets.got),
        (".stubs", layout.stubs, targets.stubs),
        ("COMMON", layout.common, targets.common),
    ];
    for (name, placement, target) in areas {
        if placement.size > 0 {
            map.section(name, None, load(&placement), target, placement.size);
        }
    }
    for symbol in &object.symbols {
        if matches!(symbol.kind, STT_SECTION | STT_FILE | STT_TLS)
            || symbol.name.is_empty()
            || symbol.name.starts_with('$')
            || symbol.name.starts_with(".L")
        {
            continue;
        }
        let Some(Some(position)) = positions.get(symbol.shndx as usize) else {
            continue;
        };
        map.symbol(*position, symbol.name, symbol.value, symbol.size);
    }
    map.finish()
}

/// `(member, index in the member)` of section `index` of a joined set, or
/// `(0, index)` of a single object.
fn member_index(object: &Object<'_>, index: usize) -> Option<(u32, u32)> {
    if object.members.is_empty() {
        return Some((0, u32::try_from(index).ok()?));
    }
    let (member, range) = object
        .members
        .iter()
        .enumerate()
        .find(|(_, member)| member.sections.contains(&index))
        .map(|(member, found)| (member, found.sections.clone()))?;
    Some((
        u32::try_from(member).ok()?,
        u32::try_from(index.checked_sub(range.start)?).ok()?,
    ))
}
