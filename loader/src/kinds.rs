//! What every layer names: the kinds of pieces a module is made of, the
//! segments they share pages in, and the permissions those pages get.

use crate::addr::Alignment;

/// The largest alignment a section or `COMMON` symbol may ask for.
pub const MAX_ALIGNMENT: u64 = 1 << 16;
/// The most bytes one module may take: code must reach all of its module with
/// 32-bit displacements.
pub const MAX_MODULE_SIZE: u64 = 1 << 31;
/// What a piece of a module holds, which decides its page permissions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SectionKind {
    /// Executable code (`.text*`).
    Text,
    /// Data that is never written after relocation: `.rodata*`, merged strings,
    /// `.data.rel.ro*` and the init/fini arrays. Sealed read-only at finalize.
    ReadOnly,
    /// Initialised writable data (`.data*`).
    Data,
    /// Zero-initialised writable data (`.bss*` and `COMMON` symbols).
    Bss,
    /// The global offset table: one 8-byte slot per symbol reached through it.
    /// Sealed read-only at finalize, since nothing binds lazily.
    Got,
    /// Call stubs (x86-64 PLT stubs, AArch64 veneers) for calls whose target may be
    /// out of direct reach.
    Stubs,
}

impl SectionKind {
    /// Every kind, in layout order.
    pub const ALL: [SectionKind; 6] = [
        SectionKind::Text,
        SectionKind::Stubs,
        SectionKind::ReadOnly,
        SectionKind::Got,
        SectionKind::Data,
        SectionKind::Bss,
    ];

    /// The segment this kind lives in.
    pub const fn segment(self) -> Segment {
        match self {
            SectionKind::Text | SectionKind::Stubs => Segment::Code,
            SectionKind::ReadOnly | SectionKind::Got => Segment::ReadOnly,
            SectionKind::Data | SectionKind::Bss => Segment::Writable,
        }
    }

    pub(crate) const fn slot(self) -> usize {
        match self {
            SectionKind::Text => 0,
            SectionKind::Stubs => 1,
            SectionKind::ReadOnly => 2,
            SectionKind::Got => 3,
            SectionKind::Data => 4,
            SectionKind::Bss => 5,
        }
    }
}

/// A page-aligned run of kinds that share permissions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Segment {
    /// Text and stubs: read and execute.
    Code,
    /// Read-only data and the GOT: read only, after relocation.
    ReadOnly,
    /// Data and bss: read and write.
    Writable,
}

impl Segment {
    /// Every segment, in layout order.
    pub const ALL: [Segment; 3] = [Segment::Code, Segment::ReadOnly, Segment::Writable];

    /// The permissions finalize gives this segment. Never writable and executable.
    pub const fn permissions(self) -> Permissions {
        match self {
            Segment::Code => Permissions::CODE,
            Segment::ReadOnly => Permissions::READ_ONLY,
            Segment::Writable => Permissions::READ_WRITE,
        }
    }

    pub(crate) const fn slot(self) -> usize {
        match self {
            Segment::Code => 0,
            Segment::ReadOnly => 1,
            Segment::Writable => 2,
        }
    }
}

/// Where one kind sits in the module's reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// Offset from the start of the reservation.
    pub offset: u64,
    /// Exact bytes, from the first piece's start to the last piece's end.
    pub size: u64,
    /// The largest alignment among its pieces.
    pub align: Alignment,
}

bitflags::bitflags! {
    /// Access rights for a range of pages.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Permissions: u8 {
        /// Loads are allowed.
        const READ = 1;
        /// Stores are allowed.
        const WRITE = 1 << 1;
        /// Instruction fetches are allowed.
        const EXECUTE = 1 << 2;
    }
}

impl Permissions {
    /// Text: read and execute.
    pub const CODE: Permissions = Permissions::READ.union(Permissions::EXECUTE);
    /// Read-only data, the GOT and other data sealed after relocation.
    pub const READ_ONLY: Permissions = Permissions::READ;
    /// Data and bss.
    pub const READ_WRITE: Permissions = Permissions::READ.union(Permissions::WRITE);

    /// Whether these permissions would break W^X.
    pub const fn is_writable_and_executable(self) -> bool {
        self.contains(Permissions::WRITE.union(Permissions::EXECUTE))
    }
}
