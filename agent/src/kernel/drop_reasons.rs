//! Names of the kernel's packet drop reasons (`kfree_skb`'s `reason`), read from BTF.
//!
//! The numbering of `enum skb_drop_reason` changes with almost every kernel release (reasons
//! are inserted in the middle, `SKB_NOT_DROPPED_YET`/`SKB_CONSUMED` appeared after 5.17), so a
//! compiled-in table would name drops wrongly. Since 6.4 a reason's high bits may also select a
//! subsystem (`enum skb_drop_reason_subsys`) whose reasons live in that subsystem's own enum
//! (`ovs_drop_reason`, `mac80211_drop_reason`), possibly in a module's BTF.
use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
};

use super::btf::KernelBtf;

/// `SKB_DROP_REASON_SUBSYS_SHIFT` of include/net/dropreason.h. It is a `#define`, so BTF never
/// carries it; the shift is derived from `SKB_DROP_REASON_SUBSYS_MASK` when that enumerator
/// exists and this is only the fallback.
const DEFAULT_SUBSYS_SHIFT: u32 = 16;
const CORE_PREFIX: &str = "SKB_DROP_REASON_";
const SUBSYS_PREFIX: &str = "SKB_DROP_REASON_SUBSYS_";
/// Where loaded modules publish their (split) BTF.
const MODULE_BTF_DIR: &str = "/sys/kernel/btf";

/// Drop reason value ↔ name for the running kernel.
#[derive(Debug, Clone)]
pub struct DropReasons {
    /// Why names are unavailable (the kernel has no `skb_drop_reason`), when they are.
    unavailable: Option<String>,
    shift: u32,
    /// Full raw value → short name; for aliases the first enumerator wins, as in the kernel's
    /// own `drop_reasons[]` string table.
    by_value: BTreeMap<u32, String>,
    /// Short name → raw value (aliases included).
    by_name: HashMap<String, u32>,
    /// Subsystem id (the high bits) → short subsystem name, e.g. `OPENVSWITCH`.
    subsystems: BTreeMap<u32, String>,
}

impl DropReasons {
    /// Reads the running kernel's drop reasons. A kernel without `enum skb_drop_reason`
    /// (before 5.17) yields a table whose [`available`](Self::available) is false; subsystem
    /// enums that cannot be found (module not loaded, no module BTF) just leave those reasons
    /// numeric (`OPENVSWITCH:3`).
    pub fn load(btf: &KernelBtf) -> anyhow::Result<DropReasons> {
        let core = match btf.enum_values("skb_drop_reason") {
            Ok(core) => core,
            Err(e) => {
                return Ok(Self::unavailable(format!(
                    "{e}: kernels before 5.17 report no drop reasons, only drop locations"
                )));
            }
        };
        // Absent before 6.4: then every reason is a core reason.
        let subsystems = btf.enum_values("skb_drop_reason_subsys").unwrap_or_default();
        let subsystem_reasons = load_subsystem_reasons(btf, &subsystems);
        Ok(Self::from_tables(&core, &subsystems, &subsystem_reasons))
    }

    /// A table that names nothing; `why` says why (shown to the user).
    pub fn unavailable(why: String) -> DropReasons {
        DropReasons {
            unavailable: Some(why),
            shift: DEFAULT_SUBSYS_SHIFT,
            by_value: BTreeMap::new(),
            by_name: HashMap::new(),
            subsystems: BTreeMap::new(),
        }
    }

