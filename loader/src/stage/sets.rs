//! Loading a module set: several objects parsed, joined into one
//! ([`Object::join_with_limits`]) and loaded as one module.

use alloc::vec::Vec;

use crate::error::LoadError;
use crate::loader::Loader;
use crate::module::Module;
use crate::object::Object;

impl<'l> Loader<'l> {
    /// Parses each of `members` (`(name, bytes)`) with [`Loader::parse`]
    /// (limits, and signatures when required) and joins them into one
    /// object named `name` ([`Object::join_with_limits`], with this loader's
    /// limits).
    pub fn parse_set<'a>(
        &self,
        name: &str,
        members: &[(&str, &'a [u8])],
    ) -> Result<Object<'a>, LoadError> {
        let mut objects = Vec::with_capacity(members.len());
        for (member, bytes) in members {
            let object = self.parse(member, bytes).map_err(|error| LoadError {
                module: name.into(),
                member: Some(error.module),
                kind: error.kind,
            })?;
            objects.push(object);
        }
        Object::join_with_limits(name, objects, &self.limits)
    }

    /// Loads `members` as one module named `name`, as [`Loader::load`]
    /// loads one object: [`Loader::parse_set`], then plan, allocate,
    /// relocate, finalize and start. On error nothing stays allocated and
    /// the namespace is unchanged; the module unloads as one.
    ///
    /// # Safety
    /// Starting a module runs its constructors, and later calls run its code:
    /// every member must be code the caller trusts to run in this program.
    pub unsafe fn load_set(
        &self,
        name: &str,
        members: &[(&str, &[u8])],
    ) -> Result<Module<'l>, LoadError> {
        let object = self.parse_set(name, members)?;
        let finalized = self.plan(object)?.allocate()?.relocate()?.finalize()?;
        // SAFETY: forwarded from this function's contract.
        unsafe { finalized.start() }
    }
}
