//! Module sets: several objects joined into one, as `ld -r` would join them,
//! so they load as one module (one plan, one reservation, one unload) and
//! bind to each other as in a static link, cycles included.
//!
//! The joined [`Object`] borrows every member's bytes as the members did:
//! sections, symbols and relocation sections are appended member after
//! member, with section indices offset per member and relocation entries
//! reading their symbol index through a per-section base
//! ([`RelocationSection::symbol_base`]). Then each global name is settled
//! once for the whole set:
//!
//! - a name one member references and another defines binds to that
//!   definition: the reference's record becomes a copy of the definition's,
//!   so planning and relocation see it defined here;
//! - a strong definition wins over `COMMON`, which wins over weak ones (the
//!   first weak one otherwise); two strong ones are [`ErrorKind::DuplicateInSet`];
//! - several `COMMON` symbols of one name become one zeroed section of the
//!   largest size and alignment;
//! - of COMDAT groups with one signature, the first member's is kept and
//!   the others' sections are not loaded; names they defined bind to the
//!   kept copy.
//!
//! A losing definition's record becomes a copy too, so the namespace sees
//! each name defined once. A copy is local, and so private to the set,
//! unless the winner could still yield to (or be discarded in favour of) a
//! definition outside the set when the set is planned: a weak exported
//! definition, or one in a COMDAT group. Its copies then stay global with
//! the winner's binding, so that planning binds them exactly as it binds
//! the winner (copies of a strong COMDAT definition are hidden).

use alloc::boxed::Box;
use alloc::collections::BTreeSet;
use alloc::vec::Vec;
use core::ops::Range;

use goblin::elf::section_header::{
    SHF_ALLOC, SHF_INFO_LINK, SHF_WRITE, SHT_NOBITS, SHT_REL, SHT_RELA,
};

use crate::addr::Alignment;
use crate::arch::{RelocationProblem, RelocationType};
use crate::error::{ErrorKind, LoadError, RelocationFailure, SymbolProblem};
use crate::kinds::MAX_ALIGNMENT;
use crate::limits::{Limit, Limits};
use crate::names::EMPTY_NAME_HASH;
use crate::object::{
    Object, RelocationSection, Section, Symbol, SHN_COMMON, SHN_LORESERVE, SHN_UNDEF, STB_GLOBAL,
    STB_LOCAL, STB_WEAK, STT_FILE, STT_SECTION, STV_HIDDEN,
};

/// One member of a joined object: its name and where its sections and
/// symbols are in the set's tables (each range starts with the member's
/// null entry, so a member's own index is the set's minus the start).
#[derive(Clone, Debug)]
pub(crate) struct Member {
    pub name: Box<str>,
    pub sections: Range<usize>,
    pub symbols: Range<usize>,
}

/// The name of the zeroed section that holds a `COMMON` symbol several
/// members share.
const COMMON_SECTION: &str = "COMMON";

