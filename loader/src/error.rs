//! The loader's errors: one type, with a variant per thing that went wrong and
//! enough context (module, section, offset, relocation type, symbol) to act on.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;

use crate::addr::VirtAddr;
use crate::arch::{RelocationProblem, RelocationType};
use crate::kinds::SectionKind;
use crate::limits::{Exceeded, Limit};

/// A failed load, or a failed step of one. `module` is the name the caller gave
/// the object (usually its file name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// The module being loaded.
    pub module: Box<str>,
    /// For a module set ([`Object::join`](crate::Object::join)), the member
    /// object the error is about, when it is about one: section and symbol
    /// indices in `kind` are then the member's own, as in its file.
    pub member: Option<Box<str>>,
    /// What went wrong.
    pub kind: ErrorKind,
}

/// A section named in an error: its index in the section header table and its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionRef {
    /// Index in the section header table.
    pub index: usize,
    /// Name from the section header string table (`?` when it has none).
    pub name: Box<str>,
}

/// Who already defines a symbol that a module defines again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Definer {
    /// The host's exports.
    Host,
    /// A module loaded earlier, by name.
    Module(Box<str>),
}

/// A host export that was refused: a host export or a loaded module already
/// defines the name ([`Namespace::add_host_export`](crate::Namespace::add_host_export)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateExport {
    /// The name that was to be exported.
    pub name: Box<str>,
    /// Who defines it already.
    pub existing: Definer,
}

impl fmt::Display for DuplicateExport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "host export {} is already defined by {}",
            self.name, self.existing
        )
    }
}

impl core::error::Error for DuplicateExport {}

/// The kinds of failure. Tests match on these variants.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The file does not start with the ELF magic.
    NotElf,
    /// Only ELF64 objects are loaded.
    UnsupportedClass {
        /// `e_ident[EI_CLASS]`.
        class: u8,
    },
    /// Only little-endian objects are loaded.
    UnsupportedEndian {
        /// `e_ident[EI_DATA]`.
        data: u8,
    },
    /// Only relocatable objects (`ET_REL`) are loaded.
    NotRelocatable {
        /// `e_type`.
        e_type: u16,
    },
    /// The object is for a machine this loader does not relocate.
    UnsupportedMachine {
        /// `e_machine`.
        e_machine: u16,
    },
    /// The ELF structure is damaged; `what` says which part.
    Malformed {
        /// The part of the file that could not be read.
        what: &'static str,
    },
    /// A section is unusable.
    Section {
        /// The section.
        section: SectionRef,
        /// Why.
        problem: SectionProblem,
    },
    /// A symbol table entry is unusable.
    Symbol {
        /// Index in the symbol table.
        index: usize,
        /// Name (may be empty).
        name: Box<str>,
        /// Why.
        problem: SymbolProblem,
    },
    /// Symbols that nothing defines: every missing name, sorted.
    Unresolved {
        /// The names.
        names: Vec<Box<str>>,
    },
    /// A strong definition of a name that is already strongly defined.
    DuplicateDefinition {
        /// The symbol.
        name: Box<str>,
        /// Who defined it first.
        existing: Definer,
    },
    /// A relocation could not be applied.
    Relocation(Box<RelocationFailure>),
    /// The region has no free block of this size and alignment.
    OutOfMemory {
        /// Bytes requested.
        size: u64,
        /// Alignment requested.
        align: u64,
    },
    /// The platform refused to change page permissions.
    Protection {
        /// Start of the range.
        start: VirtAddr,
        /// Length of the range.
        len: u64,
        /// The platform's error code.
        code: i32,
    },
    /// The module is bigger than one module may be (code in it must reach all of it
    /// with 32-bit displacements).
    ModuleTooLarge {
        /// The planned size.
        size: u64,
    },
    /// Internal check: what was placed differs from the plan. Reported rather than
    /// ignored, because the plan is a promise made to the caller.
    PlanMismatch {
        /// Which kind.
        kind: SectionKind,
        /// The plan's figure.
        planned: u64,
        /// What was used.
        used: u64,
    },
    /// `map_section` named a section that is not loaded.
    SectionNotLoaded {
        /// The section index.
        index: usize,
    },
    /// The object breaks one of the loader's [`Limits`](crate::Limits); it is
    /// refused before the loader allocates for it.
    LimitExceeded {
        /// Which bound.
        limit: Limit,
        /// The object's figure.
        value: u64,
        /// The bound.
        max: u64,
    },
    /// The module's signature is missing, malformed or wrong, or its key is not
    /// trusted. Checked before the object is parsed.
    Signature {
        /// Why.
        problem: SignatureProblem,
    },
    /// Two members of a module set both define a name strongly, which a
    /// static link refuses too.
    DuplicateInSet {
        /// The symbol.
        name: Box<str>,
        /// The member that defines it first.
        first: Box<str>,
        /// The member that defines it again.
        second: Box<str>,
    },
    /// A member of a module set is for another machine than the set's first
    /// member ([`LoadError::member`] names it).
    MixedMachines {
        /// `e_machine` of the set (its first member).
        set: u16,
        /// `e_machine` of the member.
        member: u16,
    },
    /// A module set without members.
    EmptySet,
}

