//! QEMU kernel bench: boot a real Debian kernel and run one of our binaries in it.
//! (Being written; see `cargo xtask vm-test --help`.)
