//! The modules embedded in the image, as a Unix `ar` archive (what `ar rc`
//! writes): the kernel walks it and loads members one at a time, by name.

/// The archive the runner built for this image.
pub static MODULES: &[u8] = include_bytes!(env!("MODLOAD_MODULE_ARCHIVE"));

const MAGIC: &[u8] = b"!<arch>\n";
const HEADER: usize = 60;

/// The member called `name` (without the trailing `/` GNU ar adds).
pub fn member(name: &str) -> Option<&'static [u8]> {
    members()
        .find(|(member, _)| *member == name)
        .map(|(_, bytes)| bytes)
}

/// Every member as `(name, bytes)`, skipping the symbol index and the long-name
/// table. A malformed archive simply ends the walk.
pub fn members() -> impl Iterator<Item = (&'static str, &'static [u8])> {
    let mut at = MAGIC.len();
    let valid = MODULES.starts_with(MAGIC);
    core::iter::from_fn(move || loop {
        if !valid {
            return None;
        }
        let header = MODULES.get(at..at.checked_add(HEADER)?)?;
        let name = core::str::from_utf8(header.get(..16)?).ok()?.trim_end();
        let size: usize = core::str::from_utf8(header.get(48..58)?)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let start = at + HEADER;
        let bytes = MODULES.get(start..start.checked_add(size)?)?;
        // Members start on even offsets.
        at = start + size + (size & 1);
        if name == "/" || name == "//" || name.starts_with("/SYM") {
            continue;
        }
        return Some((name.trim_end_matches('/'), bytes));
    })
}
