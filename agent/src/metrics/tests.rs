//! The exposition as a scraper reads it: every test encodes, parses strictly (`textparse`) and
//! checks names, types, label sets and values.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::bounded::MAX_VALUES_PER_KEY;
use super::textparse::{Format, Labels, Parsed, labels, parse};
use super::*;

const GRACE: Duration = Duration::from_secs(60);

fn metrics(max_label_sets: usize) -> Metrics {
    Metrics::new(MetricsConfig { max_label_sets, grace: GRACE })
}

fn pod(netns: &str, namespace: &str, pod: &str) -> Where {
    Where { netns: netns.into(), namespace: Some(namespace.into()), pod: Some(pod.into()) }
}

/// Both formats, parsed; asserts they carry the same samples and returns the OpenMetrics one.
fn scrape(m: &Metrics) -> Parsed {
    let om = parse(&m.encode(), Format::OpenMetrics).expect("OpenMetrics text parses");
    let classic = parse(&m.encode_prometheus_text(), Format::PrometheusText).expect("0.0.4 parses");
    assert_eq!(samples(&om, Format::OpenMetrics), samples(&classic, Format::PrometheusText));
    om
}

/// (sample name, labels) → value, the same in either format.
fn samples(p: &Parsed, format: Format) -> BTreeMap<(String, Labels), f64> {
    let mut out = BTreeMap::new();
    for (name, f) in p {
        let sample = match (format, f.kind.as_str()) {
            (Format::OpenMetrics, "counter") => format!("{name}_total"),
            _ => name.clone(),
        };
        for (l, v) in &f.samples {
            out.insert((sample.clone(), l.clone()), *v);
        }
    }
    out
}

fn value(p: &Parsed, family: &str, l: &[(&str, &str)]) -> Option<f64> {
    p.get(family)?.samples.get(&labels(l)).copied()
}

fn series(p: &Parsed, family: &str) -> usize {
    p.get(family).map_or(0, |f| f.samples.len())
}

