//! Bounds on what one module may ask of the loader, so a hostile object is
//! refused before it makes the loader allocate or compute much.
//!
//! Every bound is checked against numbers read straight from the headers,
//! before the tables they describe are read: the object size first, then the
//! section count from the ELF header, then the symbol and relocation counts
//! from the section headers. Symbol names are measured as they are read, and
//! the module's total size is checked on its [`Plan`](crate::Plan), before
//! anything is reserved in the region.

use core::fmt;

/// Which bound an object broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Limit {
    /// Bytes of the object file.
    ObjectSize,
    /// Entries of the section header table.
    Sections,
    /// Entries of the symbol table.
    Symbols,
    /// Relocation entries, over all relocation sections.
    Relocations,
    /// Bytes of one symbol name (without its NUL).
    SymbolNameLength,
    /// Bytes of region memory the module's plan needs.
    ModuleSize,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Limit::ObjectSize => "object size",
            Limit::Sections => "section count",
            Limit::Symbols => "symbol count",
            Limit::Relocations => "relocation count",
            Limit::SymbolNameLength => "symbol name length",
            Limit::ModuleSize => "module size",
        })
    }
}

/// Configurable bounds on one module. The defaults admit every real module
/// this project has seen with a wide margin (a `-ffunction-sections` kernel
/// module has a few thousand sections and a few tens of thousands of
/// relocations) while keeping what a hostile file can make the loader do
/// proportional to a few megabytes.
///
/// ```
/// use modload::Limits;
/// let strict = Limits::default().max_object_size(1 << 20).max_module_size(4 << 20);
/// assert_eq!(strict.object_size(), 1 << 20);
/// assert_eq!(strict.sections(), Limits::DEFAULT.sections());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    object_size: u64,
    sections: u64,
    symbols: u64,
    relocations: u64,
    symbol_name_length: u64,
    module_size: u64,
}

impl Limits {
    /// The defaults: a 64 MiB object, 16,384 sections, 262,144 symbols,
    /// 1,048,576 relocations, 4,096-byte symbol names and 256 MiB of region
    /// memory per module.
    pub const DEFAULT: Limits = Limits {
        object_size: 64 << 20,
        sections: 16_384,
        symbols: 262_144,
        relocations: 1 << 20,
        symbol_name_length: 4096,
        module_size: 256 << 20,
    };

    /// No bounds beyond what the ELF format and the loader's own rules allow
    /// (the plan still refuses modules over [`MAX_MODULE_SIZE`](crate::MAX_MODULE_SIZE)).
    /// For trusted input only.
    pub const UNLIMITED: Limits = Limits {
        object_size: u64::MAX,
        sections: u64::MAX,
        symbols: u64::MAX,
        relocations: u64::MAX,
        symbol_name_length: u64::MAX,
        module_size: u64::MAX,
    };

    /// The most bytes an object file may have.
    pub const fn max_object_size(mut self, bytes: u64) -> Self {
        self.object_size = bytes;
        self
    }

    /// The most entries its section header table may have (the null section counts).
    pub const fn max_sections(mut self, count: u64) -> Self {
        self.sections = count;
        self
    }

    /// The most entries its symbol table may have (the null symbol counts).
    pub const fn max_symbols(mut self, count: u64) -> Self {
        self.symbols = count;
        self
    }

    /// The most relocation entries it may have, over all relocation sections.
    pub const fn max_relocations(mut self, count: u64) -> Self {
        self.relocations = count;
        self
    }

    /// The longest symbol name it may have, in bytes.
    pub const fn max_symbol_name_length(mut self, bytes: u64) -> Self {
        self.symbol_name_length = bytes;
        self
    }

    /// The most region memory one module may take, in bytes (the plan's
    /// [`size`](crate::Plan::size), page padding included).
    pub const fn max_module_size(mut self, bytes: u64) -> Self {
        self.module_size = bytes;
        self
    }

    /// The bound on object size, in bytes.
    pub const fn object_size(&self) -> u64 {
        self.object_size
    }

    /// The bound on section count.
    pub const fn sections(&self) -> u64 {
        self.sections
    }

    /// The bound on symbol count.
    pub const fn symbols(&self) -> u64 {
        self.symbols
    }

    /// The bound on relocation count.
    pub const fn relocations(&self) -> u64 {
        self.relocations
    }

    /// The bound on symbol name length, in bytes.
    pub const fn symbol_name_length(&self) -> u64 {
        self.symbol_name_length
    }

    /// The bound on region memory per module, in bytes.
    pub const fn module_size(&self) -> u64 {
        self.module_size
    }

    /// The bound on `limit`.
    pub const fn get(&self, limit: Limit) -> u64 {
        match limit {
            Limit::ObjectSize => self.object_size,
            Limit::Sections => self.sections,
            Limit::Symbols => self.symbols,
            Limit::Relocations => self.relocations,
            Limit::SymbolNameLength => self.symbol_name_length,
            Limit::ModuleSize => self.module_size,
        }
    }

    /// `Ok` if `value` is within the bound on `limit`, else what was over
    /// which bound (an [`ErrorKind::LimitExceeded`](crate::ErrorKind::LimitExceeded)
    /// once it has a module to name).
    pub(crate) fn check(&self, limit: Limit, value: u64) -> Result<(), Exceeded> {
        let max = self.get(limit);
        if value > max {
            Err(Exceeded { limit, value, max })
        } else {
            Ok(())
        }
    }
}

/// A value over one of the [`Limits`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Exceeded {
    pub limit: Limit,
    pub value: u64,
    pub max: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}
