//! modload on the host, as the benchmarks drive it: a region, a namespace
//! with the host's exports, and a load split into its stages so each can be
//! timed on its own.

use std::ffi::CString;
use std::sync::atomic::AtomicI64;
use std::time::{Duration, Instant};

use modload::{Loader, Module, Namespace, Object, Region, VirtAddr};
use modload_platform::host::{
    new_packed_region, new_region, PackedRegion, Placement, HOST_PROTECTION,
};

use crate::objects;

/// Bytes of the region every benchmark loads into: room for the 5,000
/// scaling modules (three pages each) with plenty to spare.
pub const REGION_SIZE: usize = 256 << 20;

/// A fresh region of [`REGION_SIZE`] bytes next to the shared libraries, so
/// modules reach libc with 32-bit displacements.
pub fn region() -> Result<&'static Region, String> {
    new_region(REGION_SIZE, Placement::Anywhere).map_err(|error| format!("region: {error}"))
}

/// A fresh packed region of [`REGION_SIZE`] bytes (a `memfd`, with its page
/// writer) next to the shared libraries, for [`packed_loader`].
pub fn packed_region() -> Result<PackedRegion, String> {
    new_packed_region(REGION_SIZE, Placement::Anywhere)
        .map_err(|error| format!("packed region: {error}"))
}

/// The address of `name` in this process (libc and friends), through `dlsym`.
pub fn process_symbol(name: &str) -> Option<VirtAddr> {
    let name = CString::new(name).ok()?;
    // SAFETY: `name` is a valid NUL-terminated string; `RTLD_DEFAULT` searches
    // the objects already loaded and returns null when the name is not there.
    let address = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    (!address.is_null()).then(|| VirtAddr::from_ptr(address.cast::<u8>().cast_const()))
}

/// Adds every name in `imports` to `namespace` as a host export, from this
/// process's symbols: what an embedder does once at boot, and what ORC's
/// process-symbol generator caches after the first lookup.
pub fn export_process_symbols(namespace: &Namespace, imports: &[String]) -> Result<(), String> {
    for name in imports {
        let address =
            process_symbol(name).ok_or_else(|| format!("{name}: not found in this process"))?;
        // Already there is fine: several objects import the same libc names.
        let _ = namespace.add_host_export(name, address);
    }
    Ok(())
}

/// The counter the scaling modules read (`host_counter`).
pub static HOST_COUNTER: AtomicI64 = AtomicI64::new(0);

/// The host function the scaling modules call.
pub extern "C" fn host_add(a: i64, b: i64) -> i64 {
    a.wrapping_add(b)
}

/// Adds the host exports the scaling modules import: `host_add`,
/// `host_counter` and module 0's functions (which the host stands in for).
pub fn export_scale_host(namespace: &Namespace) {
    let add = VirtAddr::new(host_add as *const () as usize as u64);
    let counter = VirtAddr::from_ptr(HOST_COUNTER.as_ptr().cast::<u8>().cast_const());
    let _ = namespace.add_host_export("host_add", add);
    let _ = namespace.add_host_export("host_counter", counter);
    for name in objects::SCALE_ROOT_IMPORTS {
        let _ = namespace.add_host_export(name, add);
    }
}

/// Scaling modules `1..=count` with their names (`m000001`, ...), in load order.
pub fn scale_modules(template: &[u8], count: usize) -> Result<Vec<(String, Vec<u8>)>, String> {
    (1..=count)
        .map(|number| {
            objects::scale_module(template, number).map(|bytes| (format!("m{number:06}"), bytes))
        })
        .collect()
}

/// Time spent in each stage of one load.
#[derive(Clone, Copy, Debug, Default)]
pub struct StageTimes {
    /// `Object::parse`.
    pub parse: Duration,
    /// `Loader::plan`.
    pub plan: Duration,
    /// `Planned::allocate`: reserve, zero, copy.
    pub allocate: Duration,
    /// `Placed::relocate`: resolution and relocation together.
    pub relocate: Duration,
    /// `Relocated::finalize`: page permissions.
    pub finalize: Duration,
    /// `Finalized::start`: publish the exports, run constructors.
    pub start: Duration,
}

impl StageTimes {
    /// The whole load.
    pub fn total(&self) -> Duration {
        self.parse + self.plan + self.allocate + self.relocate + self.finalize + self.start
    }
}