#[test]
fn every_family_has_its_name_type_help_labels_and_value() {
    let m = metrics(100);
    let host = Where::netns("host");
    let web = pod("cni-1234", "shop", "web-0");
    m.syn(&host);
    m.syn(&host);
    m.syn(&web);
    m.attempt(&web, "refused");
    m.failed_attempt_class(&web, "nothing_listening");
    m.drop_reason(&host, "NETFILTER_DROP");
    m.drop_reason(&host, "NETFILTER_DROP");
    m.drop_reason(&host, "NO_SOCKET");
    m.firewall_verdict(&host, FirewallScope::Zone("public".into()), "port", "reject");
    m.listen_overflows(&web, 5);
    m.listen_overflows(&web, 2);
    m.set_unreachable_listeners(&web, UnreachableReason::LoopbackOnly, 3);
    m.set_unreachable_listeners(&web, UnreachableReason::LoopbackOnly, 2);
    m.events_lost(10, 3);
    m.events_suppressed(4, 1);
    m.set_watched(12, 30);
    m.set_namespace_interfaces(&web, 2);
    let p = scrape(&m);

    let expected_types = [
        ("reach_syn", "counter"),
        ("reach_connection_attempts", "counter"),
        ("reach_failed_connection_attempts", "counter"),
        ("reach_drops", "counter"),
        ("reach_firewall_verdicts", "counter"),
        ("reach_listen_overflows", "counter"),
        ("reach_unreachable_listeners", "gauge"),
        ("reach_events_lost", "counter"),
        ("reach_events_suppressed", "counter"),
        ("reach_namespace_interfaces", "gauge"),
        ("reach_watched_namespaces", "gauge"),
        ("reach_watched_interfaces", "gauge"),
    ];
    let names: Vec<&str> = p.keys().map(String::as_str).collect();
    let mut expected_names: Vec<&str> = expected_types.iter().map(|(n, _)| *n).collect();
    expected_names.sort();
    assert_eq!(names, expected_names);
    for (name, kind) in expected_types {
        assert_eq!(p[name].kind, kind, "{name}");
        let help = &p[name].help;
        assert!(help.len() > 30 && help.ends_with('.') && !help.ends_with(".."), "{name}: {help}");
    }

    let h = [("netns", "host")];
    let w = [("netns", "cni-1234"), ("namespace", "shop"), ("pod", "web-0")];
    assert_eq!(value(&p, "reach_syn", &h), Some(2.0), "no empty namespace/pod labels");
    assert_eq!(value(&p, "reach_syn", &w), Some(1.0));
    assert_eq!(
        value(&p, "reach_connection_attempts", &[w[0], w[1], w[2], ("outcome", "refused")]),
        Some(1.0)
    );
    assert_eq!(
        value(
            &p,
            "reach_failed_connection_attempts",
            &[w[0], w[1], w[2], ("class", "nothing_listening")]
        ),
        Some(1.0)
    );
    assert_eq!(value(&p, "reach_drops", &[h[0], ("reason", "NETFILTER_DROP")]), Some(2.0));
    assert_eq!(value(&p, "reach_drops", &[h[0], ("reason", "NO_SOCKET")]), Some(1.0));
    let fw = [
        h[0],
        ("scope_kind", "zone"),
        ("scope", "public"),
        ("concept", "port"),
        ("verdict", "reject"),
    ];
    assert_eq!(value(&p, "reach_firewall_verdicts", &fw), Some(1.0));
    assert_eq!(value(&p, "reach_listen_overflows", &w), Some(7.0));
    let lo = [w[0], w[1], w[2], ("reason", "loopback_only")];
    assert_eq!(value(&p, "reach_unreachable_listeners", &lo), Some(2.0), "a gauge: last set");
    assert_eq!(value(&p, "reach_events_lost", &[("kind", "syn")]), Some(3.0));
    assert_eq!(value(&p, "reach_events_lost", &[("kind", "other")]), Some(7.0));
    assert_eq!(value(&p, "reach_events_suppressed", &[("kind", "syn")]), Some(4.0));
    assert_eq!(value(&p, "reach_events_suppressed", &[("kind", "other")]), Some(1.0));
    assert_eq!(value(&p, "reach_watched_namespaces", &[]), Some(12.0));
    assert_eq!(value(&p, "reach_watched_interfaces", &[]), Some(30.0));
    let wl = [("netns", "cni-1234"), ("namespace", "shop"), ("pod", "web-0")];
    assert_eq!(value(&p, "reach_namespace_interfaces", &wl), Some(2.0));
    // A family without series is not exposed (prometheus-client skips it): nothing folded.
    assert!(!p.contains_key("reach_label_sets_folded"));
    assert_eq!(series(&p, "reach_drops"), 2);
}

#[test]
fn fresh_metrics_export_loss_counters_at_zero_and_no_where_series() {
    let p = scrape(&metrics(10));
    assert_eq!(value(&p, "reach_events_lost", &[("kind", "syn")]), Some(0.0));
    assert_eq!(value(&p, "reach_events_suppressed", &[("kind", "other")]), Some(0.0));
    assert_eq!(series(&p, "reach_syn"), 0);
    // A 0 for listeners and overflows takes no place.
    let m = metrics(10);
    m.set_unreachable_listeners(&Where::netns("a"), UnreachableReason::V6Only, 0);
    m.listen_overflows(&Where::netns("a"), 0);
    let p = scrape(&m);
    assert_eq!(series(&p, "reach_unreachable_listeners") + series(&p, "reach_listen_overflows"), 0);
    assert_eq!(m.unreachable.places(), 0);
    // But a fixed listener reads 0, not its stale count.
    m.set_unreachable_listeners(&Where::netns("a"), UnreachableReason::V6Only, 4);
    m.set_unreachable_listeners(&Where::netns("a"), UnreachableReason::V6Only, 0);
    let p = scrape(&m);
    let v6 = [("netns", "a"), ("reason", "v6only")];
    assert_eq!(value(&p, "reach_unreachable_listeners", &v6), Some(0.0));
}