impl<'a> Object<'a> {
    /// Joins `members` into one object named `name`, as `ld -r` would, with
    /// the default [`Limits`]. See [`Object::join_with_limits`].
    pub fn join(name: &str, members: Vec<Object<'a>>) -> Result<Object<'a>, LoadError> {
        Self::join_with_limits(name, members, &Limits::DEFAULT)
    }

    /// Joins `members` into one object named `name`, as `ld -r` would: it
    /// plans, loads and unloads as one module, and references between its
    /// members bind as in a static link, cycles included (see the module
    /// documentation of `join.rs` for the rules). The section, symbol and
    /// relocation counts of the set are held to `limits`; [`Loader::plan`](crate::Loader::plan)
    /// holds it to the loader's own again.
    ///
    /// Sections and symbols keep their members' order, so a section's
    /// index in the set (as [`Placed::map_section`](crate::Placed::map_section)
    /// takes it) is its index in its member plus the section count of the
    /// members before it. Errors about a member's section or symbol name
    /// the member ([`LoadError::member`]) and give the member's own index.
    ///
    /// Every member must be for the same machine
    /// ([`ErrorKind::MixedMachines`]). When a loader requires signatures,
    /// a set is trusted if every member was checked by [`Loader::parse`](crate::Loader::parse)
    /// with a key the loader trusts.
    pub fn join_with_limits(
        name: &str,
        members: Vec<Object<'a>>,
        limits: &Limits,
    ) -> Result<Object<'a>, LoadError> {
        let fail = |kind| LoadError::new(name, kind);
        let Some(first) = members.first() else {
            return Err(fail(ErrorKind::EmptySet));
        };
        let machine = first.machine;
        if let Some(other) = members.iter().find(|member| member.machine != machine) {
            return Err(in_member(
                name,
                other,
                ErrorKind::MixedMachines {
                    set: machine.e_machine(),
                    member: other.machine.e_machine(),
                },
            ));
        }
        let total = |count: fn(&Object<'a>) -> usize| {
            members
                .iter()
                .map(count)
                .fold(0usize, usize::saturating_add)
        };
        let section_count = total(|member| member.sections.len());
        let symbol_count = total(|member| member.symbols.len());
        let relocation_sections = total(|member| member.relocations.len());
        let relocation_count = total(|member| {
            member
                .relocations
                .iter()
                .map(RelocationSection::len)
                .fold(0usize, usize::saturating_add)
        });
        limits
            .check(Limit::Sections, section_count as u64)
            .map_err(|exceeded| fail(exceeded.into()))?;
        limits
            .check(Limit::Symbols, symbol_count as u64)
            .map_err(|exceeded| fail(exceeded.into()))?;
        limits
            .check(Limit::Relocations, relocation_count as u64)
            .map_err(|exceeded| fail(exceeded.into()))?;
        // Section indices at and above SHN_LORESERVE mean something else.
        if section_count > SHN_LORESERVE as usize {
            return Err(fail(ErrorKind::LimitExceeded {
                limit: Limit::Sections,
                value: section_count as u64,
                max: u64::from(SHN_LORESERVE),
            }));
        }
        // Symbol indices are 32 bits in a relocation entry.
        if u32::try_from(symbol_count).is_err() {
            return Err(fail(ErrorKind::LimitExceeded {
                limit: Limit::Symbols,
                value: symbol_count as u64,
                max: u64::from(u32::MAX),
            }));
        }

        let mut set = Joined {
            sections: Vec::with_capacity(section_count),
            symbols: Vec::with_capacity(symbol_count),
            relocations: Vec::with_capacity(relocation_sections),
            groups: Vec::new(),
            members: Vec::with_capacity(members.len()),
            discarded: Vec::with_capacity(section_count),
            in_comdat: Vec::with_capacity(section_count),
            kept_comdats: BTreeSet::new(),
        };
        #[cfg(feature = "signature")]
        let mut member_signers = Vec::with_capacity(members.len());
        for member in members {
            #[cfg(feature = "signature")]
            if member.members.is_empty() {
                member_signers.push(member.signer);
            } else {
                member_signers.extend_from_slice(&member.member_signers);
            }
            set.append(name, member)?;
        }
        set.bind_names(name)?;

        // Merged COMMON symbols may have added sections.
        let sections = set.sections.len();
        if sections > SHN_LORESERVE as usize {
            return Err(fail(ErrorKind::LimitExceeded {
                limit: Limit::Sections,
                value: sections as u64,
                max: u64::from(SHN_LORESERVE),
            }));
        }
        #[cfg(feature = "signature")]
        let signer = match member_signers.split_first() {
            Some((Some(first), rest)) if rest.iter().all(|key| *key == Some(*first)) => {
                Some(*first)
            }
            _ => None,
        };
        Ok(Object {
            name: name.into(),
            machine,
            sections: set.sections,
            symbols: set.symbols,
            strings: &[],
            relocations: set.relocations,
            groups: set.groups,
            members: set.members,
            #[cfg(feature = "signature")]
            signer,
            #[cfg(feature = "signature")]
            member_signers,
        })
    }