/// Loads `bytes` stage by stage, timing each stage.
pub fn load_timed<'l>(
    loader: &Loader<'l>,
    name: &str,
    bytes: &[u8],
) -> Result<(Module<'l>, StageTimes), String> {
    let mut times = StageTimes::default();
    let error = |error: modload::LoadError| format!("{name}: {error}");
    let clock = Instant::now();
    let object = Object::parse(name, bytes).map_err(error)?;
    let t1 = Instant::now();
    let planned = loader.plan(object).map_err(error)?;
    let t2 = Instant::now();
    let placed = planned.allocate().map_err(error)?;
    let t3 = Instant::now();
    let relocated = placed.relocate().map_err(error)?;
    let t4 = Instant::now();
    let finalized = relocated.finalize().map_err(error)?;
    let t5 = Instant::now();
    // SAFETY: the benchmark objects are generated by this crate; their only
    // constructors are none, and nothing here calls their code.
    let module = unsafe { finalized.start() }.map_err(error)?;
    let t6 = Instant::now();
    times.parse = t1 - clock;
    times.plan = t2 - t1;
    times.allocate = t3 - t2;
    times.relocate = t4 - t3;
    times.finalize = t5 - t4;
    times.start = t6 - t5;
    Ok((module, times))
}

/// Loads `bytes` in one go, as an embedder would.
pub fn load<'l>(loader: &Loader<'l>, name: &str, bytes: &[u8]) -> Result<Module<'l>, String> {
    // SAFETY: as in `load_timed`: generated objects, nothing runs here.
    unsafe { loader.load(name, bytes) }.map_err(|error| format!("{name}: {error}"))
}

/// Unloads `module`, which nothing may use.
pub fn unload(module: Module<'_>) -> Result<(), String> {
    module
        .unload()
        .map_err(|refused| format!("unload refused: {:?}", refused.error))
}

/// The bytes of `object` with its relocation sections turned into plain
/// unloaded data: the same sections, symbols and imports, nothing to patch.
/// Loading it measures everything `relocate` does except applying
/// relocations, so the difference to the real object is the relocation cost.
pub fn without_relocations(bytes: &[u8]) -> Result<Vec<u8>, String> {
    const SHT_PROGBITS: u32 = 1;
    const SHT_RELA: u32 = 4;
    const SHT_REL: u32 = 9;
    let mut out = bytes.to_vec();
    let field = |bytes: &[u8], at: usize, len: usize| -> Option<u64> {
        let mut value = [0u8; 8];
        value
            .get_mut(..len)?
            .copy_from_slice(bytes.get(at..at + len)?);
        Some(u64::from_le_bytes(value))
    };
    let shoff = field(bytes, 0x28, 8).ok_or("short ELF header")? as usize;
    let shentsize = field(bytes, 0x3a, 2).ok_or("short ELF header")? as usize;
    let shnum = field(bytes, 0x3c, 2).ok_or("short ELF header")? as usize;
    for index in 0..shnum {
        let at = shoff + index * shentsize + 4;
        let kind = field(bytes, at, 4).ok_or("section header out of bounds")? as u32;
        if kind == SHT_RELA || kind == SHT_REL {
            if let Some(slot) = out.get_mut(at..at + 4) {
                slot.copy_from_slice(&SHT_PROGBITS.to_le_bytes());
            }
        }
    }
    Ok(out)
}

/// The number of relocations `bytes` holds, from modload's own plan.
pub fn relocation_count(loader: &Loader<'_>, name: &str, bytes: &[u8]) -> Result<u64, String> {
    let object = Object::parse(name, bytes).map_err(|error| error.to_string())?;
    let planned = loader.plan(object).map_err(|error| error.to_string())?;
    Ok(planned.plan().relocation_total())
}

/// Bytes `allocate` copies for `bytes`: the sum of the loaded sections' file
/// contents (text, read-only data, data; not bss).
pub fn copied_bytes(loader: &Loader<'_>, name: &str, bytes: &[u8]) -> Result<u64, String> {
    let object = Object::parse(name, bytes).map_err(|error| error.to_string())?;
    let planned = loader.plan(object).map_err(|error| error.to_string())?;
    let placed = planned.allocate().map_err(|error| error.to_string())?;
    Ok(placed
        .pieces()
        .iter()
        .filter(|piece| piece.section.is_some() && piece.kind != modload::SectionKind::Bss)
        .map(|piece| piece.size)
        .sum())
}

/// A loader for `namespace` in `region` with the host's `mprotect`.
pub fn loader<'l>(namespace: &'l Namespace, region: &'static Region) -> Loader<'l> {
    Loader::new(namespace, region, &HOST_PROTECTION)
}

/// A packed loader ([`Loader::packed`]) for `namespace` in `packed`'s region,
/// with the host's `mprotect` and `packed`'s page writer.
pub fn packed_loader<'l>(namespace: &'l Namespace, packed: &PackedRegion) -> Loader<'l> {
    Loader::new(namespace, packed.region, &HOST_PROTECTION).packed(packed.writer)
}
