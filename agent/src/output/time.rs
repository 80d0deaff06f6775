//! Timestamps: BPF programs stamp events with CLOCK_BOOTTIME (monotonic, counts suspend); users
//! read wall-clock time. One offset taken at start-up converts between them.
use nix::time::{ClockId, clock_gettime};

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// CLOCK_REALTIME − CLOCK_BOOTTIME, in nanoseconds.
    offset_ns: i128,
}

fn now_ns(id: ClockId) -> u64 {
    clock_gettime(id).map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64).unwrap_or(0)
}

/// CLOCK_BOOTTIME now, in ns: the clock the BPF programs stamp events with.
pub fn boot_ns() -> u64 {
    now_ns(ClockId::CLOCK_BOOTTIME)
}

impl Clock {
    pub fn new() -> Self {
        let realtime = now_ns(ClockId::CLOCK_REALTIME) as i128;
        Self { offset_ns: realtime - boot_ns() as i128 }
    }

    /// Wall-clock nanoseconds since the epoch for a boot-time stamp.
    pub fn wall_ns(&self, boot_ns: u64) -> i128 {
        boot_ns as i128 + self.offset_ns
    }

    /// RFC 3339 UTC with microseconds, e.g. `2026-11-25T04:51:02.123456Z`.
    pub fn rfc3339(&self, boot_ns: u64) -> String {
        rfc3339_from_unix_ns(self.wall_ns(boot_ns))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

pub fn rfc3339_from_unix_ns(ns: i128) -> String {
    let secs = ns.div_euclid(1_000_000_000) as i64;
    let micros = (ns.rem_euclid(1_000_000_000) / 1000) as u32;
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (H. Hinnant's algorithm; exact for all i64 days we will ever see).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339_from_unix_ns(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339_from_unix_ns(951_782_400_000_000_000), "2000-02-29T00:00:00.000000Z");
        assert_eq!(rfc3339_from_unix_ns(1_795_000_000_123_456_789), "2026-11-18T11:06:40.123456Z");
    }

    #[test]
    fn boot_stamps_land_near_now() {
        let c = Clock::new();
        let boot = clock_gettime(ClockId::CLOCK_BOOTTIME).unwrap();
        let boot_ns = boot.tv_sec() as u64 * 1_000_000_000 + boot.tv_nsec() as u64;
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
                as i128;
        assert!((c.wall_ns(boot_ns) - now).abs() < 1_000_000_000);
    }
}