    /// The names of the member objects of a [joined](Object::join) object,
    /// in order; none for a parsed one.
    pub fn members(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.members.iter().map(|member| &*member.name)
    }

    /// Whether every member of this object (or the object itself, if it was
    /// not joined) was checked with a key in `keys`.
    #[cfg(feature = "signature")]
    pub(crate) fn is_signed_by(&self, keys: &crate::signature::TrustedKeys) -> bool {
        if self.members.is_empty() {
            return self.signer.is_some_and(|signer| keys.contains(&signer));
        }
        !self.member_signers.is_empty()
            && self
                .member_signers
                .iter()
                .all(|signer| signer.is_some_and(|signer| keys.contains(&signer)))
    }

    /// The member of a joined object that section `index` came from, and
    /// its position among the members.
    pub(crate) fn member_of_section(&self, index: usize) -> Option<(usize, &Member)> {
        self.members
            .iter()
            .enumerate()
            .find(|(_, member)| member.sections.contains(&index))
    }

    /// [`Object::error`] for a joined object: names the member a section or
    /// symbol belongs to and gives its index in that member.
    #[cold]
    #[inline(never)]
    pub(crate) fn member_error(&self, kind: ErrorKind) -> LoadError {
        let of_section = |index: usize| self.member_of_section(index).map(|(_, member)| member);
        let (member, kind) = match kind {
            ErrorKind::Section {
                mut section,
                problem,
            } => {
                let member = of_section(section.index);
                if let Some(member) = member {
                    section.index = section.index.wrapping_sub(member.sections.start);
                }
                (member, ErrorKind::Section { section, problem })
            }
            ErrorKind::Relocation(mut failure) => {
                let member = of_section(failure.section.index);
                if let Some(member) = member {
                    failure.section.index =
                        failure.section.index.wrapping_sub(member.sections.start);
                }
                (member, ErrorKind::Relocation(failure))
            }
            ErrorKind::Symbol {
                index,
                name,
                problem,
            } => {
                let member = self
                    .members
                    .iter()
                    .find(|member| member.symbols.contains(&index));
                let index = member.map_or(index, |member| index.wrapping_sub(member.symbols.start));
                (
                    member,
                    ErrorKind::Symbol {
                        index,
                        name,
                        problem,
                    },
                )
            }
            kind => (None, kind),
        };
        LoadError {
            module: self.name.clone(),
            member: member.map(|member| member.name.clone()),
            kind,
        }
    }
}

/// The error `kind` of `member` (indices in it are the member's own), as an
/// error of the set `set`.
fn in_member(set: &str, member: &Object<'_>, kind: ErrorKind) -> LoadError {
    let error = member.error(kind);
    LoadError {
        module: set.into(),
        // A member that is a set itself names its own member.
        member: Some(error.member.unwrap_or(error.module)),
        kind: error.kind,
    }
}

/// The set's tables while its members are appended.
struct Joined<'a> {
    sections: Vec<Section<'a>>,
    symbols: Vec<Symbol<'a>>,
    relocations: Vec<RelocationSection<'a>>,
    groups: Vec<crate::object::Group<'a>>,
    members: Vec<Member>,
    /// Per section: a member's copy of a COMDAT group an earlier member
    /// already has, which is not loaded.
    discarded: Vec<bool>,
    /// Per section: in a kept COMDAT group.
    in_comdat: Vec<bool>,
    kept_comdats: BTreeSet<&'a str>,
}

/// What a record of a global name is to the set.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Undefined, or defined in a discarded COMDAT copy.
    Reference,
    Strong,
    Weak,
    Common,
}