    /// The core of [`load`](Self::load), on plain `(enumerator, value)` lists so it can be
    /// tested without BTF: `core` is `enum skb_drop_reason`, `subsystems` is `enum
    /// skb_drop_reason_subsys` (empty before 6.4) and `subsystem_reasons` the enumerators of
    /// all subsystem enums found, whose values already carry the subsystem in their high bits.
    pub fn from_tables(
        core: &[(String, i64)],
        subsystems: &[(String, i64)],
        subsystem_reasons: &[(String, i64)],
    ) -> DropReasons {
        let shift = core
            .iter()
            .find(|(n, _)| n == "SKB_DROP_REASON_SUBSYS_MASK")
            // The enum may be emitted signed (-65536); the mask is a u32 bit pattern either way.
            .map(|(_, v)| *v as u32)
            .filter(|&mask| mask != 0)
            .map_or(DEFAULT_SUBSYS_SHIFT, u32::trailing_zeros);
        let mut table = DropReasons {
            unavailable: None,
            shift,
            by_value: BTreeMap::new(),
            by_name: HashMap::new(),
            subsystems: BTreeMap::new(),
        };
        for (name, value) in subsystems {
            if is_sentinel(name) || name == "SKB_DROP_REASON_SUBSYS_NUM" {
                continue;
            }
            let short = name.strip_prefix(SUBSYS_PREFIX).unwrap_or(name);
            table.subsystems.entry(*value as u32).or_insert_with(|| short.to_string());
        }
        for (name, value) in core {
            let value = *value as u32;
            // Values with high bits are the subsystem mask, not reasons.
            if is_sentinel(name) || table.subsystem_of(value) != 0 {
                continue;
            }
            table.insert(core_short_name(name).to_string(), value);
        }
        for (name, value) in subsystem_reasons {
            let value = *value as u32;
            // Subsystem enums also hold their base (`__OVS_DROP_REASON`), `*_MAX` and, for
            // mac80211, rx-handler results (RX_CONTINUE = ~0) that are not reasons: keep only
            // enumerators that encode a known, non-core subsystem.
            let id = table.subsystem_of(value);
            if is_sentinel(name) || id == 0 {
                continue;
            }
            let Some(subsys) = table.subsystems.get(&id) else { continue };
            let full = format!("{subsys}:{name}");
            table.insert(full, value);
        }
        table
    }

    /// False when the kernel has no drop reasons at all (before 5.17).
    pub fn available(&self) -> bool {
        self.unavailable.is_none()
    }

    /// Why [`available`](Self::available) is false.
    pub fn unavailable_reason(&self) -> Option<&str> {
        self.unavailable.as_deref()
    }

    /// Short name of a raw `reason`: `NO_SOCKET`, `NOT_DROPPED_YET`, `OPENVSWITCH:OVS_DROP_X`,
    /// `OPENVSWITCH:7` for an unnamed reason of a known subsystem, `UNKNOWN(<n>)` otherwise.
    pub fn name(&self, raw: u32) -> String {
        if let Some(name) = self.by_value.get(&raw) {
            return name.clone();
        }
        let subsys = self.subsystem_of(raw);
        if subsys != 0
            && let Some(subsys_name) = self.subsystems.get(&subsys)
        {
            return format!("{subsys_name}:{}", raw & self.local_mask());
        }
        format!("UNKNOWN({raw})")
    }

    /// Raw value of a name as [`name`](Self::name) prints it; the kernel's full enumerator
    /// (`SKB_DROP_REASON_NO_SOCKET`) and lower case are accepted too, for command lines.
    pub fn value(&self, short_name: &str) -> Option<u32> {
        let upper = short_name.trim().to_ascii_uppercase();
        // A short name may itself start with `SKB_` (`SKB_CSUM`, from
        // `SKB_DROP_REASON_SKB_CSUM`): look it up as given before stripping a prefix.
        if let Some(v) = self.by_name.get(&upper) {
            return Some(*v);
        }
        let name = core_short_name(&upper);
        if let Some(v) = self.by_name.get(name) {
            return Some(*v);
        }
        if let Some(n) = name.strip_prefix("UNKNOWN(").and_then(|r| r.strip_suffix(')')) {
            return n.parse().ok();
        }
        let (subsys, local) = name.split_once(':')?;
        let local: u32 = local.parse().ok()?;
        let (id, _) = self.subsystems.iter().find(|(_, n)| n.as_str() == subsys)?;
        (local <= self.local_mask()).then(|| (id << self.shift) | local)
    }

    /// Core reasons that never concern a TCP segment, which the drop tracer skips before it
    /// reads anything: "not a drop" (`NOT_DROPPED_YET`, `CONSUMED`) and AF_UNIX's own
    /// (`UNIX_*`, 6.9+). By name, since the values move between kernels.
    pub fn never_tcp(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .by_name
            .iter()
            .filter(|(n, _)| {
                matches!(n.as_str(), "NOT_DROPPED_YET" | "CONSUMED") || n.starts_with("UNIX_")
            })
            .map(|(_, v)| *v)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Every named reason, by value.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &str)> {
        self.by_value.iter().map(|(v, n)| (*v, n.as_str()))
    }

    fn insert(&mut self, name: String, value: u32) {
        self.by_name.entry(name.clone()).or_insert(value);
        self.by_value.entry(value).or_insert(name);
    }

    fn subsystem_of(&self, raw: u32) -> u32 {
        raw.checked_shr(self.shift).unwrap_or(0)
    }

