//! Loads two C modules into this process, one after the other: `greet.o`
//! defines `add`, and `use.o` calls `add` and a function of this program.
//! Then calls into both and unloads them again.
//!
//! Run it with `cargo run -p modload-example-host`.

use std::error::Error;
use std::ffi::{c_char, CStr};

use modload::{Loader, Namespace, Region, VirtAddr};
use modload_platform::host::{map_region, Placement, HOST_PROTECTION};

// Where modules live: the region hands out their memory, the namespace keeps
// their symbols (and the program's exports). Both are statics, so every
// module outlives the `Loader` values that load it.
static REGION: Region = Region::new();
static NAMESPACE: Namespace = Namespace::new();

// The modules, compiled by build.rs with the system C compiler.
static GREET_O: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/greet.o"));
static USE_O: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/use.o"));

/// A function of this program that modules may call: `extern "C"`, so C
/// code calls it with the C calling convention.
extern "C" fn host_log(message: *const c_char, value: i32) {
    // SAFETY: use.o passes a NUL-terminated string literal.
    let message = unsafe { CStr::from_ptr(message) };
    println!("host_log: {} {value}", message.to_string_lossy());
}

fn main() -> Result<(), Box<dyn Error>> {
    // Once, at start-up: 1 MiB of fresh read-write memory for the modules
    // (the loader changes page permissions itself: code r-x, data rw-).
    map_region(&REGION, 1 << 20, Placement::Anywhere)?;
    // Export `host_log` under its C name; modules bind to it when they load.
    NAMESPACE.add_host_export("host_log", VirtAddr::from_ptr(host_log as *const ()))?;

    // A loader is a small `Copy` value: which namespace, which region, and how
    // to set page permissions (mprotect here).
    let loader = Loader::new(&NAMESPACE, &REGION, &HOST_PROTECTION);

    // SAFETY: both modules are our own code, built by build.rs; `load` runs
    // their constructors, and calling them later runs their code.
    let greet = unsafe { loader.load("greet.o", GREET_O) }?;
    // SAFETY: as above. use.o's `add` binds to greet.o, `host_log` to us.
    let user = unsafe { loader.load("use.o", USE_O) }?;

    // `get` looks a symbol up in one module and gives it the type we say.
    // (In a block: the functions must not be called once the modules unload.)
    {
        // SAFETY: `add` is `int add(int, int)` in greet.c.
        let add = unsafe { greet.get::<extern "C" fn(i32, i32) -> i32>("add") }
            .ok_or("greet.o has no `add`")?;
        println!("add(2, 3) = {}", add(2, 3));

        // SAFETY: `sum_of_squares` is `int sum_of_squares(int, int)` in use.c.
        let sum_of_squares =
            unsafe { user.get::<extern "C" fn(i32, i32) -> i32>("sum_of_squares") }
                .ok_or("use.o has no `sum_of_squares`")?;
        println!("sum_of_squares(3, 4) = {}", sum_of_squares(3, 4));
    }

    // use.o is bound to greet.o's `add`, so greet.o cannot go first: the
    // refusal hands the module back, still loaded.
    let greet = match greet.unload() {
        Ok(()) => return Err("greet.o unloaded while use.o still uses it".into()),
        Err(refused) => {
            println!("unload of greet.o refused: {}", refused.error);
            refused.module
        }
    };
    // The user first, then the module it used.
    user.unload()?;
    println!("unloaded use.o");
    greet.unload()?;
    println!("unloaded greet.o");
    // Unloading returned every byte to the region.
    println!("region bytes in use: {}", REGION.usage().used);
    Ok(())
}
