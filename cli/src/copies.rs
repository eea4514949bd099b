//! Copies of shared libraries' data within reach of `-fno-pic` modules: what
//! a copy relocation (`R_X86_64_COPY`) does for a non-PIE executable; and
//! stubs for library functions whose address such modules take, as a
//! non-PIE executable's PLT entries stand in for them.
//!
//! Code compiled `-fno-pic` for the small code model reads library data such
//! as `stderr`, `stdout`, `environ`, `optarg` and `optind` with
//! `R_X86_64_PC32` (and `R_X86_64_32`/`R_X86_64_32S`) relocations: 32-bit
//! fields that reach ±2 GiB (or the low 2 or 4 GiB). Such modules are mapped
//! low (see `run::choose_placement`), and libc's data is near the top of the
//! address space, so those fields cannot hold it. A linker solves this with
//! a copy relocation: the executable holds its own copy of the variable, and
//! the dynamic linker binds every reference to the variable, the library's
//! own included, to the copy.
//!
//! [`Copies::prepare`] does the same before any module loads:
//!
//! 1. It reads the objects (with goblin: the loader's `Object` does not
//!    expose relocations) and collects the undefined symbols that some
//!    x86-64 `R_X86_64_PC32`, `R_X86_64_32` or `R_X86_64_32S` relocation
//!    refers to and that no object defines.
//! 2. It resolves each through the shared libraries. One whose address the
//!    relocations' fields can hold from every address of the region needs
//!    nothing. Otherwise:
//!    - if `dladdr1(RTLD_DL_SYMENT)` says the address is the start of a data
//!      object (`STT_OBJECT`) of non-zero size, it gets a copy: a place in
//!      memory mapped right beside the region (so within reach), aligned like
//!      the original (up to 64 bytes), holding the original's current bytes;
//!    - if the address is code (an executable mapping), it gets a 16-byte
//!      stub beside the region, `jmp *target(%rip)`, which becomes the
//!      function's address for the modules (`mov $strcmp, %esi`);
//!    - anything else is left to the loader, which reports the overflow.
//! 3. It makes the libraries use the copies too, as `ld.so` does: in every
//!    loaded ELF object (`dl_iterate_phdr`: the libraries and this tool
//!    itself), every `R_X86_64_GLOB_DAT` or `R_X86_64_64` entry of the
//!    dynamic relocation table (`DT_RELA`) whose slot points into a copied
//!    original is rewritten to point at the same offset in the copy, and one
//!    that holds a stubbed function's address gets the stub's, so function
//!    pointers compare equal across modules and libraries. GOT slots in
//!    RELRO pages are read-only by then: such a page is made writable for the
//!    write and given its old protection back.
//! 4. Modules resolve those names to the copies and stubs
//!    ([`Copies::resolve`], asked before the libraries).
//!
//! So `optarg`/`optind` written by `getopt`, `environ` moved by `setenv`,
//! `stdout` assigned by the program and read by `printf`, all stay one
//! variable for the modules and the libraries.
//!
//! What the copies do **not** cover:
//! - Libraries opened after the copies were made (a `dlopen` by the program)
//!   bind to the original, which no longer changes. So does a lookup by
//!   name, `dlsym(RTLD_DEFAULT, "optarg")`: it returns the original's address.
//! - A library that reaches its own exported variable without its GOT (a
//!   protected or hidden alias, `-Bsymbolic`) keeps using the original.
//!   glibc reaches `stdin`/`stdout`/`stderr`, `environ`, `optarg`, `optind`,
//!   `opterr` and `optopt` through its GOT, as copy relocations require, so
//!   these are covered; a library built `-Bsymbolic` would not be.
//! - The copy is made after the library initialized the original, where
//!   `ld.so` copies before any constructor runs. Pointers to the original
//!   that were stored meanwhile keep pointing at it: a C++ stream object
//!   copied this way (`std::cout` read by `-fno-pic` C++) still has
//!   `std::cerr.tie()` pointing at the original `std::cout`, which shares
//!   the copy's stream buffer, so output is unchanged.
//! - Thread-local variables (`errno` is reached through `__errno_location`,
//!   so it needs no copy).
//! - Only x86-64 objects are looked at; AArch64's `ADRP` reaches ±4 GiB
//!   and its modules are placed near the libraries.