#[test]
fn label_values_are_escaped() {
    let m = metrics(10);
    let odd = Where {
        netns: "pid:42(ng\"inx)".into(),
        namespace: Some("a\\b".into()),
        pod: Some("x\ny,z".into()),
    };
    m.syn(&odd);
    let p = scrape(&m);
    let l = [("netns", "pid:42(ng\"inx)"), ("namespace", "a\\b"), ("pod", "x\ny,z")];
    assert_eq!(value(&p, "reach_syn", &l), Some(1.0));
}

#[test]
fn firewall_scopes_export_scope_kind_and_scope() {
    let m = metrics(10);
    let h = Where::netns("host");
    m.firewall_verdict(&h, FirewallScope::Zone("public".into()), "service", "accept");
    m.firewall_verdict(&h, FirewallScope::Policy("allow-host-ipv6".into()), "rich_rule", "drop");
    m.firewall_verdict(&h, FirewallScope::Table("inet filter".into()), "rule", "drop");
    m.firewall_verdict(&h, FirewallScope::Table("inet filter".into()), "rule", "drop");
    let p = scrape(&m);
    let fw = |kind, scope, concept, verdict| {
        let l = [
            ("netns", "host"),
            ("scope_kind", kind),
            ("scope", scope),
            ("concept", concept),
            ("verdict", verdict),
        ];
        value(&p, "reach_firewall_verdicts", &l)
    };
    assert_eq!(fw("zone", "public", "service", "accept"), Some(1.0));
    assert_eq!(fw("policy", "allow-host-ipv6", "rich_rule", "drop"), Some(1.0));
    assert_eq!(fw("table", "inet filter", "rule", "drop"), Some(2.0));
    assert_eq!(series(&p, "reach_firewall_verdicts"), 3);
    // Every series has the same label keys.
    for l in p["reach_firewall_verdicts"].samples.keys() {
        let keys: Vec<&str> = l.keys().map(String::as_str).collect();
        assert_eq!(keys, ["concept", "netns", "scope", "scope_kind", "verdict"]);
    }
}

#[test]
fn beyond_max_label_sets_observations_fold_into_other_first_come_first_served() {
    let m = metrics(2);
    let (a, b, c, d) =
        (Where::netns("a"), pod("b", "ns", "p"), Where::netns("c"), Where::netns("d"));
    m.syn(&a);
    m.syn(&b);
    m.syn(&c); // third: folded
    m.syn(&d); // fourth: folded too
    m.syn(&a); // an admitted one keeps its own series
    m.attempt(&c, "accepted"); // each family has its own places
    let p = scrape(&m);
    let other = [("netns", "other"), ("namespace", "other"), ("pod", "other")];
    assert_eq!(value(&p, "reach_syn", &[("netns", "a")]), Some(2.0));
    assert_eq!(
        value(&p, "reach_syn", &[("netns", "b"), ("namespace", "ns"), ("pod", "p")]),
        Some(1.0)
    );
    assert_eq!(value(&p, "reach_syn", &other), Some(2.0));
    assert_eq!(value(&p, "reach_syn", &[("netns", "c")]), None);
    assert_eq!(series(&p, "reach_syn"), 3);
    assert_eq!(
        value(&p, "reach_connection_attempts", &[("netns", "c"), ("outcome", "accepted")]),
        Some(1.0)
    );
    let folded = [("metric", "reach_syn"), ("bound", "namespaces")];
    assert_eq!(value(&p, "reach_label_sets_folded", &folded), Some(2.0));
    assert_eq!(series(&p, "reach_label_sets_folded"), 1);
    assert_eq!(p["reach_label_sets_folded"].kind, "counter");
    assert!(p["reach_label_sets_folded"].help.starts_with("Observations recorded under \"other\""));
    // A caller's own "other" is the fold series, not a place of its own.
    m.syn(&Where::other());
    assert_eq!(value(&scrape(&m), "reach_syn", &other), Some(3.0));
    assert_eq!(m.syn.places(), 2);
}

