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
    let load = |placement: &Placement| memory.target(placement.kind.segment(), placement.offset);
    // Position in the map of each section index, where placed and not empty.
    let mut positions = alloc::vec![None; layout.placements.len()];
    let loaded = layout.placements.iter().flatten().count();
    let mut map = AddressMapBuilder::with_capacity(loaded.saturating_add(3));
    // At most every symbol, with names from the string table (a joined
    // set's names are in its members' tables: its names grow instead), and
    // room for the sections' names.
    let section_names = loaded.saturating_add(3).saturating_mul(16);
    map.reserve_symbols(
        object.symbols.len(),
        object.strings.len().saturating_add(section_names),
    );
    for (index, placement) in layout.placements.iter().enumerate() {
        let (Some(placement), Some(section)) = (placement, object.sections.get(index)) else {
            continue;
        };
        let target = targets.sections.get(index).copied().unwrap_or(0);
        let header =
            member_index(object, index).map(|(member, index)| (member, index, section.size));
        let segment = placement.kind.segment();
        let position = map.section(
            section.name,
            header,
            segment,
            (load(placement), target, placement.size),
        );
        if let Some(slot) = positions.get_mut(index) {
            *slot = position;
        }
    }
    for (name, placement, target) in super::loader_areas(layout, targets) {
        let segment = placement.kind.segment();
        map.section(
            name,
            None,
            segment,
            (load(&placement), target, placement.size),
        );
    }
    for symbol in &object.symbols {
        let Some(position) = positions.get(symbol.shndx as usize).copied().flatten() else {
            continue;
        };
        let wanted = !matches!(symbol.kind, STT_SECTION | STT_FILE | STT_TLS)
            && !symbol.name.is_empty()
            && !symbol.name.starts_with('$')
            && !symbol.name.starts_with(".L");
        if wanted {
            map.symbol(position, symbol.name, symbol.value, symbol.size);
        }
    }
    map.finish()
}

/// `(member, index in the member)` of section `index` of a joined set, or
/// `(0, index)` of a single object.
fn member_index(object: &Object<'_>, index: usize) -> Option<(u32, u32)> {
    if object.members.is_empty() {
        return Some((0, u32::try_from(index).ok()?));
    }
    let (position, member) = object.member_of_section(index)?;
    Some((
        u32::try_from(position).ok()?,
        u32::try_from(index.checked_sub(member.sections.start)?).ok()?,
    ))
}
