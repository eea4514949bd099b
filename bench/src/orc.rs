//! LLVM 22's ORC JIT through its C API, in this process: the same object
//! bytes that modload loads, added to an `LLJIT` and materialized by a lookup.
//!
//! The object linking layer is chosen explicitly, so what is measured is
//! known rather than left to LLJIT's defaults:
//! [`Linker::JitLink`] is `ObjectLinkingLayer` with JITLink's
//! `InProcessMemoryManager` (`LLVMOrcCreateObjectLinkingLayerWithInProcessMemoryManager`),
//! and [`Linker::RuntimeDyld`] is `RTDyldObjectLinkingLayer` with a
//! `SectionMemoryManager`.
//!
//! One load is: wrap the bytes in a `MemoryBuffer` (no copy), add it to the
//! main JITDylib under a fresh `ResourceTracker`, and look up one of its
//! symbols, which links the whole object (ORC materializes an object as a
//! unit): parse, build the link graph, allocate, apply fixups, set page
//! permissions. [`Jit::unload`] removes the tracker, freeing the memory and
//! the symbols, so the same object can be loaded again.

use std::ffi::{c_char, c_void, CStr, CString};
use std::sync::Once;

use llvm_sys::core::LLVMCreateMemoryBufferWithMemoryRange;
use llvm_sys::error::{LLVMDisposeErrorMessage, LLVMErrorRef, LLVMGetErrorMessage};
use llvm_sys::orc2::ee::{
    LLVMOrcCreateObjectLinkingLayerWithInProcessMemoryManager,
    LLVMOrcCreateRTDyldObjectLinkingLayerWithSectionMemoryManager,
};
use llvm_sys::orc2::lljit::{
    LLVMOrcCreateLLJIT, LLVMOrcCreateLLJITBuilder, LLVMOrcDisposeLLJIT,
    LLVMOrcLLJITAddObjectFileWithRT, LLVMOrcLLJITBuilderSetObjectLinkingLayerCreator,
    LLVMOrcLLJITGetGlobalPrefix, LLVMOrcLLJITGetMainJITDylib, LLVMOrcLLJITLookup, LLVMOrcLLJITRef,
};
use llvm_sys::orc2::{
    LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess, LLVMOrcExecutionSessionRef,
    LLVMOrcJITDylibAddGenerator, LLVMOrcJITDylibCreateResourceTracker, LLVMOrcJITDylibRef,
    LLVMOrcObjectLayerRef, LLVMOrcReleaseResourceTracker, LLVMOrcResourceTrackerRef,
    LLVMOrcResourceTrackerRemove,
};
use llvm_sys::target::{LLVM_InitializeNativeAsmPrinter, LLVM_InitializeNativeTarget};

/// Which ORC object linking layer links the objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Linker {
    /// `ObjectLinkingLayer`: JITLink, with its in-process memory manager.
    JitLink,
    /// `RTDyldObjectLinkingLayer`: RuntimeDyld (MCJIT's linker).
    RuntimeDyld,
}

impl Linker {
    /// A short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Linker::JitLink => "jitlink",
            Linker::RuntimeDyld => "rtdyld",
        }
    }
}

/// An `LLJIT` instance whose main JITDylib resolves this process's symbols.
pub struct Jit {
    jit: LLVMOrcLLJITRef,
    main: LLVMOrcJITDylibRef,
    /// Kept alive for the creator callback, which reads it while the JIT is built.
    _linker: Box<Linker>,
}

/// An object linked by a [`Jit`]: its tracker and the address looked up.
pub struct Loaded {
    tracker: LLVMOrcResourceTrackerRef,
    /// The address of the symbol that was looked up.
    pub address: u64,
}

/// Takes an `LLVMErrorRef`, returning its message if it is an error.
fn check(error: LLVMErrorRef) -> Result<(), String> {
    if error.is_null() {
        return Ok(());
    }
    // SAFETY: `error` is a live error that this function consumes: getting the
    // message disposes of the error, and the message is disposed after copying.
    unsafe {
        let message = LLVMGetErrorMessage(error);
        let text = CStr::from_ptr(message).to_string_lossy().into_owned();
        LLVMDisposeErrorMessage(message);
        Err(text)
    }
}