use std::collections::BTreeMap;
use std::ffi::{c_int, c_void};
use std::ops::Range;

use goblin::elf::sym::STT_OBJECT;
use modload::{SymbolResolver, VirtAddr};

use crate::Failure;

/// `R_X86_64_64`, `R_X86_64_PC32`, `R_X86_64_GLOB_DAT`, `R_X86_64_32`,
/// `R_X86_64_32S`.
const R_X86_64_64: u32 = 1;
const R_X86_64_PC32: u32 = 2;
const R_X86_64_GLOB_DAT: u32 = 6;
const R_X86_64_32: u32 = 10;
const R_X86_64_32S: u32 = 11;

/// glibc's `RTLD_DL_SYMENT`: `dladdr1` returns the `ElfW(Sym)` it matched.
const RTLD_DL_SYMENT: c_int = 1;

/// `DT_NULL`, `DT_RELA`, `DT_RELASZ`, `DT_RELAENT`.
const DT_NULL: i64 = 0;
const DT_RELA: i64 = 7;
const DT_RELASZ: i64 = 8;
const DT_RELAENT: i64 = 9;
const RELA_SIZE: u64 = 24;
const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;

/// Bytes of a jump stub standing in for a library function.
const STUB_SIZE: u64 = 16;
/// Room left in every 32-bit field for addends (`stderr - 4`, `&table[n]`).
const ADDEND_SLACK: i128 = 1 << 20;
/// Copies are aligned like their original, up to this.
const MAX_COPY_ALIGNMENT: u64 = 64;

/// How a module's relocations refer to a symbol: which 32-bit fields its
/// address must fit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Reach {
    /// `R_X86_64_PC32`: within ±2 GiB of the referring place.
    pc_relative: bool,
    /// `R_X86_64_32S`: below 2 GiB.
    signed_absolute: bool,
    /// `R_X86_64_32`: below 4 GiB.
    unsigned_absolute: bool,
}

impl Reach {
    fn add(&mut self, r_type: u32) {
        match r_type {
            R_X86_64_PC32 => self.pc_relative = true,
            R_X86_64_32S => self.signed_absolute = true,
            R_X86_64_32 => self.unsigned_absolute = true,
            _ => {}
        }
    }

    /// Whether every field kind in `self` holds `target` when the referring
    /// places are anywhere in `region`.
    fn holds(self, target: u64, region: &Range<u64>) -> bool {
        let target = i128::from(target);
        let (start, end) = (i128::from(region.start), i128::from(region.end));
        let pc = !self.pc_relative
            || (target - start <= i128::from(i32::MAX) - ADDEND_SLACK
                && target - end >= i128::from(i32::MIN) + ADDEND_SLACK);
        let signed = !self.signed_absolute || target + ADDEND_SLACK <= i128::from(i32::MAX);
        let unsigned = !self.unsigned_absolute || target + ADDEND_SLACK <= i128::from(u32::MAX);
        pc && signed && unsigned
    }
}

/// What stands in for a library symbol beside the region.
#[derive(Clone, Copy, Debug)]
enum Stand {
    /// A copy of a data object of this many bytes.
    Data { size: u64 },
    /// A jump to a function: its canonical address for the modules.
    Code,
}

/// One variable copied from a shared library, or one function's stub
/// (`size` 0: only references to its very address are redirected).
#[derive(Debug)]
struct Copy {
    original: u64,
    copy: u64,
    size: u64,
}