/// Why a section cannot be loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionProblem {
    /// Its file range lies outside the file.
    OutOfBounds,
    /// `sh_addralign` is not a power of two, or larger than the loader allows.
    BadAlignment {
        /// The value.
        align: u64,
    },
    /// It asks to be writable and executable at once.
    WritableAndExecutable,
    /// Thread-local storage is not supported.
    ThreadLocal,
    /// A relocation section without explicit addends (`SHT_REL`) on a machine that uses RELA.
    ImplicitAddends,
    /// A relocation section refers to a section index that does not exist.
    BadLink,
    /// A group section is malformed.
    BadGroup,
    /// A string table whose last byte is not NUL: its last name would run on
    /// into whatever follows.
    UnterminatedStrings,
    /// Its bytes in the file overlap those of another section.
    Overlaps {
        /// The other section's index.
        other: usize,
    },
    /// Its bytes in the file overlap the ELF header or the section header table.
    OverlapsHeaders,
    /// A table section (symbols, relocations, a group) whose `sh_entsize` is
    /// not its entry size: its entries would be read at the wrong offsets.
    BadEntrySize {
        /// `sh_entsize`.
        entsize: u64,
    },
}

/// Why a symbol cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymbolProblem {
    /// Its section index is out of range or names an unloadable section.
    BadSectionIndex {
        /// `st_shndx`.
        shndx: u32,
    },
    /// Its name is not in the string table.
    BadName,
    /// Its value lies outside its section.
    OutOfSection,
    /// A `COMMON` symbol with an alignment that is not a power of two or too large.
    BadCommonAlignment {
        /// The alignment.
        align: u64,
    },
    /// Extended section indices (`SHN_XINDEX`) are not supported.
    ExtendedIndex,
}

/// Why a module's signature was refused (see `docs/ROBUSTNESS.md` for the
/// trailer format).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureProblem {
    /// Signatures are required and the object has no signature trailer.
    Unsigned,
    /// The trailer has a version this loader does not read.
    UnsupportedVersion {
        /// The trailer's version field.
        version: u32,
    },
    /// The trailer's own length field is wrong.
    BadTrailer,
    /// The trailer's payload length does not match the bytes before it.
    LengthMismatch {
        /// The payload length the trailer records.
        recorded: u64,
        /// The bytes actually before the trailer.
        actual: u64,
    },
    /// The signing key is not among the keys the host trusts.
    UntrustedKey,
    /// The signature does not match the object: it was tampered with, or
    /// signed by another key than the one named.
    BadSignature,
}

/// A relocation that failed, with where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelocationFailure {
    /// The section being patched.
    pub section: SectionRef,
    /// Offset of the field within that section.
    pub offset: u64,
    /// The relocation type.
    pub r_type: RelocationType,
    /// The symbol the relocation refers to (section symbols are named after their section).
    pub symbol: Box<str>,
    /// Why.
    pub problem: RelocationProblem,
}

impl From<Exceeded> for ErrorKind {
    fn from(Exceeded { limit, value, max }: Exceeded) -> Self {
        ErrorKind::LimitExceeded { limit, value, max }
    }
}

impl LoadError {
    pub(crate) fn new(module: &str, kind: ErrorKind) -> Self {
        Self {
            module: module.into(),
            member: None,
            kind,
        }
    }
}