impl<'a> Joined<'a> {
    /// Appends `member`'s tables, offset past the members before it.
    fn append(&mut self, set: &str, mut member: Object<'a>) -> Result<(), LoadError> {
        let section_base = self.sections.len();
        let symbol_base = self.symbols.len();
        // Both fit in 32 bits: the set's totals were checked to.
        let section_offset = section_base as u32;
        let symbol_offset = symbol_base as u32;
        let member_sections = member.sections.len();
        let section = |index: u32| {
            if index != 0 && (index as usize) < member_sections {
                index.wrapping_add(section_offset)
            } else {
                index
            }
        };
        for original in &member.sections {
            let mut copy = original.clone();
            copy.link = section(copy.link);
            if matches!(copy.sh_type, SHT_RELA | SHT_REL)
                || copy.flags & u64::from(SHF_INFO_LINK) != 0
            {
                copy.info = section(copy.info);
            }
            self.sections.push(copy);
        }
        self.discarded.resize(self.sections.len(), false);
        self.in_comdat.resize(self.sections.len(), false);
        for mut group in core::mem::take(&mut member.groups) {
            for index in &mut group.members {
                *index = section(*index);
            }
            if group.comdat && !self.kept_comdats.insert(group.signature) {
                // An earlier member has this group: its copy is the one loaded.
                for index in &group.members {
                    if let Some(flag) = self.discarded.get_mut(*index as usize) {
                        *flag = true;
                    }
                    if let Some(section) = self.sections.get_mut(*index as usize) {
                        section.flags &= !u64::from(SHF_ALLOC);
                    }
                }
                continue;
            }
            if group.comdat {
                for index in &group.members {
                    if let Some(flag) = self.in_comdat.get_mut(*index as usize) {
                        *flag = true;
                    }
                }
            }
            self.groups.push(group);
        }
        for (index, original) in member.symbols.iter().enumerate() {
            let mut symbol = *original;
            if index == 0 && symbol_base != 0 {
                // The member's null symbol: index 0 of the set is the only
                // one planning passes over by index, so this one is marked
                // as a file symbol, which planning passes over by kind.
                symbol = Symbol {
                    name: "",
                    hash: EMPTY_NAME_HASH,
                    name_at: 0,
                    value: 0,
                    size: 0,
                    shndx: SHN_UNDEF,
                    bind: STB_LOCAL,
                    kind: STT_FILE,
                    visibility: 0,
                };
            } else if symbol.kind != STT_FILE
                && symbol.shndx != SHN_UNDEF
                && symbol.shndx < SHN_LORESERVE
            {
                symbol.shndx = section(symbol.shndx);
            }
            self.symbols.push(symbol);
        }
        let member_symbols = member.symbols.len();
        for relocations in &member.relocations {
            let target = relocations.target.saturating_add(section_base);
            if self.discarded.get(target).copied().unwrap_or(false) {
                continue;
            }
            // Checked once here, so that adding the base to each index as
            // the entries are read cannot land in another member's symbols.
            if let Some(entry) = relocations
                .entries()
                .find(|entry| entry.r_sym() >= member_symbols)
            {
                let failure = RelocationFailure {
                    section: member.section_ref(relocations.target),
                    offset: entry.r_offset,
                    r_type: RelocationType {
                        machine: member.machine.e_machine(),
                        raw: entry.r_type,
                    },
                    symbol: "?".into(),
                    problem: RelocationProblem::BadSymbol,
                };
                return Err(in_member(
                    set,
                    &member,
                    ErrorKind::Relocation(Box::new(failure)),
                ));
            }
            self.relocations.push(RelocationSection {
                target,
                entries: relocations.entries,
                symbol_base: relocations.symbol_base.wrapping_add(symbol_offset),
            });
        }
        if member.members.is_empty() {
            self.members.push(Member {
                name: member.name,
                sections: section_base..self.sections.len(),
                symbols: symbol_base..self.symbols.len(),
            });
        } else {
            // A set joined into a set: its members are the new set's.
            for inner in member.members {
                self.members.push(Member {
                    name: inner.name,
                    sections: offset_range(inner.sections, section_base),
                    symbols: offset_range(inner.symbols, symbol_base),
                });
            }
        }
        Ok(())
    }

    /// The member that symbol `index` came from.
    fn member_of_symbol(&self, index: usize) -> Option<&Member> {
        let after = self
            .members
            .partition_point(|member| member.symbols.start <= index);
        self.members.get(after.checked_sub(1)?)
    }

