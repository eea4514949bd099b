//! `layout.json` as `modload link` writes it: where each module and each of
//! its areas went, and the final address of every exported symbol.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::json::Json;

/// One linked module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkedModule {
    /// Position in the load order.
    pub index: usize,
    /// The object's file stem.
    pub name: String,
    /// The object's path as given on the command line.
    pub input: String,
    /// The image file, relative to the output directory.
    pub file: String,
    /// Target address of the first byte of the image.
    pub base: u64,
    /// Bytes of the image.
    pub size: u64,
    /// Alignment of the module's reservation.
    pub alignment: u64,
    /// GOT slots planned.
    pub got_slots: u64,
    /// Stubs or veneers planned.
    pub stub_slots: u64,
    /// Stubs or veneers that calls went through.
    pub stubs_used: u64,
    /// Relocations applied.
    pub relocations: u64,
}

/// One placed piece: an input section or a loader area (GOT, stubs, COMMON).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Area {
    /// Index of the module in the load order.
    pub module: usize,
    /// Input section index, `None` for the loader's own areas.
    pub section: Option<usize>,
    /// Section name, or `.got`, `.stubs`, `COMMON`.
    pub name: String,
    /// `text`, `stubs`, `rodata`, `got`, `data` or `bss`.
    pub kind: String,
    /// Target address.
    pub address: u64,
    /// Bytes.
    pub size: u64,
    /// Offset in the module's image.
    pub offset: u64,
}

impl Area {
    /// Whether `[address, address + len)` lies inside this area.
    pub fn contains(&self, address: u64, len: u64) -> bool {
        address >= self.address
            && address
                .checked_add(len)
                .is_some_and(|end| end <= self.address.saturating_add(self.size))
    }
}

/// A whole `layout.json`, plus the directory it was read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// `x86_64` or `aarch64`.
    pub machine: String,
    /// The `--at` address.
    pub at: u64,
    /// Modules in load order.
    pub modules: Vec<LinkedModule>,
    /// Every area of every module.
    pub areas: Vec<Area>,
    /// Exported symbols and their final addresses.
    pub symbols: BTreeMap<String, u64>,
    /// The output directory, where the images are.
    pub dir: PathBuf,
}

