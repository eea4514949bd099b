//! Fields at the edges of their ranges, for any architecture: an object with
//! one relocation of each checked type, each against its own undefined
//! symbol, and the symbol values that make each field hold an exact value X
//! (the largest the type accepts, the smallest, one past either, a misaligned
//! one). The ranges come from the psABIs, written by the tests; nothing here
//! asks the loader what it accepts.

use std::path::{Path, PathBuf};

use super::{run, Case, InputObject, Layout, Outcome, Run};

/// What a field's value X is measured from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// X = S + A.
    Absolute,
    /// X = S + A - P.
    Place,
    /// X = S + A - Page(P), Page(v) = v & !0xfff: ADRP's checked value is
    /// Page(S + A) - Page(P), which fits exactly when this X does.
    Page,
}

/// One checked relocation of an edge object: the symbol it is against and
/// the values of X its type accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EdgeType {
    /// The undefined symbol only this relocation uses.
    pub symbol: &'static str,
    /// The psABI name of the type, which both linkers' errors must contain.
    pub type_name: &'static str,
    /// What X is measured from.
    pub origin: Origin,
    /// The smallest accepted X.
    pub low: i64,
    /// The largest accepted X.
    pub high: i64,
    /// X must be a multiple of this (1: no rule).
    pub align: i64,
    /// Whether a linker checks the range (else any X fits and there is no
    /// "one past").
    pub range_checked: bool,
}

impl EdgeType {
    /// A type whose X must lie in `low..=high`.
    pub const fn new(
        symbol: &'static str,
        type_name: &'static str,
        origin: Origin,
        low: i64,
        high: i64,
    ) -> EdgeType {
        EdgeType {
            symbol,
            type_name,
            origin,
            low,
            high,
            align: 1,
            range_checked: true,
        }
    }

    /// A type that takes any X (64-bit fields, low-12-bit fields).
    pub const fn anything(
        symbol: &'static str,
        type_name: &'static str,
        origin: Origin,
    ) -> EdgeType {
        EdgeType {
            range_checked: false,
            ..EdgeType::new(symbol, type_name, origin, i64::MIN, i64::MAX)
        }
    }

    /// The same type, with X also a multiple of `align` (a power of two); the
    /// ends move inwards to the nearest multiples.
    pub const fn aligned(self, align: i64) -> EdgeType {
        let mask = align - 1;
        EdgeType {
            align,
            low: (self.low + mask) & !mask,
            high: self.high & !mask,
            ..self
        }
    }

    /// The first aligned X above the range, if the range is checked.
    pub fn past_high(&self) -> Option<i64> {
        self.range_checked
            .then(|| self.high.checked_add(self.align))
            .flatten()
    }

    /// The first aligned X below the range, if the range is checked.
    pub fn past_low(&self) -> Option<i64> {
        self.range_checked
            .then(|| self.low.checked_sub(self.align))
            .flatten()
    }

    /// An X inside the range that is a multiple of half the alignment but not
    /// of the alignment (a loader checking too weak a rule accepts it).
    pub fn misaligned(&self) -> Option<i64> {
        (self.align > 1).then(|| self.high - self.align / 2)
    }
}

/// The place and addend of the relocation against `symbol` in `object` (the
/// first, if several), at the addresses of `layout` (module 0).
pub fn place_of(object: &InputObject, layout: &Layout, symbol: &str) -> (u64, i64) {
    for (section, relocations) in &object.relocations {
        for relocation in relocations {
            if object.symbol_name(relocation.symbol) == symbol {
                let area = layout
                    .section_area(0, *section)
                    .unwrap_or_else(|| panic!("section {section} was not loaded"));
                return (area.address + relocation.offset, relocation.addend);
            }
        }
    }
    panic!("no relocation against {symbol}");
}

/// An edge object, linked once with every symbol in reach to learn where
/// each field is, and the cases that put its symbols anywhere.
pub struct Edges {
    /// The object.
    pub object: PathBuf,
    /// The object, read by the oracle.
    pub input: InputObject,
    /// Every edge relocation, checked or not.
    pub types: Vec<EdgeType>,
    /// modload's layout of the object (it does not depend on the values).
    pub layout: Layout,
    /// `--at`.
    pub at: u64,
    layout_symbols: Vec<(String, u64)>,
    _run: Run,
}