impl Copy {
    /// Where a pointer to `value` points once the copy stands in, if `value`
    /// points into the original.
    fn redirect(&self, value: u64) -> Option<u64> {
        if self.size == 0 {
            return (value == self.original).then_some(self.copy);
        }
        (self.original..self.original.saturating_add(self.size))
            .contains(&value)
            .then(|| self.copy + (value - self.original))
    }
}

/// `jmp *0(%rip)`, the 8-byte target, then `int3` padding.
fn jump_stub(target: u64) -> [u8; STUB_SIZE as usize] {
    let mut stub = [0xcc_u8; STUB_SIZE as usize];
    stub[..6].copy_from_slice(&[0xff, 0x25, 0, 0, 0, 0]);
    stub[6..14].copy_from_slice(&target.to_le_bytes());
    stub
}

/// The copies of one run, by the names modules use for them.
#[derive(Debug, Default)]
pub struct Copies {
    by_name: BTreeMap<String, u64>,
    copies: Vec<Copy>,
}

impl Copies {
    /// Works out which library variables the objects cannot reach from
    /// `region` and makes copies of them beside it, which the libraries
    /// then use too (see the module docs). Needs the libraries opened and
    /// the region mapped, and must run before any module loads.
    pub fn prepare(
        objects: &[crate::order::Names],
        libraries: &dyn SymbolResolver,
        region: Range<u64>,
    ) -> Result<Self, Failure> {
        let wanted = short_references(objects);
        if wanted.is_empty() {
            return Ok(Self::default());
        }
        let maps = Mappings::read()?;
        // By original address, so aliases (`environ` and `__environ`) share
        // one copy.
        let mut originals: BTreeMap<u64, Stand> = BTreeMap::new();
        let mut names: Vec<(String, Reach, u64)> = Vec::new();
        for (name, reach) in wanted {
            let Some(address) = libraries.resolve(&name) else {
                // The loader reports the name as unresolved.
                continue;
            };
            let address = address.as_u64();
            if reach.holds(address, &region) {
                continue;
            }
            let stand = if let Some(size) = data_object_size(address) {
                Stand::Data { size }
            } else if maps.is_executable(address) {
                Stand::Code
            } else {
                // Neither a known data object nor code: the loader reports
                // the relocation overflow.
                continue;
            };
            originals.insert(address, stand);
            names.push((name, reach, address));
        }
        if names.is_empty() {
            return Ok(Self::default());
        }

        // Data first, then the stubs on pages of their own (made executable).
        let mut offsets: BTreeMap<u64, u64> = BTreeMap::new();
        let mut data_end = 0u64;
        for (&address, stand) in &originals {
            if let Stand::Data { size } = stand {
                let align = 1u64
                    << address
                        .trailing_zeros()
                        .min(MAX_COPY_ALIGNMENT.trailing_zeros());
                let offset = data_end.next_multiple_of(align);
                offsets.insert(address, offset);
                data_end = offset.saturating_add(*size);
            }
        }
        let page = page_size();
        let code_start = data_end.next_multiple_of(page);
        let mut code_end = code_start;
        for (&address, stand) in &originals {
            if let Stand::Code = stand {
                offsets.insert(address, code_end);
                code_end += STUB_SIZE;
            }
        }
        let area = map_beside(&region, code_end.next_multiple_of(page))?;

        let mut copies = Self::default();
        for (&original, stand) in &originals {
            let offset = offsets.get(&original).copied().unwrap_or_default();
            let copy = area.start + offset;
            let size = match *stand {
                Stand::Data { size } => {
                    // SAFETY: `original` is the start of a live data object of
                    // `size` bytes (dladdr1 said so); `copy` is fresh memory
                    // of ours, inside `area`, which nothing else uses.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            original as usize as *const u8,
                            copy as usize as *mut u8,
                            size as usize,
                        );
                    }
                    size
                }
                Stand::Code => {
                    let stub = jump_stub(original);
                    // SAFETY: as above: 16 fresh bytes of ours, still writable.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            stub.as_ptr(),
                            copy as usize as *mut u8,
                            stub.len(),
                        );
                    }
                    0
                }
            };
            copies.copies.push(Copy {
                original,
                copy,
                size,
            });
        }
        if code_end > code_start {
            let code = area.start + code_start;
            // SAFETY: the stub pages are part of `area`, ours alone.
            let status = unsafe {
                libc::mprotect(
                    code as usize as *mut c_void,
                    (code_end - code_start).next_multiple_of(page) as usize,
                    libc::PROT_READ | libc::PROT_EXEC,
                )
            };
            if status != 0 {
                return Err(Failure::io(
                    "cannot make the stubs for library functions executable",
                    &std::io::Error::last_os_error(),
                ));
            }
        }
        for (name, reach, address) in names {
            let copy = copies
                .copies
                .iter()
                .find(|copy| copy.original == address)
                .map(|copy| copy.copy);
            match copy {
                Some(copy) if reach.holds(copy, &region) => {
                    copies.by_name.insert(name, copy);
                }
                _ => {
                    return Err(Failure::message(format!(
                        "cannot place a copy of `{name}` within reach of the modules"
                    )))
                }
            }
        }
        redirect_libraries(&copies.copies, &maps, page)?;
        Ok(copies)
    }

    /// The copy of `name`, if it has one.
    pub fn resolve(&self, name: &str) -> Option<VirtAddr> {
        self.by_name
            .get(name)
            .map(|address| VirtAddr::new(*address))
    }
}