    fn local_mask(&self) -> u32 {
        1u32.checked_shl(self.shift).map_or(u32::MAX, |b| b - 1)
    }
}

/// `SKB_DROP_REASON_NO_SOCKET` → `NO_SOCKET`, `SKB_CONSUMED` → `CONSUMED`.
fn core_short_name(name: &str) -> &str {
    name.strip_prefix(CORE_PREFIX).or_else(|| name.strip_prefix("SKB_")).unwrap_or(name)
}

/// Enumerators that bound or base an enum rather than name a reason (`SKB_DROP_REASON_MAX`,
/// `__OVS_DROP_REASON`, `OVS_DROP_MAX`).
fn is_sentinel(name: &str) -> bool {
    name.starts_with("__") || name.ends_with("_MAX")
}

/// Enumerators of every subsystem enum that can be found, in vmlinux or in the subsystem's
/// module BTF. Failures only cost names, so they are logged, not returned.
fn load_subsystem_reasons(btf: &KernelBtf, subsystems: &[(String, i64)]) -> Vec<(String, i64)> {
    let mut reasons = Vec::new();
    let mut loaded_enums: Vec<String> = Vec::new();
    let mut modules: HashMap<String, Option<KernelBtf>> = HashMap::new();
    for (name, value) in subsystems {
        if *value == 0 || is_sentinel(name) || name == "SKB_DROP_REASON_SUBSYS_NUM" {
            continue;
        }
        let short = name.strip_prefix(SUBSYS_PREFIX).unwrap_or(name);
        let enums = subsystem_enum_candidates(short);
        // MAC80211_UNUSABLE and MAC80211_MONITOR share one enum: read it once.
        if enums.iter().any(|e| loaded_enums.contains(e)) {
            continue;
        }
        let found = enums.iter().find_map(|e| Some((e, btf.enum_values(e).ok()?))).or_else(|| {
            subsystem_module_candidates(short).into_iter().find_map(|module| {
                let module_btf = modules
                    .entry(module.clone())
                    .or_insert_with(|| load_module_btf(btf, &module))
                    .as_ref()?;
                enums.iter().find_map(|e| Some((e, module_btf.enum_values(e).ok()?)))
            })
        });
        match found {
            Some((e, values)) => {
                loaded_enums.push(e.clone());
                reasons.extend(values);
            }
            None => tracing::debug!(
                "no BTF enum for drop-reason subsystem {short} (tried {enums:?}); \
                 its reasons stay numeric"
            ),
        }
    }
    reasons
}

/// Enum names a subsystem's reasons may live in. The kernel ties subsystem and enum only in
/// C code (`drop_reasons_register_subsys`), so the name is guessed from the subsystem's:
/// `MAC80211_UNUSABLE` → `mac80211_drop_reason`; openvswitch abbreviates itself.
fn subsystem_enum_candidates(subsys: &str) -> Vec<String> {
    let mut enums: Vec<String> =
        subsystem_module_candidates(subsys).iter().map(|m| format!("{m}_drop_reason")).collect();
    if subsys == "OPENVSWITCH" {
        enums.push("ovs_drop_reason".to_string());
    }
    enums
}

/// Modules that may define a subsystem's enum: the subsystem name in lower case, whole and up
/// to its first `_` (`MAC80211_UNUSABLE` → `mac80211_unusable`, `mac80211`).
fn subsystem_module_candidates(subsys: &str) -> Vec<String> {
    let lower = subsys.to_ascii_lowercase();
    let mut out = vec![lower.clone()];
    if let Some((first, _)) = lower.split_once('_') {
        out.push(first.to_string());
    }
    out
}