impl Edges {
    /// Links `object` at `at` with the first of `candidates` (symbol values
    /// in reach of every field) that both linkers accept, and checks that
    /// they agree. Panics if none links.
    pub fn new(
        modload: &Path,
        object: PathBuf,
        at: u64,
        types: &[EdgeType],
        candidates: impl IntoIterator<Item = Vec<(String, u64)>>,
    ) -> Edges {
        let input = InputObject::parse(&object.display().to_string(), &crate::read(&object));
        let (run, layout_symbols) = candidates
            .into_iter()
            .find_map(|symbols| {
                let case = Case::new("edges-layout", std::slice::from_ref(&object), at)
                    .symbols(symbols.iter().map(|(name, value)| (name.as_str(), *value)));
                let run = run(modload, &case);
                matches!(run.outcome, Outcome::Compared { .. }).then_some((run, symbols))
            })
            .expect("the edge object links with every symbol in reach");
        let layout = run.assert_agree().1.clone();
        Edges {
            object,
            input,
            types: types.to_vec(),
            layout,
            at,
            layout_symbols,
            _run: run,
        }
    }

    /// The edge relocation against `symbol`.
    pub fn edge(&self, symbol: &str) -> &EdgeType {
        self.types
            .iter()
            .find(|edge| edge.symbol == symbol)
            .unwrap_or_else(|| panic!("no edge symbol {symbol}"))
    }

    /// The place and addend of the relocation against `symbol`.
    pub fn place_of(&self, symbol: &str) -> (u64, i64) {
        place_of(&self.input, &self.layout, symbol)
    }

    /// The value of `symbol` that makes its X equal `x`: S = x - A plus P,
    /// Page(P) or nothing, modulo 2^64.
    pub fn value(&self, symbol: &str, x: i64) -> u64 {
        let (place, addend) = self.place_of(symbol);
        let base = match self.edge(symbol).origin {
            Origin::Absolute => 0,
            Origin::Place => place,
            Origin::Page => place & !0xfff,
        };
        base.wrapping_add_signed(x).wrapping_sub(addend as u64)
    }

    /// A case with every symbol at the X that `pick` chooses for its type.
    /// If modload refuses it, the layout comes from the link in reach.
    pub fn case(&self, name: &str, pick: impl Fn(&EdgeType) -> i64) -> Case {
        let mut case = Case::new(name, std::slice::from_ref(&self.object), self.at)
            .laid_out_with(&self.layout_symbols);
        for edge in &self.types {
            case = case.symbol(edge.symbol, self.value(edge.symbol, pick(edge)));
        }
        case
    }

    /// A case with every symbol at the largest X of its type.
    pub fn at_high(&self, name: &str) -> Case {
        self.case(name, |edge| edge.high)
    }

    /// A case with every symbol at the smallest X of its type.
    pub fn at_low(&self, name: &str) -> Case {
        self.case(name, |edge| edge.low)
    }

    /// `base` with `symbol` moved to make its X equal `x`.
    pub fn moved(&self, base: Case, symbol: &str, x: i64) -> Case {
        base.redefine(symbol, self.value(symbol, x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_ranges_and_the_values_past_them() {
        let branch = EdgeType::new("b", "B", Origin::Place, -(1 << 27), (1 << 27) - 1).aligned(4);
        assert_eq!((branch.low, branch.high), (-(1 << 27), (1 << 27) - 4));
        assert_eq!(branch.past_high(), Some(1 << 27));
        assert_eq!(branch.past_low(), Some(-(1 << 27) - 4));
        assert_eq!(branch.misaligned(), Some((1 << 27) - 6));
        let byte = EdgeType::new("d", "D", Origin::Absolute, -128, 255);
        assert_eq!((byte.past_low(), byte.past_high()), (Some(-129), Some(256)));
        assert_eq!(byte.misaligned(), None);
        let low12 = EdgeType::anything("l", "L", Origin::Absolute).aligned(16);
        assert_eq!((low12.low, low12.high), (i64::MIN, i64::MAX - 15));
        assert_eq!((low12.past_low(), low12.past_high()), (None, None));
        assert_eq!(low12.misaligned().map(|x| x & 0xf), Some(8));
    }
}