/// Names left undefined by the objects and referred to by 32-bit absolute
/// or PC-relative x86-64 relocations, with the fields they must fit. Names
/// some object defines are left out: modules bind those to each other.
fn short_references(objects: &[crate::order::Names]) -> BTreeMap<String, Reach> {
    let mut wanted: BTreeMap<String, Reach> = BTreeMap::new();
    for object in objects {
        for (name, r_type) in &object.short_references {
            wanted.entry(name.clone()).or_default().add(*r_type);
        }
    }
    for name in objects.iter().flat_map(|object| object.defined()) {
        wanted.remove(name);
    }
    wanted
}

/// The size of the data object that starts at `address`, from the symbol
/// the dynamic linker has for it; `None` for functions, unknown addresses
/// and empty objects.
fn data_object_size(address: u64) -> Option<u64> {
    // SAFETY: Dl_info is plain data for which all zeroes is a valid value.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    let mut symbol: *mut c_void = std::ptr::null_mut();
    // SAFETY: both out-pointers point at live locals of the types dladdr1
    // fills for RTLD_DL_SYMENT; `address` is only compared, not read.
    let found = unsafe {
        libc::dladdr1(
            address as usize as *const c_void,
            &mut info,
            &mut symbol,
            RTLD_DL_SYMENT,
        )
    };
    if found == 0 || symbol.is_null() || info.dli_saddr as usize as u64 != address {
        return None;
    }
    // SAFETY: for RTLD_DL_SYMENT, a non-null `symbol` points at the matched
    // entry of the object's dynamic symbol table, which stays mapped.
    let symbol = unsafe { &*symbol.cast::<libc::Elf64_Sym>() };
    (symbol.st_info & 0xf == STT_OBJECT && symbol.st_size > 0).then_some(symbol.st_size)
}

/// Maps `size` bytes of read-write memory right below the region or else
/// right after it, so every module reaches them.
fn map_beside(region: &Range<u64>, size: u64) -> Result<Range<u64>, Failure> {
    let candidates = [region.start.checked_sub(size), Some(region.end)];
    for start in candidates.into_iter().flatten() {
        // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping; a
        // fresh anonymous mapping aliases nothing.
        let memory = unsafe {
            libc::mmap(
                start as usize as *mut c_void,
                size as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            )
        };
        if memory == libc::MAP_FAILED {
            continue;
        }
        if memory as usize as u64 == start {
            return Ok(start..start + size);
        }
        // An old kernel treats the flag as a hint and may map elsewhere.
        // SAFETY: unmapping the mapping just made, which nothing uses.
        unsafe { libc::munmap(memory, size as usize) };
    }
    Err(Failure::message(format!(
        "cannot map {size} bytes for copies of library data beside the module region at {:#x}",
        region.start
    )))
}

