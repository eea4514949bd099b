//! Which sections load, what kind each is, and which COMDAT copies are
//! left out because a loaded module has the group already.

use alloc::vec;
use alloc::vec::Vec;

use goblin::elf::section_header::{
    SHF_ALLOC, SHF_EXECINSTR, SHF_TLS, SHF_WRITE, SHT_FINI_ARRAY, SHT_GROUP, SHT_INIT_ARRAY,
    SHT_NOBITS, SHT_NOTE, SHT_PREINIT_ARRAY,
};

use crate::error::SectionProblem;
use crate::kinds::SectionKind;
use crate::object::{Object, Section};
use crate::plan::Existing;

/// `SHT_X86_64_UNWIND`, the type gas gives `.eh_frame` on x86-64.
pub(crate) const SHT_X86_64_UNWIND: u32 = 0x7000_0001;
/// Sections are loaded when allocated at run time. Notes are dropped, and
/// so is `.eh_frame` unless `keep_unwind` asks for it (see
/// [`Loader::keep_unwind_tables`](crate::Loader::keep_unwind_tables)): a
/// kernel has no unwinder to read it, and modules are built with
/// `panic=abort`/`-fno-asynchronous-unwind-tables`, so this saves its memory.
#[inline]
pub(crate) fn is_loaded(section: &Section<'_>, keep_unwind: bool) -> bool {
    section.flags & u64::from(SHF_ALLOC) != 0
        && section.sh_type != SHT_NOTE
        && section.sh_type != SHT_GROUP
        && (keep_unwind || !is_unwind_table(section))
}

/// Whether `section` is a table of call frame information (`.eh_frame`).
pub(crate) fn is_unwind_table(section: &Section<'_>) -> bool {
    section.sh_type == SHT_X86_64_UNWIND || section.name == ".eh_frame"
}

/// Zero bytes after each unwind table: the terminator (a zero length) that
/// an unwinder's `__register_frame` reads up to, which a linker would add.
pub(crate) const UNWIND_TERMINATOR: u64 = 4;

#[inline]
pub(crate) fn classify(section: &Section<'_>) -> Result<SectionKind, SectionProblem> {
    let flag = |bit: u32| section.flags & u64::from(bit) != 0;
    if flag(SHF_TLS) {
        return Err(SectionProblem::ThreadLocal);
    }
    Ok(match (flag(SHF_WRITE), flag(SHF_EXECINSTR)) {
        (true, true) => return Err(SectionProblem::WritableAndExecutable),
        (false, true) => SectionKind::Text,
        _ if section.sh_type == SHT_NOBITS => SectionKind::Bss,
        _ if matches!(
            section.sh_type,
            SHT_INIT_ARRAY | SHT_FINI_ARRAY | SHT_PREINIT_ARRAY
        ) =>
        {
            SectionKind::ReadOnly
        }
        (true, false) if section.name.starts_with(".data.rel.ro") => SectionKind::ReadOnly,
        (true, false) => SectionKind::Data,
        (false, false) => SectionKind::ReadOnly,
    })
}

/// `.init_array.NNNNN` runs by ascending NNNNN, before plain `.init_array`
/// (which gcc uses for the default priority, 65535).
#[inline]
pub(crate) fn array_priority(name: &str) -> u32 {
    name.rsplit_once('.')
        .and_then(|(_, digits)| digits.parse::<u32>().ok())
        .unwrap_or(65_536)
}

/// Sections of COMDAT groups that an earlier module already loaded, and the
/// signatures of the groups this module will load itself.
/// Per section: the signature of the COMDAT group that discards it, if an
/// earlier module loaded that group.
pub(crate) type Discarded<'a> = Vec<Option<&'a str>>;

#[inline]
pub(crate) fn discarded_sections<'a>(
    object: &Object<'a>,
    namespace: &impl Existing,
) -> (Discarded<'a>, Vec<&'a str>) {
    let mut discarded = vec![None; object.sections.len()];
    let mut owned = Vec::new();
    for group in object.groups.iter().filter(|group| group.comdat) {
        if namespace.has_comdat(group.signature) {
            for &member in &group.members {
                if let Some(flag) = discarded.get_mut(member as usize) {
                    *flag = Some(group.signature);
                }
            }
        } else {
            owned.push(group.signature);
        }
    }
    (discarded, owned)
}