    fn role(&self, symbol: &Symbol<'_>) -> Role {
        let in_discarded = symbol.shndx < SHN_LORESERVE
            && self
                .discarded
                .get(symbol.shndx as usize)
                .copied()
                .unwrap_or(false);
        if symbol.shndx == SHN_UNDEF || in_discarded {
            Role::Reference
        } else if symbol.shndx == SHN_COMMON {
            Role::Common
        } else if symbol.is_weak() {
            Role::Weak
        } else {
            Role::Strong
        }
    }

    /// Settles every global name once for the set (see the module docs).
    fn bind_names(&mut self, set: &str) -> Result<(), LoadError> {
        // Every global record by name, then by index (member order): one
        // allocation and a sort, instead of a map entry per name.
        let mut records: Vec<(u64, &'a str, usize)> = self
            .symbols
            .iter()
            .enumerate()
            .filter(|(_, symbol)| {
                symbol.is_global()
                    && !symbol.name.is_empty()
                    && symbol.kind != STT_SECTION
                    && symbol.kind != STT_FILE
            })
            .map(|(index, symbol)| (symbol.hash, symbol.name, index))
            .collect();
        records.sort_unstable();
        // One buffer for every name's records and their roles.
        let mut roles: Vec<(usize, Role)> = Vec::new();
        for run in records.chunk_by(|a, b| a.0 == b.0 && a.1 == b.1) {
            roles.clear();
            roles.extend(
                run.iter().filter_map(|(_, _, index)| {
                    Some((*index, self.role(self.symbols.get(*index)?)))
                }),
            );
            self.bind_name(set, &roles)?;
        }
        Ok(())
    }

    /// Settles one name, whose records (in member order) have `roles`.
    fn bind_name(&mut self, set: &str, roles: &[(usize, Role)]) -> Result<(), LoadError> {
        let first_of = |wanted: Role| {
            roles
                .iter()
                .find(|(_, role)| *role == wanted)
                .map(|(index, _)| *index)
        };
        if let Some(strong) = first_of(Role::Strong) {
            self.refuse_second_strong(set, strong, roles)?;
        }
        let winner = first_of(Role::Strong)
            .or_else(|| first_of(Role::Common))
            .or_else(|| first_of(Role::Weak));
        let Some(mut winner) = winner else {
            // Nothing in the set defines the name. A definition in a
            // discarded COMDAT copy that the kept copy lacks becomes a
            // reference: strong, so that a missing name fails the load.
            for (index, role) in roles {
                let Some(symbol) = self.symbols.get_mut(*index) else {
                    continue;
                };
                if *role == Role::Reference && symbol.shndx != SHN_UNDEF {
                    symbol.shndx = SHN_UNDEF;
                    symbol.value = 0;
                    symbol.size = 0;
                    symbol.bind = STB_GLOBAL;
                }
            }
            return Ok(());
        };
        if roles.len() < 2 {
            return Ok(());
        }
        if first_of(Role::Strong).is_none() && first_of(Role::Common).is_some() {
            winner = self.merge_commons(set, roles)?;
        }
        let Some(definition) = self.symbols.get(winner).copied() else {
            return Ok(());
        };
        // Planning checks each record against its section; checked here for
        // the winner, so that the error names the definition's member rather
        // than the first copy's.
        let section_size = (definition.shndx < SHN_LORESERVE)
            .then(|| self.sections.get(definition.shndx as usize))
            .flatten()
            .map(|section| section.size);
        if section_size.is_some_and(|size| definition.value > size) {
            return Err(self.symbol_error(set, winner, SymbolProblem::OutOfSection));
        }
        let in_comdat = definition.shndx < SHN_LORESERVE
            && self
                .in_comdat
                .get(definition.shndx as usize)
                .copied()
                .unwrap_or(false);
        let yields = definition.is_weak() && definition.is_exported();
        let (bind, visibility) = if yields {
            (definition.bind, definition.visibility)
        } else if in_comdat {
            (definition.bind, STV_HIDDEN)
        } else {
            (STB_LOCAL, definition.visibility)
        };
        for (index, _) in roles {
            if *index == winner {
                continue;
            }
            if let Some(symbol) = self.symbols.get_mut(*index) {
                *symbol = Symbol {
                    bind,
                    visibility,
                    // Its own name, which is the winner's.
                    name: symbol.name,
                    hash: symbol.hash,
                    name_at: symbol.name_at,
                    ..definition
                };
            }
        }
        Ok(())
    }

    /// The error `problem` of symbol `index`, naming its member.
    fn symbol_error(&self, set: &str, index: usize, problem: SymbolProblem) -> LoadError {
        let member = self.member_of_symbol(index);
        LoadError {
            module: set.into(),
            member: member.map(|member| member.name.clone()),
            kind: ErrorKind::Symbol {
                index: member.map_or(index, |member| index.wrapping_sub(member.symbols.start)),
                name: self
                    .symbols
                    .get(index)
                    .map_or("?", |symbol| symbol.name)
                    .into(),
                problem,
            },
        }
    }

    /// Fails if a second member defines the name of `first` strongly.
    fn refuse_second_strong(
        &self,
        set: &str,
        first: usize,
        roles: &[(usize, Role)],
    ) -> Result<(), LoadError> {
        let first_member = self.member_of_symbol(first);
        let second = roles.iter().find(|(index, role)| {
            *role == Role::Strong
                && self.member_of_symbol(*index).map(|member| &member.name)
                    != first_member.map(|member| &member.name)
        });
        let (Some((second, _)), Some(first_member)) = (second, first_member) else {
            return Ok(());
        };
        let name = self.symbols.get(first).map_or("?", |symbol| symbol.name);
        Err(LoadError::new(
            set,
            ErrorKind::DuplicateInSet {
                name: name.into(),
                first: first_member.name.clone(),
                second: self
                    .member_of_symbol(*second)
                    .map_or_else(|| "?".into(), |member| member.name.clone()),
            },
        ))
    }

    /// Makes the `COMMON` records among `roles` one zeroed section of their
    /// largest size and alignment, defined by the first of them (weak, as
    /// a tentative definition yields to a real one), and returns that one.
    fn merge_commons(&mut self, set: &str, roles: &[(usize, Role)]) -> Result<usize, LoadError> {
        let mut winner = None;
        let mut size = 0u64;
        let mut align = Alignment::BYTE;
        for (index, role) in roles {
            let Some(symbol) = self.symbols.get(*index).filter(|_| *role == Role::Common) else {
                continue;
            };
            winner.get_or_insert(*index);
            size = size.max(symbol.size);
            // A COMMON symbol's value is its alignment.
            let own = Alignment::from_elf(symbol.value)
                .filter(|align| align.bytes() <= MAX_ALIGNMENT)
                .ok_or_else(|| {
                    let problem = SymbolProblem::BadCommonAlignment {
                        align: symbol.value,
                    };
                    self.symbol_error(set, *index, problem)
                })?;
            align = align.max(own);
        }
        let Some(winner) = winner else {
            return Err(LoadError::new(
                set,
                ErrorKind::Malformed {
                    what: "COMMON symbol",
                },
            ));
        };
        let index = self.sections.len() as u32;
        self.sections.push(Section {
            name: COMMON_SECTION,
            sh_type: SHT_NOBITS,
            flags: u64::from(SHF_ALLOC | SHF_WRITE),
            size,
            align,
            info: 0,
            link: 0,
            data: None,
        });
        self.discarded.push(false);
        self.in_comdat.push(false);
        if let Some(symbol) = self.symbols.get_mut(winner) {
            symbol.shndx = index;
            symbol.value = 0;
            symbol.size = size;
            symbol.bind = STB_WEAK;
        }
        Ok(winner)
    }
}

fn offset_range(range: Range<usize>, by: usize) -> Range<usize> {
    range.start.saturating_add(by)..range.end.saturating_add(by)
}
