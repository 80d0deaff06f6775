//! reach's developer tasks as a library, so the integration tests can drive the same code
//! (`reach-tests` boots QEMU guests through [`vm`]). The binary is `cargo xtask`.
pub mod bench;
pub mod deploy_tools;
pub mod docker_root;
pub mod firewalld_root;
pub mod fuzz;
pub mod image;
pub mod run;
pub mod setup;
pub mod soak;
pub mod vm;
pub mod workspace;
