//! Code shared by reach's BPF objects (`src/bin/*.rs`). Compiled only for the BPF target; on the
//! host this library is empty, which lets the agent declare a build-dependency on the crate
//! (cargo then rebuilds the agent when it changes) without ever building BPF code for the host.
#![no_std]

#[cfg(target_arch = "bpf")]
pub mod emit;
#[cfg(target_arch = "bpf")]
pub mod kread;
#[cfg(target_arch = "bpf")]
pub mod sock;
#[cfg(target_arch = "bpf")]
pub mod tp;

/// The panic handler of every BPF object (each links this library). A BPF program cannot unwind
/// or abort; the programs are written so that no panic is reachable, and this is never called.
#[cfg(all(target_arch = "bpf", not(test)))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
