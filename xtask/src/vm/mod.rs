//! QEMU kernel bench: boot a real Debian kernel and run one host command in it.
//!
//! The guest's root is the host's `/` (9p, read-only) under a tmpfs overlay, so any absolute
//! host path — our test binaries in `target/` included — runs unchanged, as root, and may write
//! anywhere without touching the host. The kernel's own module tree is mounted at
//! `/lib/modules/<release>` so `modprobe` (busybox's) and module autoloading work.
//!
//! Pieces: [`kernel`] (download and cache), [`apt`] (private apt instance), [`initramfs`]
//! (with `init.sh`, the guest's PID 1), [`job`] (command in, output and status out),
//! [`qemu`] (the VM process), [`tools`] (host programs), [`scratch`] (per-run temp dir),
//! [`test_bins`] (the workspace's test executables, for guest runs of the real tests).
mod apt;
mod initramfs;
mod job;
mod kernel;
mod qemu;
mod scratch;
pub mod test_bins;
mod tools;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

/// Boot a Debian kernel under QEMU (TCG) and run a host command in it, as root, with the host's
/// root read-only under a writable overlay; exits with the command's exit code.
#[derive(clap::Args, Debug)]
pub struct VmTestArgs {
    /// Debian kernel line to boot: 6.1 (bookworm), 6.12 (trixie), 6.18 or newer
    /// (trixie-backports). Downloaded on first use, then cached.
    #[arg(long, value_name = "MAJOR.MINOR")]
    pub kernel: String,
    /// Guest RAM, as QEMU's -m takes it.
    #[arg(long, default_value = "1G")]
    pub memory: String,
    /// Virtual CPUs (each is a host thread under TCG).
    #[arg(long, default_value_t = 1)]
    pub cpus: u32,
    /// Seconds before the guest is killed and the run fails.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Environment variable for the command, as KEY=VALUE, or KEY to pass the host's value.
    /// The command gets only these, plus PATH and HOME.
    #[arg(long = "env", value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,
    /// Working directory of the command (the host root is the guest root); default: the
    /// current directory.
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// The command and its arguments (absolute host paths work).
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// What to run in which guest.
#[derive(Clone, Debug)]
pub struct GuestOptions {
    /// Debian kernel line: "6.1", "6.12", "6.18", …
    pub kernel: String,
    /// Program (absolute path, or a name looked up in the guest's PATH) and arguments.
    pub command: Vec<String>,
    /// The command's environment besides PATH and HOME (which these may override).
    pub env: Vec<(String, String)>,
    /// Absolute working directory of the command.
    pub cwd: PathBuf,
    /// Guest RAM, as QEMU's -m takes it ("1G", "512M").
    pub memory: String,
    pub cpus: u32,
    /// Wall-clock limit for the whole boot and run.
    pub timeout: Duration,
}

impl GuestOptions {
    /// `command` in the `kernel` guest, from `/`, with 1 GiB, one CPU and a 300 s timeout.
    pub fn new(kernel: &str, command: &[&str]) -> Self {
        Self {
            kernel: kernel.to_owned(),
            command: command.iter().map(|s| (*s).to_owned()).collect(),
            env: Vec::new(),
            cwd: PathBuf::from("/"),
            memory: "1G".to_owned(),
            cpus: 1,
            timeout: Duration::from_secs(300),
        }
    }
}

/// A guest run that got as far as reporting the command's exit status.
#[derive(Clone, Debug)]
pub struct GuestOutcome {
    /// The command's exit code (128+N if killed by signal N).
    pub exit_code: i32,
    /// The command's stdout and stderr, interleaved as written.
    pub output: String,
    /// The serial console (kernel log, init's messages), for diagnosis.
    pub console: String,
    /// `uname -r` of the booted kernel.
    pub kernel_release: String,
}

/// Lines of console shown in errors.
const CONSOLE_TAIL: usize = 40;
/// The console kept in a [`GuestOutcome`] is bounded like the output.
const MAX_CONSOLE: u64 = 4 << 20;

/// Boots the guest, runs the command and returns its exit code and output. A command that
/// fails is an `Ok` with a non-zero `exit_code`; a guest that hangs (timeout), panics or
/// otherwise stops without reporting is an `Err` carrying the console's tail.
pub fn run_in_guest(opts: &GuestOptions) -> Result<GuestOutcome> {
    ensure!(
        opts.memory.strip_suffix(['M', 'G']).unwrap_or(&opts.memory).parse::<u32>().is_ok(),
        "guest memory {:?} is not a size like 512M or 1G",
        opts.memory
    );
    ensure!(opts.cpus >= 1, "the guest needs at least one CPU");
    let busybox = tools::static_busybox()?;
    tools::QEMU.find()?;
    let kernel = kernel::ensure(&opts.kernel)?;

    let scratch = scratch::Scratch::new("reach-vm")?;
    let job_dir = scratch.path().join("job");
    std::fs::create_dir(&job_dir).with_context(|| format!("creating {}", job_dir.display()))?;
    job::write_script(&job_dir, &opts.command, &opts.cwd, &opts.env)?;
    let initramfs = scratch.path().join("initramfs.cpio");
    initramfs::build(&kernel, &busybox, &initramfs)?;

    let console_path = scratch.path().join("console.log");
    let qemu_log = scratch.path().join("qemu.log");
    let shares = [
        qemu::Share { tag: "hostroot", path: Path::new("/"), readonly: true },
        qemu::Share { tag: "modules", path: &kernel.modules, readonly: true },
        qemu::Share { tag: "job", path: &job_dir, readonly: false },
    ];
    let machine = qemu::Machine {
        vmlinuz: &kernel.vmlinuz,
        initramfs: &initramfs,
        memory: &opts.memory,
        cpus: opts.cpus,
        shares: &shares,
        console: &console_path,
        qemu_log: &qemu_log,
    };
    let end = qemu::run(&machine, opts.timeout)?;

    let console = job::read_tail(&console_path, MAX_CONSOLE)?;
    let what = format!("`{}` in the {} guest", opts.command.join(" "), kernel.release);
    let exited = match end {
        qemu::End::TimedOut => bail!(
            "{what} did not finish within {} s (QEMU killed).\n{}",
            opts.timeout.as_secs(),
            diagnosis(&console, &job::output(&job_dir)?)
        ),
        qemu::End::Exited(status) => status,
    };
    let Some(exit_code) = job::status(&job_dir)? else {
        bail!(
            "{what}: the guest stopped without reporting an exit status (kernel panic or init \
             failure; QEMU {exited}{qemu}).\n{}",
            diagnosis(&console, &job::output(&job_dir)?),
            qemu = match job::read_tail(&qemu_log, 4096)?.trim() {
                "" => String::new(),
                log => format!(": {log}"),
            },
        );
    };
    Ok(GuestOutcome {
        exit_code,
        output: job::output(&job_dir)?,
        console,
        kernel_release: kernel.release,
    })
}

fn diagnosis(console: &str, output: &str) -> String {
    let mut text = String::new();
    // A panic's call trace is longer than the tail: name the panic itself first.
    if let Some(panic) = console.lines().find(|l| l.contains("Kernel panic - not syncing")) {
        text.push_str(&format!("guest kernel panic: {}\n", panic.trim()));
    }
    text.push_str(&format!(
        "--- console (last {CONSOLE_TAIL} lines) ---\n{}",
        tools::tail(console, CONSOLE_TAIL)
    ));
    if !output.is_empty() {
        text.push_str(&format!(
            "\n--- command output (last 20 lines) ---\n{}",
            tools::tail(output, 20)
        ));
    }
    text
}

/// `cargo xtask vm-test`: prints the guest command's output and returns its exit code.
pub fn vm_test_command(args: VmTestArgs) -> Result<ExitCode> {
    let env = args
        .env
        .iter()
        .map(|spec| match spec.split_once('=') {
            Some((key, value)) => Ok((key.to_owned(), value.to_owned())),
            None => std::env::var(spec)
                .map(|value| (spec.clone(), value))
                .with_context(|| format!("--env {spec}: not set (or not UTF-8) on the host")),
        })
        .collect::<Result<_>>()?;
    let cwd = match args.cwd {
        Some(cwd) => cwd,
        None => std::env::current_dir().context("reading the current directory")?,
    };
    let opts = GuestOptions {
        kernel: args.kernel,
        command: args.command,
        env,
        cwd,
        memory: args.memory,
        cpus: args.cpus,
        timeout: Duration::from_secs(args.timeout),
    };
    let started = Instant::now();
    let outcome = run_in_guest(&opts)?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(outcome.output.as_bytes())
        .and_then(|()| stdout.flush())
        .context("writing the guest output")?;
    eprintln!(
        "vm: `{}` exited with {} on {} ({:.1} s)",
        opts.command.join(" "),
        outcome.exit_code,
        outcome.kernel_release,
        started.elapsed().as_secs_f64()
    );
    // Exit codes come from a shell, so 0..=255; anything else is still a failure.
    Ok(ExitCode::from(u8::try_from(outcome.exit_code).unwrap_or(1)))
}