extern "C" fn create_layer(
    context: *mut c_void,
    session: LLVMOrcExecutionSessionRef,
    _triple: *const c_char,
) -> LLVMOrcObjectLayerRef {
    // SAFETY: `context` is the `Box<Linker>` that `Jit::new` passed and keeps alive.
    let linker = unsafe { *context.cast::<Linker>() };
    match linker {
        Linker::JitLink => {
            let mut layer: LLVMOrcObjectLayerRef = std::ptr::null_mut();
            // SAFETY: `session` is the session LLJIT is building the layer for;
            // `layer` receives the new layer, which LLJIT then owns.
            let error = unsafe {
                LLVMOrcCreateObjectLinkingLayerWithInProcessMemoryManager(&mut layer, session)
            };
            if let Err(message) = check(error) {
                eprintln!("JITLink layer: {message}");
                std::process::abort();
            }
            layer
        }
        // SAFETY: as above; the function cannot fail.
        Linker::RuntimeDyld => unsafe {
            LLVMOrcCreateRTDyldObjectLinkingLayerWithSectionMemoryManager(session)
        },
    }
}

impl Jit {
    /// An LLJIT that links objects with `linker`.
    pub fn new(linker: Linker) -> Result<Jit, String> {
        static INIT: Once = Once::new();
        // SAFETY: LLVM's native target initialisers take no arguments and are
        // run once; LLJIT needs them to build its target machine.
        INIT.call_once(|| unsafe {
            LLVM_InitializeNativeTarget();
            LLVM_InitializeNativeAsmPrinter();
        });
        let linker = Box::new(linker);
        let mut jit: LLVMOrcLLJITRef = std::ptr::null_mut();
        // SAFETY: the builder is created here and consumed by LLVMOrcCreateLLJIT;
        // the creator's context is the boxed `Linker`, which `Jit` keeps alive.
        unsafe {
            let builder = LLVMOrcCreateLLJITBuilder();
            let context = std::ptr::from_ref::<Linker>(&linker).cast_mut().cast();
            LLVMOrcLLJITBuilderSetObjectLinkingLayerCreator(builder, create_layer, context);
            check(LLVMOrcCreateLLJIT(&mut jit, builder))?;
        }
        // SAFETY: `jit` was just created successfully.
        let main = unsafe { LLVMOrcLLJITGetMainJITDylib(jit) };
        let mut generator = std::ptr::null_mut();
        // SAFETY: a process-symbol generator for `main`, which then owns it.
        unsafe {
            check(LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(
                &mut generator,
                LLVMOrcLLJITGetGlobalPrefix(jit),
                None,
                std::ptr::null_mut(),
            ))?;
            LLVMOrcJITDylibAddGenerator(main, generator);
        }
        Ok(Jit {
            jit,
            main,
            _linker: linker,
        })
    }

    /// Adds `bytes` as an object and looks up `symbol`, which links it.
    /// The bytes must stay alive until [`Jit::unload`].
    pub fn load(&self, name: &CStr, bytes: &[u8], symbol: &CStr) -> Result<Loaded, String> {
        // SAFETY: `main` belongs to this JIT; the buffer borrows `bytes` (the
        // caller keeps them alive until unload) and is consumed by the add call,
        // which disposes of it on error too.
        unsafe {
            let tracker = LLVMOrcJITDylibCreateResourceTracker(self.main);
            let buffer = LLVMCreateMemoryBufferWithMemoryRange(
                bytes.as_ptr().cast(),
                bytes.len(),
                name.as_ptr(),
                0,
            );
            let loaded = check(LLVMOrcLLJITAddObjectFileWithRT(self.jit, tracker, buffer))
                .and_then(|()| {
                    let mut address = 0;
                    check(LLVMOrcLLJITLookup(self.jit, &mut address, symbol.as_ptr()))
                        .map(|()| address)
                });
            match loaded {
                Ok(address) => Ok(Loaded { tracker, address }),
                Err(message) => {
                    let _ = check(LLVMOrcResourceTrackerRemove(tracker));
                    LLVMOrcReleaseResourceTracker(tracker);
                    Err(format!("{}: {message}", name.to_string_lossy()))
                }
            }
        }
    }

    /// Removes a loaded object: its memory and symbols are freed.
    pub fn unload(&self, loaded: Loaded) -> Result<(), String> {
        // SAFETY: the tracker came from `load` on this JIT and is released once.
        unsafe {
            let removed = check(LLVMOrcResourceTrackerRemove(loaded.tracker));
            LLVMOrcReleaseResourceTracker(loaded.tracker);
            removed
        }
    }
}

impl Drop for Jit {
    fn drop(&mut self) {
        // SAFETY: the JIT is disposed of once; nothing uses it afterwards.
        let _ = check(unsafe { LLVMOrcDisposeLLJIT(self.jit) });
    }
}

/// A C string for `text` (benchmark names contain no NUL).
pub fn c_string(text: &str) -> CString {
    CString::new(text.replace('\0', "")).unwrap_or_default()
}