/// One loaded ELF object, as `dl_iterate_phdr` shows it.
struct LoadedObject {
    base: u64,
    /// Its `PT_LOAD` segments, at their run-time addresses.
    segments: Vec<Range<u64>>,
    /// Its `PT_DYNAMIC` segment, at its run-time address.
    dynamic: Option<Range<u64>>,
}

impl LoadedObject {
    fn contains(&self, range: &Range<u64>) -> bool {
        self.segments
            .iter()
            .any(|segment| segment.start <= range.start && range.end <= segment.end)
    }

    /// A pointer of the dynamic section: glibc has already added the load
    /// base to most of them, the vDSO's are left as linked.
    fn dynamic_pointer(&self, value: u64, size: u64) -> Option<u64> {
        [value, self.base.wrapping_add(value)]
            .into_iter()
            .find(|start| self.contains(&(*start..start.saturating_add(size))))
    }
}

extern "C" fn collect_object(
    info: *mut libc::dl_phdr_info,
    _size: usize,
    data: *mut c_void,
) -> c_int {
    // SAFETY: dl_iterate_phdr passes a valid `info` for the duration of the
    // call, and `data` is the `Vec` that `loaded_objects` passed in.
    let (info, objects) = unsafe { (&*info, &mut *data.cast::<Vec<LoadedObject>>()) };
    let headers: &[libc::Elf64_Phdr] = if info.dlpi_phdr.is_null() {
        &[]
    } else {
        // SAFETY: `dlpi_phdr` points at `dlpi_phnum` program headers that
        // stay mapped while the object is loaded.
        unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) }
    };
    let place = |header: &libc::Elf64_Phdr| {
        let start = info.dlpi_addr.wrapping_add(header.p_vaddr);
        start..start.saturating_add(header.p_memsz)
    };
    objects.push(LoadedObject {
        base: info.dlpi_addr,
        segments: headers
            .iter()
            .filter(|header| header.p_type == PT_LOAD)
            .map(place)
            .collect(),
        dynamic: headers
            .iter()
            .find(|header| header.p_type == PT_DYNAMIC)
            .map(place),
    });
    0
}

fn loaded_objects() -> Vec<LoadedObject> {
    let mut objects: Vec<LoadedObject> = Vec::new();
    // SAFETY: the callback only reads what dl_iterate_phdr hands it and
    // appends to `objects`, which outlives the call.
    unsafe {
        libc::dl_iterate_phdr(
            Some(collect_object),
            (&mut objects as *mut Vec<LoadedObject>).cast(),
        );
    }
    objects
}

/// Reads one little-endian `u64` of loaded memory.
///
/// # Safety
/// `address` must be mapped and readable for 8 bytes.
unsafe fn read_word(address: u64) -> u64 {
    // SAFETY: the caller guarantees the 8 bytes are readable.
    unsafe { std::ptr::read_unaligned(address as usize as *const u64) }
}