fn load_module_btf(vmlinux: &KernelBtf, module: &str) -> Option<KernelBtf> {
    let path = Path::new(MODULE_BTF_DIR).join(module);
    if !path.exists() {
        return None;
    }
    KernelBtf::from_split_file(&path, vmlinux)
        .inspect_err(|e| tracing::debug!("reading {}: {e:#}", path.display()))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(pairs: &[(&str, i64)]) -> Vec<(String, i64)> {
        pairs.iter().map(|(n, v)| (n.to_string(), *v)).collect()
    }

    /// The shape of a 6.4+ kernel: sentinels, a mask, two subsystems, an ovs-like enum whose
    /// values carry the subsystem, and an alias.
    fn modern() -> DropReasons {
        let core = table(&[
            ("SKB_NOT_DROPPED_YET", 0),
            ("SKB_CONSUMED", 1),
            ("SKB_DROP_REASON_NOT_SPECIFIED", 2),
            ("SKB_DROP_REASON_NO_SOCKET", 3),
            ("SKB_DROP_REASON_NETFILTER_DROP", 4),
            ("SKB_DROP_REASON_ALIAS_OF_NETFILTER", 4),
            ("SKB_DROP_REASON_MAX", 5),
            ("SKB_DROP_REASON_SUBSYS_MASK", 0xffff_0000),
        ]);
        let subsys = table(&[
            ("SKB_DROP_REASON_SUBSYS_CORE", 0),
            ("SKB_DROP_REASON_SUBSYS_MAC80211_UNUSABLE", 1),
            ("SKB_DROP_REASON_SUBSYS_OPENVSWITCH", 2),
            ("SKB_DROP_REASON_SUBSYS_NUM", 3),
        ]);
        let ovs = table(&[
            ("__OVS_DROP_REASON", 2 << 16),
            ("OVS_DROP_LAST_ACTION", (2 << 16) | 1),
            ("OVS_DROP_ACTION_ERROR", (2 << 16) | 2),
            ("OVS_DROP_MAX", (2 << 16) | 3),
            // mac80211's enum mixes in rx-handler results like this one.
            ("RX_CONTINUE", 0xffff_ffff),
        ]);
        DropReasons::from_tables(&core, &subsys, &ovs)
    }

    #[test]
    fn only_non_drops_and_af_unix_reasons_are_never_tcp() {
        let core = table(&[
            ("SKB_NOT_DROPPED_YET", 0),
            ("SKB_CONSUMED", 1),
            ("SKB_DROP_REASON_NOT_SPECIFIED", 2),
            ("SKB_DROP_REASON_NO_SOCKET", 3),
            ("SKB_DROP_REASON_UNIX_DISCONNECT", 7),
            ("SKB_DROP_REASON_UNIX_SKIP_OOB", 8),
            ("SKB_DROP_REASON_SOCKET_RCVBUFF", 9),
        ]);
        let r = DropReasons::from_tables(&core, &[], &[]);
        assert_eq!(r.never_tcp(), vec![0, 1, 7, 8]);
        // A kernel without drop reasons ignores none.
        assert!(DropReasons::unavailable("old".into()).never_tcp().is_empty());
    }

    #[test]
    fn core_names_lose_their_prefix_and_round_trip() {
        let r = modern();
        assert!(r.available());
        assert_eq!(r.name(0), "NOT_DROPPED_YET");
        assert_eq!(r.name(1), "CONSUMED");
        assert_eq!(r.name(3), "NO_SOCKET");
        for name in ["NOT_DROPPED_YET", "CONSUMED", "NOT_SPECIFIED", "NO_SOCKET", "NETFILTER_DROP"]
        {
            assert_eq!(r.name(r.value(name).unwrap()), name);
        }
    }

    #[test]
    fn a_short_name_starting_with_skb_is_found_as_printed() {
        let core = table(&[("SKB_DROP_REASON_NO_SOCKET", 1), ("SKB_DROP_REASON_SKB_CSUM", 2)]);
        let r = DropReasons::from_tables(&core, &[], &[]);
        assert_eq!(r.name(2), "SKB_CSUM");
        assert_eq!(r.value("SKB_CSUM"), Some(2));
        assert_eq!(r.value("SKB_DROP_REASON_SKB_CSUM"), Some(2));
    }

    #[test]
    fn aliases_resolve_but_the_first_name_is_printed() {
        let r = modern();
        assert_eq!(r.value("ALIAS_OF_NETFILTER"), Some(4));
        assert_eq!(r.name(4), "NETFILTER_DROP");
    }

    #[test]
    fn sentinels_and_the_mask_are_not_reasons() {
        let r = modern();
        assert_eq!(r.value("MAX"), None);
        assert_eq!(r.value("SUBSYS_MASK"), None);
        assert_eq!(r.name(5), "UNKNOWN(5)");
        assert_eq!(r.name(0xffff_0000), "UNKNOWN(4294901760)");
        assert!(r.iter().all(|(_, n)| !n.contains("MAX") && !n.contains("__")));
    }

    #[test]
    fn subsystem_reasons_are_named_or_numbered() {
        let r = modern();
        assert_eq!(r.name((2 << 16) | 1), "OPENVSWITCH:OVS_DROP_LAST_ACTION");
        assert_eq!(r.name((2 << 16) | 9), "OPENVSWITCH:9");
        // No enum was given for mac80211: its reasons stay numeric.
        assert_eq!(r.name((1 << 16) | 5), "MAC80211_UNUSABLE:5");
        // An unknown subsystem id is just unknown.
        assert_eq!(r.name((7 << 16) | 1), format!("UNKNOWN({})", (7 << 16) | 1));
        assert_eq!(r.name(u32::MAX), format!("UNKNOWN({})", u32::MAX));
        for raw in [(2 << 16) | 1, (2 << 16) | 9, (1 << 16) | 5, 77] {
            assert_eq!(r.value(&r.name(raw)), Some(raw), "{}", r.name(raw));
        }
        assert_eq!(r.value("OPENVSWITCH:99999"), None);
        assert_eq!(r.value("NOSUCH:1"), None);
    }

    #[test]
    fn value_accepts_kernel_spelling_and_lower_case() {
        let r = modern();
        assert_eq!(r.value("SKB_DROP_REASON_NO_SOCKET"), Some(3));
        assert_eq!(r.value("no_socket"), Some(3));
        assert_eq!(r.value("SKB_NOT_DROPPED_YET"), Some(0));
        assert_eq!(r.value("openvswitch:ovs_drop_last_action"), Some((2 << 16) | 1));
        assert_eq!(r.value("NO_SUCH_REASON"), None);
    }

    #[test]
    fn kernel_5_17_numbering_without_subsystems() {
        // 5.17 started at NOT_SPECIFIED = 0 and had no subsystems: numbers differ, names don't.
        let core = table(&[
            ("SKB_DROP_REASON_NOT_SPECIFIED", 0),
            ("SKB_DROP_REASON_NO_SOCKET", 1),
            ("SKB_DROP_REASON_MAX", 2),
        ]);
        let r = DropReasons::from_tables(&core, &[], &[]);
        assert_eq!(r.name(0), "NOT_SPECIFIED");
        assert_eq!(r.value("NO_SOCKET"), Some(1));
        assert_eq!(r.name(1 << 16), format!("UNKNOWN({})", 1 << 16));
    }

    #[test]
    fn shift_comes_from_the_mask() {
        let core =
            table(&[("SKB_DROP_REASON_NO_SOCKET", 1), ("SKB_DROP_REASON_SUBSYS_MASK", -256)]);
        let subsys = table(&[("SKB_DROP_REASON_SUBSYS_OPENVSWITCH", 2)]);
        let r = DropReasons::from_tables(&core, &subsys, &[]);
        assert_eq!(r.name((2 << 8) | 3), "OPENVSWITCH:3");
    }

    #[test]
    fn unavailable_names_nothing_and_says_why() {
        let r = DropReasons::unavailable("no enum".into());
        assert!(!r.available());
        assert_eq!(r.unavailable_reason(), Some("no enum"));
        assert_eq!(r.name(2), "UNKNOWN(2)");
        assert_eq!(r.value("NO_SOCKET"), None);
    }

    #[test]
    fn subsystem_enum_and_module_guesses() {
        assert_eq!(
            subsystem_module_candidates("MAC80211_UNUSABLE"),
            ["mac80211_unusable", "mac80211"]
        );
        assert!(
            subsystem_enum_candidates("MAC80211_MONITOR").contains(&"mac80211_drop_reason".into())
        );
        assert!(subsystem_enum_candidates("OPENVSWITCH").contains(&"ovs_drop_reason".into()));
    }

    /// The running kernel, checked against what its version and its own BTF say (read here
    /// with btf-rs directly, not through [`KernelBtf`]), so the expectations hold on every
    /// kernel: none before 5.17, `SKB_NOT_DROPPED_YET` = 0 from 5.18, `SKB_CONSUMED` from 6.3,
    /// subsystems from 6.4.
    mod live {
        use super::super::*;

        const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

        fn reasons() -> DropReasons {
            let btf = KernelBtf::load().expect("these tests read the running kernel's BTF");
            DropReasons::load(&btf).expect("drop reasons")
        }

        /// (major, minor) of `uname -r`, numbers only.
        fn version() -> (u32, u32) {
            let release = crate::kernel::release::current().release;
            let mut numbers = release.split(|c: char| !c.is_ascii_digit()).map(|n| n.parse());
            match (numbers.next(), numbers.next()) {
                (Some(Ok(major)), Some(Ok(minor))) => (major, minor),
                _ => panic!("release {release:?} does not start with MAJOR.MINOR"),
            }
        }

        /// `enum NAME`'s enumerators as the kernel's BTF has them, or None if it has no such
        /// enum.
        fn btf_enum(name: &str) -> Option<Vec<(String, u32)>> {
            let btf = btf_rs::Btf::from_file(VMLINUX).expect("parsing the kernel's BTF");
            btf.resolve_types_by_name(name).ok()?.into_iter().find_map(|ty| match ty {
                btf_rs::Type::Enum(e) => Some(
                    e.members.iter().map(|m| (btf.resolve_name(m).unwrap(), m.val())).collect(),
                ),
                _ => None,
            })
        }

        #[test]
        fn this_kernel_names_its_reasons_as_its_version_and_btf_say() {
            let r = reasons();
            let v = version();
            let Some(core) = btf_enum("skb_drop_reason") else {
                // Before 5.17 there is no enum: reach says so and names nothing.
                assert!(v < (5, 17), "kernel {v:?} should have enum skb_drop_reason");
                assert!(!r.available());
                let why = r.unavailable_reason().unwrap();
                assert!(why.contains("kernels before 5.17 report no drop reasons"), "{why}");
                assert_eq!(r.name(1), "UNKNOWN(1)");
                return;
            };
            assert!(v >= (5, 17), "enum skb_drop_reason exists only since 5.17, here {v:?}");
            assert!(r.available(), "{:?}", r.unavailable_reason());

            // The reasons of the first enum (5.17) exist on every later kernel.
            for name in
                ["NOT_SPECIFIED", "NO_SOCKET", "PKT_TOO_SMALL", "TCP_CSUM", "NETFILTER_DROP"]
            {
                let v = r.value(name).unwrap_or_else(|| panic!("{name} missing"));
                assert_eq!(r.name(v), name);
            }
            assert_ne!(r.value("NO_SOCKET"), r.value("NETFILTER_DROP"));
            if v >= (5, 18) {
                assert_eq!(r.name(0), "NOT_DROPPED_YET");
            } else {
                assert_eq!(r.name(0), "NOT_SPECIFIED", "5.17 numbered from NOT_SPECIFIED = 0");
            }
            if v >= (6, 3) {
                assert!(r.value("CONSUMED").is_some(), "SKB_CONSUMED exists since 6.3");
            } else if v <= (6, 1) {
                assert_eq!(r.value("CONSUMED"), None, "SKB_CONSUMED is newer than {v:?}");
            }

            // Every enumerator the BTF has is named by its own (first) name, both ways.
            let mut named = 0;
            for (name, value) in &core {
                if is_sentinel(name) || name == "SKB_DROP_REASON_SUBSYS_MASK" {
                    continue;
                }
                let short = core_short_name(name);
                assert_eq!(r.value(short), Some(*value), "{name}");
                let first = core.iter().find(|(_, v)| v == value).map(|(n, _)| n).unwrap();
                assert_eq!(r.name(*value), core_short_name(first), "{name} = {value}");
                named += 1;
            }
            assert!(named >= 5, "only {named} reasons in the BTF enum: {core:?}");
        }

        #[test]
        fn unknown_and_subsystem_values_on_this_kernel() {
            let r = reasons();
            if !r.available() {
                assert!(version() < (5, 17));
                assert_eq!(r.name((1 << 16) | 5), format!("UNKNOWN({})", (1 << 16) | 5));
                return;
            }
            // Below the subsystem bits but far past any core reason.
            assert_eq!(r.name(0xfff0), "UNKNOWN(65520)");
            let raw = (1 << 16) | 5;
            let name = r.name(raw);
            let subsystems = btf_enum("skb_drop_reason_subsys");
            if version() >= (6, 4) {
                // Subsystem 1 (MAC80211_UNUSABLE) exists since 6.4.
                let subsystems = subsystems.expect("enum skb_drop_reason_subsys since 6.4");
                let (short, _) = subsystems.iter().find(|(_, v)| *v == 1).unwrap();
                let (subsys, _) = name.split_once(':').unwrap_or_else(|| panic!("{name}"));
                assert_eq!(subsys, short.strip_prefix(SUBSYS_PREFIX).unwrap(), "{name}");
                assert_eq!(r.value(&name), Some(raw));
            } else {
                assert_eq!(subsystems, None, "no subsystems before 6.4");
                assert_eq!(name, format!("UNKNOWN({raw})"), "no subsystems before 6.4");
            }
        }
    }
}