#[test]
fn beyond_256_values_per_label_key_observations_fold_into_other() {
    let m = metrics(10);
    let h = Where::netns("host");
    for i in 0..MAX_VALUES_PER_KEY + 44 {
        m.drop_reason(&h, &format!("REASON_{i}"));
    }
    m.drop_reason(&h, "REASON_0"); // a known value still counts as itself
    let p = scrape(&m);
    assert_eq!(series(&p, "reach_drops"), MAX_VALUES_PER_KEY + 1);
    assert_eq!(value(&p, "reach_drops", &[("netns", "host"), ("reason", "REASON_0")]), Some(2.0));
    assert_eq!(value(&p, "reach_drops", &[("netns", "host"), ("reason", "other")]), Some(44.0));
    let folded = [("metric", "reach_drops"), ("bound", "values")];
    assert_eq!(value(&p, "reach_label_sets_folded", &folded), Some(44.0));
}

#[test]
fn series_per_where_are_bounded_across_label_keys() {
    let m = metrics(10);
    let h = Where::netns("host");
    // 40 scopes × 40 concepts = 1600 combinations, each key well under 256 values.
    for s in 0..40 {
        for c in 0..40 {
            m.firewall_verdict(&h, FirewallScope::Zone(format!("z{s}")), &format!("c{c}"), "drop");
        }
    }
    let p = scrape(&m);
    let limit = super::bounded::MAX_SERIES_PER_WHERE;
    assert_eq!(series(&p, "reach_firewall_verdicts"), limit + 1);
    let all_other = [
        ("netns", "host"),
        ("scope_kind", "other"),
        ("scope", "other"),
        ("concept", "other"),
        ("verdict", "other"),
    ];
    assert_eq!(value(&p, "reach_firewall_verdicts", &all_other), Some((1600 - limit) as f64));
}

#[test]
fn a_gone_namespace_s_series_go_once_grace_ended_and_free_their_place() {
    let m = metrics(1);
    let web = pod("cni-1", "shop", "web-0");
    let web_again = pod("cni-1", "shop", "web-0-renamed"); // same netns, another pod name
    m.syn(&web);
    m.attempt(&web, "refused");
    m.drop_reason(&web, "NO_SOCKET");
    m.failed_attempt_class(&web, "nothing_listening");
    m.firewall_verdict(&web, FirewallScope::Table("filter".into()), "rule", "drop");
    m.listen_overflows(&web, 1);
    m.set_unreachable_listeners(&web, UnreachableReason::DeviceBound, 1);
    m.set_namespace_interfaces(&web, 2);
    m.syn(&web_again); // folded (max 1), so not removed with cni-1: it is other's
    let t0 = Instant::now();
    m.gone("cni-1", t0);
    m.syn(&web); // a late event still counts until the grace ends
    m.expire(t0 + GRACE - Duration::from_millis(1));
    let before = scrape(&m);
    let w = [("netns", "cni-1"), ("namespace", "shop"), ("pod", "web-0")];
    assert_eq!(value(&before, "reach_syn", &w), Some(2.0));
    assert_eq!(series(&before, "reach_unreachable_listeners"), 1);

    m.expire(t0 + GRACE);
    let after = scrape(&m);
    for family in [
        "reach_connection_attempts",
        "reach_failed_connection_attempts",
        "reach_drops",
        "reach_firewall_verdicts",
        "reach_listen_overflows",
        "reach_unreachable_listeners",
        "reach_namespace_interfaces",
    ] {
        assert_eq!(series(&after, family), 0, "{family}");
    }
    let other = [("netns", "other"), ("namespace", "other"), ("pod", "other")];
    assert_eq!(series(&after, "reach_syn"), 1);
    assert_eq!(value(&after, "reach_syn", &other), Some(1.0), "the fold series stays");
    // The place is free: the next namespace gets its own series.
    m.syn(&Where::netns("cni-2"));
    assert_eq!(value(&scrape(&m), "reach_syn", &[("netns", "cni-2")]), Some(1.0));
}