/// The dynamic relocation table (`DT_RELA`) of `object`, as
/// `(r_offset, r_info, r_addend)` triples.
fn dynamic_relocations(object: &LoadedObject) -> Vec<(u64, u64, i64)> {
    let Some(dynamic) = &object.dynamic else {
        return Vec::new();
    };
    if !object.contains(dynamic) {
        return Vec::new();
    }
    let (mut rela, mut rela_size, mut rela_entry) = (None, 0u64, RELA_SIZE);
    let mut at = dynamic.start;
    while at.saturating_add(16) <= dynamic.end {
        // SAFETY: `at..at + 16` lies inside the object's mapped PT_DYNAMIC.
        let (tag, value) = unsafe { (read_word(at) as i64, read_word(at + 8)) };
        match tag {
            DT_NULL => break,
            DT_RELA => rela = Some(value),
            DT_RELASZ => rela_size = value,
            DT_RELAENT => rela_entry = value,
            _ => {}
        }
        at += 16;
    }
    let Some(table) = rela.and_then(|value| object.dynamic_pointer(value, rela_size)) else {
        return Vec::new();
    };
    if rela_entry < RELA_SIZE {
        return Vec::new();
    }
    (0..rela_size / rela_entry)
        .map(|index| {
            let entry = table + index * rela_entry;
            // SAFETY: the whole table lies in a mapped segment of the object
            // (checked by `dynamic_pointer`), and entry + 24 <= table end.
            unsafe {
                (
                    read_word(entry),
                    read_word(entry + 8),
                    read_word(entry + 16) as i64,
                )
            }
        })
        .collect()
}

/// Points every loaded object's GOT entries for the originals at the copies,
/// as `ld.so` binds a library's references to an executable's copy.
fn redirect_libraries(copies: &[Copy], maps: &Mappings, page: u64) -> Result<(), Failure> {
    for object in loaded_objects() {
        for (r_offset, r_info, _) in dynamic_relocations(&object) {
            let r_type = r_info as u32;
            if (r_type != R_X86_64_GLOB_DAT && r_type != R_X86_64_64) || r_info >> 32 == 0 {
                continue;
            }
            let slot = object.base.wrapping_add(r_offset);
            if !object.contains(&(slot..slot.saturating_add(8))) {
                continue;
            }
            // SAFETY: the slot lies inside a mapped segment of the object.
            let value = unsafe { read_word(slot) };
            if let Some(redirected) = copies.iter().find_map(|copy| copy.redirect(value)) {
                maps.write_word(slot, redirected, page)?;
            }
        }
    }
    Ok(())
}

/// This process's mappings and their protections, from `/proc/self/maps`.
struct Mappings {
    mappings: Vec<(Range<u64>, c_int)>,
}

impl Mappings {
    fn read() -> Result<Self, Failure> {
        let text = std::fs::read_to_string("/proc/self/maps")
            .map_err(|error| Failure::io("/proc/self/maps", &error))?;
        let mappings = text
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                let (start, end) = fields.next()?.split_once('-')?;
                let start = u64::from_str_radix(start, 16).ok()?;
                let end = u64::from_str_radix(end, 16).ok()?;
                let permissions = fields.next()?.as_bytes();
                let flag = |at: usize, letter: u8, prot: c_int| {
                    if permissions.get(at) == Some(&letter) {
                        prot
                    } else {
                        0
                    }
                };
                let prot = flag(0, b'r', libc::PROT_READ)
                    | flag(1, b'w', libc::PROT_WRITE)
                    | flag(2, b'x', libc::PROT_EXEC);
                Some((start..end, prot))
            })
            .collect();
        Ok(Self { mappings })
    }

    /// Whether `address` is in an executable mapping: code.
    fn is_executable(&self, address: u64) -> bool {
        self.mappings
            .iter()
            .any(|(range, prot)| range.contains(&address) && prot & libc::PROT_EXEC != 0)
    }

    /// Writes `value` at `slot`, making its page (of the host's `page` bytes)
    /// writable for the write if it is not (a RELRO GOT) and giving it its
    /// protection back afterwards.
    fn write_word(&self, slot: u64, value: u64, page: u64) -> Result<(), Failure> {
        let prot = self
            .mappings
            .iter()
            .find(|(range, _)| range.start <= slot && slot.saturating_add(8) <= range.end)
            .map(|(_, prot)| *prot)
            .ok_or_else(|| Failure::message(format!("GOT entry at {slot:#x} is in no mapping")))?;
        let page = slot & !(page - 1);
        let writable = prot & libc::PROT_WRITE != 0;
        let protect = |prot: c_int| {
            // SAFETY: changes only the protection of the one page holding the
            // GOT slot; read permission is kept throughout.
            let status = unsafe { libc::mprotect(page as usize as *mut c_void, 8, prot) };
            if status == 0 {
                Ok(())
            } else {
                Err(Failure::io(
                    &format!("cannot change the protection of the GOT page at {page:#x}"),
                    &std::io::Error::last_os_error(),
                ))
            }
        };
        if !writable {
            protect(prot | libc::PROT_READ | libc::PROT_WRITE)?;
        }
        // SAFETY: the slot is mapped and now writable; it holds a pointer that
        // only the dynamic linker wrote, and no other thread runs yet.
        unsafe { std::ptr::write_unaligned(slot as usize as *mut u64, value) };
        if !writable {
            protect(prot)?;
        }
        Ok(())
    }
}

