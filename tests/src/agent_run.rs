//! A `reach agent` run for tests: started with a metrics address of the kernel's choosing
//! (`127.0.0.1:0`, read back from its "serving metrics on" line), scraped over HTTP, stopped with
//! SIGTERM as a DaemonSet's pod is.
use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use crate::{WatchRun, prometheus};

pub struct AgentRun {
    pub run: WatchRun,
    pub addr: SocketAddr,
}

impl AgentRun {
    /// Starts `reach agent --metrics 127.0.0.1:PORT ARGS` on a port free a moment ago (reach
    /// refuses port 0: Prometheus could not find it) and waits until it says it is ready.
    pub fn start(args: &[&str]) -> AgentRun {
        Self::start_env(args, &[])
    }

    /// Same, with these environment variables set for reach (e.g. `REACH_NFT_NO_OWNER`).
    pub fn start_env(args: &[&str], env: &[(&str, &str)]) -> AgentRun {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let metrics = format!("127.0.0.1:{port}");
        let mut cmd = std::process::Command::new(crate::reach_bin());
        cmd.args(["agent", "--metrics", metrics.as_str()]).args(args);
        cmd.envs(env.iter().copied());
        let run = WatchRun::start_with(cmd, "agent ready");
        let err = run.stderr();
        let addr = err
            .lines()
            .find_map(|l| l.split("serving metrics on http://").nth(1))
            .and_then(|rest| rest.split('/').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no metrics address in reach agent's stderr:\n{err}"));
        AgentRun { run, addr }
    }

    pub fn scrape(&self) -> prometheus::Scrape {
        prometheus::scrape(self.addr)
    }

    /// Scrapes until `done` holds (at most `within`), returning that scrape; the timeout shows
    /// the last scrape and the agent's stderr.
    pub fn scrape_until(
        &self,
        what: &str,
        within: Duration,
        done: impl Fn(&prometheus::Scrape) -> bool,
    ) -> prometheus::Scrape {
        let deadline = Instant::now() + within;
        loop {
            let s = self.scrape();
            if done(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {within:?} waiting for {what}; last scrape:\n{}\n--- stderr ---\n{}",
                s.text,
                self.run.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, then waits: (exit code, time to exit, stdout, stderr).
    pub fn terminate(self) -> (Option<i32>, Duration, String, String) {
        let started = Instant::now();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.run.pid() as i32, libc::SIGTERM) };
        let pid = self.run.pid() as i32;
        // The exit time is taken when the process is a zombie (exited, not reaped yet), not
        // when the output readers finished.
        let mut took = None;
        while started.elapsed() < Duration::from_secs(30) {
            if !crate::process_alive(pid) {
                took = Some(started.elapsed());
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let took = took.unwrap_or_else(|| started.elapsed());
        let (code, out, err) = self.run.finish_raw();
        (code, took, out, err)
    }
}
