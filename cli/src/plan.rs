//! `modload plan`: the loader's exact layout for one object, before anything
//! is allocated.

use std::fmt::Write as _;
use std::io::Write as _;

use modload::{
    LoadError, Loader, Machine, Namespace, NoProtection, Object, PageSize, Permissions, Plan,
    Region, SectionKind, Segment,
};

use crate::args::PlanArgs;
use crate::json::{json_string, machine_name};
use crate::Failure;

/// A region on `bytes` of the heap, with pages of `page` bytes, for loads
/// that protect nothing ([`NoProtection`]): planning and linking for another
/// machine, whose page size need not be this host's. Never freed.
pub fn heap_region(bytes: usize, page: PageSize) -> Result<&'static Region, Failure> {
    let page_bytes = page.bytes() as usize;
    let Some(with_room) = bytes.checked_add(page_bytes) else {
        return Err(Failure::message(format!(
            "{bytes} bytes of region are too many"
        )));
    };
    let memory: &'static mut [u8] = Box::leak(vec![0u8; with_room].into_boxed_slice());
    let start = memory.as_mut_ptr();
    let start = start.wrapping_add(start.align_offset(page_bytes));
    let region: &'static Region = Box::leak(Box::new(Region::new()));
    // SAFETY: the leaked buffer lives for the rest of the process, is
    // readable and writable, holds `bytes` after `start` (a page was added for
    // the alignment), and nothing but this region uses it.
    unsafe { region.init_with_page_size(start, bytes, page) }
        .map_err(|error| Failure::message(format!("region of {bytes} bytes: {error}")))?;
    Ok(region)
}

/// An empty region of each page size for sizing plans: planning allocates
/// nothing, but its layout follows the region's page size.
pub fn scratch_region(page: PageSize) -> &'static Region {
    static SCRATCH_4K: Region = Region::with_page_size(PageSize::Size4KiB);
    static SCRATCH_16K: Region = Region::with_page_size(PageSize::Size16KiB);
    static SCRATCH_64K: Region = Region::with_page_size(PageSize::Size64KiB);
    match page {
        PageSize::Size4KiB => &SCRATCH_4K,
        PageSize::Size16KiB => &SCRATCH_16K,
        PageSize::Size64KiB => &SCRATCH_64K,
    }
}

/// An object's plan and machine, worked out on its own.
pub struct Planned {
    /// The layout.
    pub plan: Plan,
    /// The machine the object is for.
    pub machine: Machine,
}

/// Parses and plans `bytes` against an empty namespace, so the plan shows the
/// object as if it were the first module loaded.
pub fn plan_alone(name: &str, bytes: &[u8], region: &'static Region) -> Result<Planned, LoadError> {
    let namespace = Namespace::new();
    let loader = Loader::new(&namespace, region, &NoProtection);
    let planned = loader.plan(Object::parse(name, bytes)?)?;
    Ok(Planned {
        plan: planned.plan().clone(),
        machine: planned.object().machine(),
    })
}

