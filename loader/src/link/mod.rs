//! Linking a placed module: resolving its names, filling its GOT and
//! stubs, and applying its relocations.

pub(crate) mod lazy;