#[test]
fn back_before_the_grace_ended_keeps_the_series() {
    let m = metrics(10);
    let a = Where::netns("container:abc");
    m.syn(&a);
    let t0 = Instant::now();
    m.gone("container:abc", t0);
    m.back("container:abc");
    m.expire(t0 + 10 * GRACE);
    assert_eq!(value(&scrape(&m), "reach_syn", &[("netns", "container:abc")]), Some(1.0));
    // Gone again later: goes after a full grace from then.
    let t1 = t0 + 20 * GRACE;
    m.gone("container:abc", t1);
    m.expire(t1 + GRACE / 2);
    assert_eq!(series(&scrape(&m), "reach_syn"), 1);
    m.expire(t1 + GRACE);
    assert_eq!(series(&scrape(&m), "reach_syn"), 0);
}

#[test]
fn memory_stays_bounded_under_namespace_churn() {
    let m = metrics(5);
    let t0 = Instant::now();
    for i in 0..5_000 {
        let w = Where::netns(format!("cni-{i}"));
        m.syn(&w);
        m.attempt(&w, &format!("outcome{}", i % 300));
        m.gone(&w.netns, t0);
    }
    let p = scrape(&m);
    assert_eq!(series(&p, "reach_syn"), 6, "5 places and other");
    assert!(series(&p, "reach_connection_attempts") <= 5 + MAX_VALUES_PER_KEY + 1);
    m.expire(t0 + GRACE);
    let p = scrape(&m);
    assert_eq!(series(&p, "reach_syn"), 1, "only other is left");
    assert_eq!(m.syn.places(), 0);
}

#[test]
fn the_catalog_lists_exactly_what_a_scrape_shows_with_every_label() {
    // One place allowed per family: the second namespace folds, so the folded counter shows.
    let m = metrics(1);
    let web = pod("cni-1234", "shop", "web-0");
    let other = Where::netns("host");
    for w in [&web, &other] {
        m.syn(w);
        m.attempt(w, "refused");
        m.failed_attempt_class(w, "nothing_listening");
        m.drop_reason(w, "NO_SOCKET");
        m.firewall_verdict(w, FirewallScope::Zone("public".into()), "port", "reject");
        m.listen_overflows(w, 1);
        m.set_unreachable_listeners(w, UnreachableReason::LoopbackOnly, 1);
        m.set_namespace_interfaces(w, 1);
    }
    m.events_lost(1, 1);
    m.events_suppressed(1, 1);
    m.set_watched(2, 2);
    let p = scrape(&m);
    let mut seen = Vec::new();
    for (name, f) in &p {
        let scraped = if f.kind == "counter" { format!("{name}_total") } else { name.clone() };
        let entry = CATALOG
            .iter()
            .find(|e| e.name == scraped)
            .unwrap_or_else(|| panic!("{scraped} is exported but not in metrics::CATALOG"));
        assert_eq!(entry.kind, f.kind, "{scraped}");
        for l in f.samples.keys() {
            for (key, _) in l.iter() {
                assert!(
                    entry.labels.contains(&key.as_str()),
                    "{scraped} has label {key} the catalog lacks"
                );
            }
        }
        seen.push(entry.name);
    }
    let unseen: Vec<&str> = CATALOG.iter().map(|e| e.name).filter(|n| !seen.contains(n)).collect();
    assert!(unseen.is_empty(), "in metrics::CATALOG but never exported: {unseen:?}");
}
