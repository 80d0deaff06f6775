//! Make cargo rebuild the BPF objects when bpf-linker itself changes (e.g. `cargo xtask setup`
//! rebuilt it against a new nightly LLVM): the linker is an input the compiler cannot see.
fn main() {
    println!("cargo:rerun-if-env-changed=PATH");
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}