impl fmt::Display for SectionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "section {} [{}]", self.name, self.index)
    }
}

impl fmt::Display for Definer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Definer::Host => f.write_str("the host"),
            Definer::Module(name) => write!(f, "module {name}"),
        }
    }
}

impl fmt::Display for SectionProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SectionProblem::OutOfBounds => f.write_str("its contents lie outside the file"),
            SectionProblem::BadAlignment { align } => {
                write!(f, "alignment {align} is not a power of two or is too large")
            }
            SectionProblem::WritableAndExecutable => {
                f.write_str("it is both writable and executable")
            }
            SectionProblem::ThreadLocal => f.write_str("thread-local storage is not supported"),
            SectionProblem::ImplicitAddends => {
                f.write_str("REL relocations without addends are not supported here")
            }
            SectionProblem::BadLink => f.write_str("it refers to a section that does not exist"),
            SectionProblem::BadGroup => f.write_str("the group section is malformed"),
            SectionProblem::UnterminatedStrings => {
                f.write_str("the string table does not end with a NUL byte")
            }
            SectionProblem::Overlaps { other } => {
                write!(f, "its contents overlap those of section [{other}]")
            }
            SectionProblem::OverlapsHeaders => {
                f.write_str("its contents overlap the ELF header or the section header table")
            }
            SectionProblem::BadEntrySize { entsize } => {
                write!(f, "entry size {entsize} is wrong for its type")
            }
        }
    }
}

impl fmt::Display for SymbolProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SymbolProblem::BadSectionIndex { shndx } => {
                write!(f, "section index {shndx} is unusable")
            }
            SymbolProblem::BadName => f.write_str("its name is not in the string table"),
            SymbolProblem::OutOfSection => f.write_str("its value lies outside its section"),
            SymbolProblem::BadCommonAlignment { align } => {
                write!(
                    f,
                    "COMMON alignment {align} is not a power of two or is too large"
                )
            }
            SymbolProblem::ExtendedIndex => {
                f.write_str("extended section indices are not supported")
            }
        }
    }
}

impl fmt::Display for SignatureProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignatureProblem::Unsigned => f.write_str("the module is not signed"),
            SignatureProblem::UnsupportedVersion { version } => {
                write!(f, "signature trailer version {version} is not supported")
            }
            SignatureProblem::BadTrailer => f.write_str("the signature trailer is malformed"),
            SignatureProblem::LengthMismatch { recorded, actual } => write!(
                f,
                "the signature covers {recorded} bytes but {actual} precede it"
            ),
            SignatureProblem::UntrustedKey => f.write_str("the signing key is not trusted"),
            SignatureProblem::BadSignature => {
                f.write_str("the signature does not match the module")
            }
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::NotElf => f.write_str("not an ELF file"),
            ErrorKind::UnsupportedClass { class } => write!(f, "ELF class {class} is not ELF64"),
            ErrorKind::UnsupportedEndian { data } => {
                write!(f, "ELF data encoding {data} is not little-endian")
            }
            ErrorKind::NotRelocatable { e_type } => {
                write!(f, "ELF type {e_type} is not a relocatable object (ET_REL)")
            }
            ErrorKind::UnsupportedMachine { e_machine } => {
                write!(f, "machine {e_machine} is not supported")
            }
            ErrorKind::Malformed { what } => write!(f, "malformed ELF: {what}"),
            ErrorKind::Section { section, problem } => write!(f, "{section}: {problem}"),
            ErrorKind::Symbol {
                index,
                name,
                problem,
            } => write!(f, "symbol {name} [{index}]: {problem}"),
            ErrorKind::Unresolved { names } => {
                f.write_str("unresolved symbols:")?;
                for name in names {
                    write!(f, " {name}")?;
                }
                Ok(())
            }
            ErrorKind::DuplicateDefinition { name, existing } => {
                write!(f, "symbol {name} is already defined by {existing}")
            }
            ErrorKind::Relocation(failure) => fmt::Display::fmt(failure, f),
            ErrorKind::OutOfMemory { size, align } => write!(
                f,
                "region has no free block of {size} bytes aligned to {align}"
            ),
            ErrorKind::Protection { start, len, code } => write!(
                f,
                "platform refused to protect {len} bytes at {start} (code {code})"
            ),
            ErrorKind::ModuleTooLarge { size } => {
                write!(f, "module needs {size} bytes, more than one module may use")
            }
            ErrorKind::PlanMismatch {
                kind,
                planned,
                used,
            } => write!(f, "{kind:?} used {used} bytes but the plan said {planned}"),
            ErrorKind::SectionNotLoaded { index } => write!(f, "section [{index}] is not loaded"),
            ErrorKind::LimitExceeded { limit, value, max } => {
                write!(f, "{limit} {value} exceeds the limit of {max}")
            }
            ErrorKind::Signature { problem } => write!(f, "signature refused: {problem}"),
            ErrorKind::DuplicateInSet {
                name,
                first,
                second,
            } => write!(f, "symbol {name} is defined by both {first} and {second}"),
            ErrorKind::MixedMachines { set, member } => write!(
                f,
                "member is for machine {member}, the set's first member for machine {set}"
            ),
            ErrorKind::EmptySet => f.write_str("a module set needs at least one member"),
        }
    }
}

