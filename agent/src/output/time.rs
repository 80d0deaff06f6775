//! Timestamps: BPF programs stamp events with CLOCK_BOOTTIME (monotonic, counts suspend); users
//! read wall-clock time. One offset taken at start-up converts between them.
use std::time::{Duration, UNIX_EPOCH};

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

/// RFC 3339 UTC with microseconds (`humantime`), truncated (not rounded) to the microsecond.
/// humantime formats 1970 to 9999 only: instants outside are clamped to those bounds (a wall
/// time there means a broken clock, and a record must still be written).
pub fn rfc3339_from_unix_ns(ns: i128) -> String {
    const MAX_NS: i128 = 253_402_300_799_999_999_999; // 9999-12-31T23:59:59.999999999Z
    let ns = ns.clamp(0, MAX_NS);
    let at = UNIX_EPOCH + Duration::new((ns / 1_000_000_000) as u64, (ns % 1_000_000_000) as u32);
    humantime::format_rfc3339_micros(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339_from_unix_ns(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339_from_unix_ns(951_782_400_000_000_000), "2000-02-29T00:00:00.000000Z");
        assert_eq!(rfc3339_from_unix_ns(1_795_000_000_123_456_789), "2026-11-18T11:06:40.123456Z");
        // Truncated, not rounded; leap days of a century year (2100 has none, 2400 has one).
        assert_eq!(rfc3339_from_unix_ns(1_000_999_999), "1970-01-01T00:00:01.000999Z");
        assert_eq!(rfc3339_from_unix_ns(4_107_542_400_000_000_000), "2100-03-01T00:00:00.000000Z");
        assert_eq!(rfc3339_from_unix_ns(13_574_563_200_000_000_000), "2400-02-29T00:00:00.000000Z");
    }

    #[test]
    fn out_of_range_instants_are_clamped() {
        assert_eq!(rfc3339_from_unix_ns(-1), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339_from_unix_ns(i128::MAX), "9999-12-31T23:59:59.999999Z");
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