/// Runs `modload plan`.
pub fn command(args: &PlanArgs) -> Result<(), Failure> {
    let name = args.object.to_string_lossy();
    let bytes = std::fs::read(&args.object).map_err(|error| Failure::io(&name, &error))?;
    let region = scratch_region(args.page_size);
    let planned = plan_alone(&name, &bytes, region).map_err(|error| Failure::load(&error))?;
    let output = if args.json {
        json(&name, &planned)
    } else {
        table(&name, &planned)
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(output.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|error| Failure::io("cannot write the plan", &error))
}

/// Kinds in layout order, with the names both output formats use.
const KINDS: [(SectionKind, &str); 6] = [
    (SectionKind::Text, "text"),
    (SectionKind::Stubs, "stubs"),
    (SectionKind::ReadOnly, "readonly"),
    (SectionKind::Got, "got"),
    (SectionKind::Data, "data"),
    (SectionKind::Bss, "bss"),
];

const SEGMENTS: [(Segment, &str); 3] = [
    (Segment::Code, "code"),
    (Segment::ReadOnly, "readonly"),
    (Segment::Writable, "writable"),
];

/// `r-x` style, as `readelf` and `/proc/self/maps` show permissions.
fn permissions(permissions: Permissions) -> String {
    [
        (Permissions::READ, 'r'),
        (Permissions::WRITE, 'w'),
        (Permissions::EXECUTE, 'x'),
    ]
    .iter()
    .map(|(flag, letter)| {
        if permissions.contains(*flag) {
            *letter
        } else {
            '-'
        }
    })
    .collect()
}

// `write!` to a String cannot fail, so its results are ignored below.

fn table(name: &str, planned: &Planned) -> String {
    let plan = &planned.plan;
    let mut out = String::new();
    let _ = writeln!(out, "module      {name}");
    let _ = writeln!(out, "machine     {}", machine_name(planned.machine));
    let _ = writeln!(out, "page size   {}", plan.page_size());
    let _ = writeln!(
        out,
        "size        {} bytes, aligned to {}",
        plan.size(),
        plan.alignment().bytes()
    );
    let _ = writeln!(out, "got slots   {}", plan.got_slots());
    let _ = writeln!(out, "stub slots  {}", plan.stub_slots());

    let _ = writeln!(
        out,
        "\n{:<10} {:>10} {:>10} {:>6}",
        "kind", "offset", "size", "align"
    );
    for (kind, label) in KINDS {
        let extent = plan.kind(kind);
        let _ = writeln!(
            out,
            "{label:<10} {:>#10x} {:>10} {:>6}",
            extent.offset,
            extent.size,
            extent.align.bytes()
        );
    }

    let _ = writeln!(
        out,
        "\n{:<10} {:>10} {:>10} {:>6}",
        "segment", "offset", "size", "perms"
    );
    for (segment, label) in SEGMENTS {
        let extent = plan.segment(segment);
        let _ = writeln!(
            out,
            "{label:<10} {:>#10x} {:>10} {:>6}",
            extent.offset,
            extent.size,
            permissions(segment.permissions())
        );
    }

    let counts: Vec<(String, u64)> = plan
        .relocation_counts()
        .iter()
        .map(|(kind, count)| (kind.to_string(), *count))
        .collect();
    let width = counts
        .iter()
        .map(|(kind, _)| kind.len())
        .chain(["relocation".len()])
        .max()
        .unwrap_or_default();
    let _ = writeln!(out, "\n{:<width$} {:>8}", "relocation", "count");
    for (kind, count) in &counts {
        let _ = writeln!(out, "{kind:<width$} {count:>8}");
    }
    let _ = writeln!(out, "{:<width$} {:>8}", "total", plan.relocation_total());
    out
}

fn json(name: &str, planned: &Planned) -> String {
    let plan = &planned.plan;
    let mut out = String::from("{");
    let _ = write!(
        out,
        "\"module\":{},\"machine\":{},\"page_size\":{},\"size\":{},\"alignment\":{},",
        json_string(name),
        json_string(machine_name(planned.machine)),
        plan.page_size().bytes(),
        plan.size(),
        plan.alignment().bytes()
    );
    out.push_str("\"kinds\":{");
    for (index, (kind, label)) in KINDS.iter().enumerate() {
        let extent = plan.kind(*kind);
        let _ = write!(
            out,
            "{}\"{label}\":{{\"offset\":{},\"size\":{},\"align\":{}}}",
            if index == 0 { "" } else { "," },
            extent.offset,
            extent.size,
            extent.align.bytes()
        );
    }
    out.push_str("},\"segments\":{");
    for (index, (segment, label)) in SEGMENTS.iter().enumerate() {
        let extent = plan.segment(*segment);
        let _ = write!(
            out,
            "{}\"{label}\":{{\"offset\":{},\"size\":{},\"permissions\":\"{}\"}}",
            if index == 0 { "" } else { "," },
            extent.offset,
            extent.size,
            permissions(segment.permissions())
        );
    }
    let _ = write!(
        out,
        "}},\"got_slots\":{},\"stub_slots\":{},\"relocations\":{{",
        plan.got_slots(),
        plan.stub_slots()
    );
    for (index, (kind, count)) in plan.relocation_counts().iter().enumerate() {
        let _ = write!(
            out,
            "{}{}:{count}",
            if index == 0 { "" } else { "," },
            json_string(&kind.to_string())
        );
    }
    let _ = writeln!(out, "}},\"relocation_total\":{}}}", plan.relocation_total());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_permissions() {
        assert_eq!(permissions(Permissions::CODE), "r-x");
        assert_eq!(permissions(Permissions::READ_WRITE), "rw-");
        assert_eq!(permissions(Permissions::READ_ONLY), "r--");
    }
}