/// The host's page size, the granule of `mprotect` (4 KiB if the kernel
/// does not say, as the region could not be mapped then anyway).
fn page_size() -> u64 {
    modload_platform::host::host_page_size().map_or(4096, modload::PageSize::bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reach_matches_the_fields() {
        let low = 0x4000_0000..0x4400_0000;
        let pc = Reach {
            pc_relative: true,
            ..Reach::default()
        };
        assert!(pc.holds(0x3000_0000, &low));
        assert!(!pc.holds(0x7f00_0000_0000, &low));
        assert!(!pc.holds(0xc400_0000, &low));
        let signed = Reach {
            signed_absolute: true,
            ..Reach::default()
        };
        assert!(signed.holds(0x3fff_0000, &low));
        assert!(!signed.holds(0x8000_0000, &low));
        let unsigned = Reach {
            unsigned_absolute: true,
            ..Reach::default()
        };
        assert!(unsigned.holds(0x8000_0000, &low));
        assert!(!unsigned.holds(0x1_0000_0000, &low));
        assert!(Reach::default().holds(u64::MAX, &low));
    }

    #[test]
    fn redirects_pointers_into_copies_and_to_stubs() {
        let data = Copy {
            original: 0x7f00_0000_1000,
            copy: 0x3fff_f000,
            size: 16,
        };
        assert_eq!(data.redirect(0x7f00_0000_1000), Some(0x3fff_f000));
        assert_eq!(data.redirect(0x7f00_0000_100f), Some(0x3fff_f00f));
        assert_eq!(data.redirect(0x7f00_0000_1010), None);
        assert_eq!(data.redirect(0x7f00_0000_0fff), None);
        let stub = Copy {
            original: 0x7f00_0000_2000,
            copy: 0x3fff_f800,
            size: 0,
        };
        assert_eq!(stub.redirect(0x7f00_0000_2000), Some(0x3fff_f800));
        assert_eq!(stub.redirect(0x7f00_0000_2001), None);
        let bytes = jump_stub(0x1122_3344_5566_7788);
        assert_eq!(bytes[..6], [0xff, 0x25, 0, 0, 0, 0]);
        assert_eq!(bytes[6..14], 0x1122_3344_5566_7788u64.to_le_bytes());
        assert_eq!(bytes[14..], [0xcc, 0xcc]);
    }

    #[test]
    fn knows_data_objects_from_functions() {
        // Only the addresses of libc's symbols are taken, nothing is read.
        let optind = std::ptr::addr_of!(optind_symbol::optind) as usize as u64;
        let stdout = std::ptr::addr_of!(optind_symbol::stdout) as usize as u64;
        let printf = libc::printf as *const () as usize as u64;
        assert_eq!(data_object_size(optind), Some(4));
        assert_eq!(data_object_size(stdout), Some(8));
        assert_eq!(data_object_size(printf), None);
        assert_eq!(data_object_size(optind + 1), None);
    }

    mod optind_symbol {
        extern "C" {
            pub static optind: std::ffi::c_int;
            pub static stdout: *mut std::ffi::c_void;
        }
    }
}