impl RelocationFailure {
    /// How to rebuild the object so that this relocation fits, when its
    /// overflow shows that the object was compiled for a code model that
    /// assumes code and data within 2 GiB (x86-64: the compilers' default
    /// small model, or the kernel model) or 4 GiB (AArch64) of each other or
    /// of address 0: a module in a region far from the host's symbols cannot
    /// keep that promise.
    pub fn code_model_advice(&self) -> Option<&'static str> {
        match self.problem {
            RelocationProblem::Overflow { .. } => self.r_type.code_model_advice(),
            _ => None,
        }
    }
}

impl fmt::Display for RelocationFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at offset {:#x}: {} against symbol {}: {}",
            self.section, self.offset, self.r_type, self.symbol, self.problem
        )?;
        match self.code_model_advice() {
            Some(advice) => write!(f, " ({advice})"),
            None => Ok(()),
        }
    }
}

impl core::error::Error for RelocationFailure {}

impl core::error::Error for ErrorKind {}

impl core::error::Error for SectionProblem {}

impl core::error::Error for SymbolProblem {}

impl core::error::Error for SignatureProblem {}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.member {
            Some(member) => write!(f, "{}: {}: {}", self.module, member, self.kind),
            None => write!(f, "{}: {}", self.module, self.kind),
        }
    }
}

impl core::error::Error for LoadError {}

/// Why a module could not be unloaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnloadError {
    /// Other loaded modules bind to this module's symbols; unload them first.
    InUse {
        /// The names of the modules that depend on it.
        users: Vec<Box<str>>,
    },
    /// The module is no longer loaded.
    NotLoaded,
}

impl fmt::Display for UnloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnloadError::InUse { users } => {
                f.write_str("module is in use by:")?;
                for user in users {
                    write!(f, " {user}")?;
                }
                Ok(())
            }
            UnloadError::NotLoaded => f.write_str("module is not loaded"),
        }
    }
}

impl core::error::Error for UnloadError {}

/// Why [`Module::debug_object`](crate::Module::debug_object) could not
/// describe a module with the bytes it was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DebugObjectError {
    /// Not a 64-bit little-endian relocatable ELF object.
    NotAnObject,
    /// The section headers lie outside the bytes.
    BadSectionHeaders,
    /// The module was loaded from a set with fewer members.
    NoSuchMember {
        /// The member asked for.
        member: usize,
    },
    /// A section the module loaded has no header in these bytes, or one of
    /// another size: the bytes are not the object the module was loaded from.
    NotTheLoadedObject {
        /// The section's index.
        section: u32,
    },
}

impl fmt::Display for DebugObjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAnObject => f.write_str("not a 64-bit little-endian ELF relocatable object"),
            Self::BadSectionHeaders => f.write_str("the section headers lie outside the file"),
            Self::NoSuchMember { member } => {
                write!(f, "the module has no member {member}")
            }
            Self::NotTheLoadedObject { section } => write!(
                f,
                "section {section} differs from the one loaded: not the module's object"
            ),
        }
    }
}

impl core::error::Error for DebugObjectError {}