impl Layout {
    /// Reads `dir/layout.json`. Panics with the reason if it is missing or
    /// not what `modload link` writes.
    pub fn read(dir: &Path) -> Layout {
        let path = dir.join("layout.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        Layout::parse(&text, dir).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// Parses the text of a `layout.json` written into `dir`.
    pub fn parse(text: &str, dir: &Path) -> Result<Layout, String> {
        let json = Json::parse(text).map_err(|e| e.to_string())?;
        let modules = array(&json, "modules")?
            .iter()
            .map(|module| {
                Ok(LinkedModule {
                    index: number(module, "index")? as usize,
                    name: string(module, "name")?.to_owned(),
                    input: string(module, "input")?.to_owned(),
                    file: string(module, "file")?.to_owned(),
                    base: address(module, "base")?,
                    size: number(module, "size")?,
                    alignment: number(module, "alignment")?,
                    got_slots: number(module, "got_slots")?,
                    stub_slots: number(module, "stub_slots")?,
                    stubs_used: number(module, "stubs_used")?,
                    relocations: number(module, "relocations")?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let areas = array(&json, "areas")?
            .iter()
            .map(|area| {
                let section = match area.get("section") {
                    Some(Json::Null) => None,
                    Some(value) => Some(
                        value
                            .as_u64()
                            .ok_or("an area's section is not a number or null")?
                            as usize,
                    ),
                    None => return Err(String::from("an area has no section")),
                };
                Ok(Area {
                    module: number(area, "module")? as usize,
                    section,
                    name: string(area, "name")?.to_owned(),
                    kind: string(area, "kind")?.to_owned(),
                    address: address(area, "address")?,
                    size: number(area, "size")?,
                    offset: number(area, "offset")?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let symbols = json
            .get("symbols")
            .and_then(Json::as_object)
            .ok_or("no symbols object")?
            .iter()
            .map(|(name, value)| {
                let text = value.as_str().ok_or("a symbol's address is not a string")?;
                Ok((name.clone(), parse_hex(text)?))
            })
            .collect::<Result<BTreeMap<_, _>, String>>()?;
        Ok(Layout {
            machine: string(&json, "machine")?.to_owned(),
            at: address(&json, "at")?,
            modules,
            areas,
            symbols,
            dir: dir.to_path_buf(),
        })
    }

    /// The areas of module `module`.
    pub fn areas_of(&self, module: usize) -> impl Iterator<Item = &Area> {
        self.areas.iter().filter(move |area| area.module == module)
    }

    /// The area of input section `section` of module `module`.
    pub fn section_area(&self, module: usize, section: usize) -> Option<&Area> {
        self.areas_of(module)
            .find(|area| area.section == Some(section))
    }

    /// Module `module`'s area of kind `kind` with no input section (the GOT,
    /// the stubs, COMMON).
    pub fn loader_area(&self, module: usize, kind: &str) -> Option<&Area> {
        self.areas_of(module)
            .find(|area| area.section.is_none() && area.kind == kind)
    }

    /// The area holding `[address, address + len)`, in any module.
    pub fn area_at(&self, address: u64, len: u64) -> Option<&Area> {
        self.areas.iter().find(|area| area.contains(address, len))
    }

    /// The image of module `module`, read from its file.
    pub fn image(&self, module: usize) -> Vec<u8> {
        let file = &self.modules[module].file;
        crate::read(&self.dir.join(file))
    }
}

fn field<'j>(json: &'j Json, key: &str) -> Result<&'j Json, String> {
    json.get(key).ok_or_else(|| format!("missing `{key}`"))
}

fn array<'j>(json: &'j Json, key: &str) -> Result<&'j [Json], String> {
    field(json, key)?
        .as_array()
        .ok_or_else(|| format!("`{key}` is not an array"))
}

fn string<'j>(json: &'j Json, key: &str) -> Result<&'j str, String> {
    field(json, key)?
        .as_str()
        .ok_or_else(|| format!("`{key}` is not a string"))
}

fn number(json: &Json, key: &str) -> Result<u64, String> {
    field(json, key)?
        .as_u64()
        .ok_or_else(|| format!("`{key}` is not an unsigned integer"))
}

fn address(json: &Json, key: &str) -> Result<u64, String> {
    parse_hex(string(json, key)?)
}

/// `0x`-prefixed hexadecimal, as `layout.json` writes addresses.
pub fn parse_hex(text: &str) -> Result<u64, String> {
    text.strip_prefix("0x")
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .ok_or_else(|| format!("`{text}` is not a 0x-prefixed hex address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_layout() {
        let text = r#"{"machine":"x86_64","at":"0xffffffff80000000",
"modules":[{"index":0,"name":"m1","input":"a/m1.o","file":"0-m1.bin","base":"0xffffffff80000000","size":8192,"alignment":4096,"got_slots":1,"stub_slots":0,"stubs_used":0,"relocations":3}],
"areas":[{"module":0,"section":1,"name":".text","kind":"text","address":"0xffffffff80000000","size":16,"file":"0-m1.bin","offset":0},
 {"module":0,"section":null,"name":".got","kind":"got","address":"0xffffffff80001000","size":8,"file":"0-m1.bin","offset":4096}],
"symbols":{"f":"0xffffffff80000004"}}"#;
        let layout = Layout::parse(text, Path::new("/d")).unwrap();
        assert_eq!(layout.at, 0xffff_ffff_8000_0000);
        assert_eq!(layout.modules[0].size, 8192);
        assert_eq!(layout.section_area(0, 1).unwrap().size, 16);
        assert_eq!(
            layout.loader_area(0, "got").unwrap().address,
            0xffff_ffff_8000_1000
        );
        assert!(layout.area_at(0xffff_ffff_8000_1000, 8).is_some());
        assert!(layout.area_at(0xffff_ffff_8000_1001, 8).is_none());
        assert_eq!(layout.symbols["f"], 0xffff_ffff_8000_0004);
        assert!(Layout::parse("{}", Path::new("/d")).is_err());
    }
}
