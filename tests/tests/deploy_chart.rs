//! The Helm chart and the plain manifests, proven without a cluster: Helm (helm-python-sdk)
//! lints and renders the chart, every rendered object validates strictly against the API
//! server's schemas of Kubernetes 1.30 and of the newest release kubernetes-validate knows, the
//! plain manifests are exactly the chart's render, and the Grafana dashboard queries only what
//! the agent exports.
use reach_tests::deploy::{self, object};
use serde_json::{Value, json};

/// Values operators set, each rendering a different chart: defaults; everything optional on;
/// ports traced, a CRI-O socket, JSON logs, own resources, node selection.
fn value_sets() -> Vec<(&'static str, String)> {
    vec![
        ("defaults", "{}".into()),
        (
            "everything on",
            json!({
                "createNamespace": true,
                "serviceMonitor": {"enabled": true, "labels": {"release": "prometheus"}},
                "dashboard": {"enabled": true},
                "priorityClassName": "system-node-critical",
                "podAnnotations": {"team": "net"},
                "imagePullSecrets": [{"name": "registry"}],
            })
            .to_string(),
        ),
        (
            "operator settings",
            json!({
                "image": {"repository": "registry.example.com/reach", "tag": "0.1.0-test"},
                "metrics": {"address": "127.0.0.1", "port": 19464, "annotations": false, "service": {"enabled": false}},
                "labels": {"maxLabelSets": 50, "seriesGraceSeconds": 60},
                "cri": {"socket": "/var/run/crio/crio.sock"},
                "trace": {"ports": [8080, 443], "skipNetns": ["host"]},
                "jsonLog": true,
                "logLevel": "info",
                "extraArgs": ["--flow-timeout=5"],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1000m", "memory": "512Mi"}},
                "nodeSelector": {"node-role.kubernetes.io/worker": ""},
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "edge", "effect": "NoSchedule"}],
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}]}}},
            })
            .to_string(),
        ),
    ]
}

/// The Kubernetes releases every object must validate against: the oldest still widely run and
/// the newest whose schemas kubernetes-validate ships.
const KUBE: &[&str] = &["1.30.0", "latest"];

#[test]
fn chart_lints_clean_for_kubernetes_1_30_and_the_newest() {
    for (what, values) in value_sets() {
        for kube in ["v1.30.0", "v1.37.0"] {
            let report = deploy::lint(&values, kube);
            assert_eq!(report["total_charts_linted"], 1, "{what}: {report}");
            assert_eq!(report["errors"], json!([]), "{what} on {kube}: {report}");
            // Severity 1 is information ("icon is recommended"); warnings fail, as --strict.
            let serious: Vec<&Value> = report["messages"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["severity"].as_u64().unwrap_or(3) >= 2)
                .collect();
            assert!(serious.is_empty(), "{what} on {kube}: {serious:?}");
        }
    }
}

#[test]
fn every_rendered_object_validates_strictly_against_1_30_and_the_newest() {
    let mut summary = Vec::new();
    for (what, values) in value_sets() {
        let docs = deploy::render(&values);
        let v = deploy::validate(&docs, KUBE);
        let versions = v["versions"].as_array().unwrap();
        assert_eq!(versions.len(), 2, "{v}");
        for r in v["results"].as_array().unwrap() {
            let kind = r["kind"].as_str().unwrap();
            match r["result"].as_str().unwrap() {
                "valid" => {}
                // A CRD: kubernetes-validate holds only the API server's own types. Its shape
                // is checked against the Service it selects below.
                "no_schema" if kind == "ServiceMonitor" => {}
                other => {
                    panic!("{what}: {kind} {} on {}: {other}: {}", r["name"], r["kube"], r["error"])
                }
            }
        }
        let results = v["results"].as_array().unwrap();
        let kinds = |result: &str| -> Vec<String> {
            let mut k: Vec<String> = results
                .iter()
                .filter(|r| r["result"] == result)
                .map(|r| r["kind"].as_str().unwrap().to_string())
                .collect();
            k.dedup();
            k
        };
        let (valid, unchecked) = (kinds("valid"), kinds("no_schema"));
        summary.push(format!(
            "{what}: {} objects; strictly valid on {}: {}{}",
            docs.len(),
            versions.iter().map(|v| v.as_str().unwrap()).collect::<Vec<_>>().join(" and "),
            valid.join(", "),
            if unchecked.is_empty() {
                String::new()
            } else {
                format!(
                    "; no schema (a CRD, checked against its Service): {}",
                    unchecked.join(", ")
                )
            }
        ));
    }
    eprintln!("{}", summary.join("\n"));
}

#[test]
fn strict_validation_rejects_a_misspelt_field() {
    // The validation above means something only if a typo fails it.
    let docs = deploy::render("{}");
    let mut bad = docs.clone();
    for d in &mut bad {
        if d["object"]["kind"] == "DaemonSet" {
            let sc =
                &mut d["object"]["spec"]["template"]["spec"]["containers"][0]["securityContext"];
            let ro = sc.as_object_mut().unwrap().remove("readOnlyRootFilesystem").unwrap();
            sc["readOnlyRootFilesytem"] = ro;
        }
    }
    let v = deploy::validate(&bad, &["1.30.0"]);
    let ds = v["results"].as_array().unwrap().iter().find(|r| r["kind"] == "DaemonSet").unwrap();
    assert_eq!(ds["result"], "invalid", "{ds}");
    assert!(ds["error"].as_str().unwrap().contains("readOnlyRootFilesytem"), "{ds}");
}

#[test]
fn daemonset_has_the_node_agent_shape() {
    let docs = deploy::render("{}");
    let ds = object(&docs, "DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!((&pod["hostNetwork"], &pod["hostPID"]), (&json!(true), &json!(true)));
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(pod["tolerations"], json!([{"operator": "Exists"}]), "every node, tainted or not");
    let c = deploy::container(ds);
    let sc = &c["securityContext"];
    assert_eq!(sc["privileged"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    let port = deploy::metrics_port(ds);
    let annotations = &ds["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], port.to_string());
    let args: Vec<&str> =
        c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(args[0], "agent");
    assert!(args.contains(&format!("--metrics=0.0.0.0:{port}").as_str()), "{args:?}");
    assert!(args.contains(&"--cri-socket=/run/containerd/containerd.sock"), "{args:?}");
    // The CRI socket's directory is mounted, read-only, at the same path.
    let mounts = c["volumeMounts"].as_array().unwrap();
    assert!(
        mounts.iter().any(|m| m["mountPath"] == "/run/containerd" && m["readOnly"] == true),
        "{mounts:?}"
    );
    // The ServiceAccount exists, has no token mounted, and nothing binds it to a role.
    let sa = object(&docs, "ServiceAccount");
    assert_eq!(sa["automountServiceAccountToken"], false);
    assert_eq!(pod["serviceAccountName"], sa["metadata"]["name"]);
    for kind in ["Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"] {
        assert!(
            !docs.iter().any(|d| d["object"]["kind"] == kind),
            "the chart grants API rights: {kind}"
        );
    }
}

#[test]
fn operator_values_reach_the_agent_arguments_and_pod() {
    let (_, values) = value_sets().remove(2);
    let docs = deploy::render(&values);
    let ds = object(&docs, "DaemonSet");
    let c = deploy::container(ds);
    let args: Vec<&str> =
        c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    for want in [
        "--metrics=127.0.0.1:19464",
        "--max-label-sets=50",
        "--series-grace=60",
        "--cri-socket=/var/run/crio/crio.sock",
        "--trace-port=8080",
        "--trace-port=443",
        "--no-trace-netns=host",
        "--json",
        "--log=info",
        "--flow-timeout=5",
    ] {
        assert!(args.contains(&want), "{want} missing from {args:?}");
    }
    assert_eq!(c["image"], "registry.example.com/reach:0.1.0-test");
    assert_eq!(c["resources"]["limits"]["memory"], "512Mi");
    assert_eq!(deploy::metrics_port(ds), 19464);
    let pod = &ds["spec"]["template"]["spec"];
    // Helm merges maps with the defaults (null removes a default key).
    assert_eq!(
        pod["nodeSelector"],
        json!({"kubernetes.io/os": "linux", "node-role.kubernetes.io/worker": ""})
    );
    assert_eq!(pod["tolerations"][0]["key"], "dedicated");
    assert!(
        !ds["spec"]["template"]["metadata"]["annotations"]
            .as_object()
            .is_some_and(|a| a.contains_key("prometheus.io/scrape"))
    );
    assert!(
        !docs.iter().any(|d| d["object"]["kind"] == "Service"),
        "metrics.service.enabled=false"
    );
    let mounts = c["volumeMounts"].as_array().unwrap();
    assert!(mounts.iter().any(|m| m["mountPath"] == "/var/run/crio"), "{mounts:?}");
    // Each reach argument the chart passes is one `reach agent` accepts.
    let help = reach_tests::reach(&["agent", "--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    for a in &args[1..] {
        let flag = a.split('=').next().unwrap();
        assert!(
            help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
            "reach agent has no {flag}"
        );
    }
}

#[test]
fn no_cri_socket_means_no_flag_and_no_mount() {
    let docs = deploy::render(r#"{"cri": {"socket": ""}}"#);
    let ds = object(&docs, "DaemonSet");
    let c = deploy::container(ds);
    let args = c["args"].to_string();
    assert!(!args.contains("--cri-socket"), "{args}");
    let names: Vec<&str> =
        c["volumeMounts"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert!(!names.contains(&"cri"), "{names:?}");
    let volumes = ds["spec"]["template"]["spec"]["volumes"].as_array().unwrap();
    assert!(!volumes.iter().any(|v| v["name"] == "cri"), "{volumes:?}");
    let v = deploy::validate(&docs, &["1.30.0"]);
    assert!(v["results"].as_array().unwrap().iter().all(|r| r["result"] != "invalid"), "{v}");
}

#[test]
fn service_monitor_selects_the_agent_service_by_its_port() {
    let (_, values) = value_sets().remove(1);
    let docs = deploy::render(&values);
    let sm = object(&docs, "ServiceMonitor");
    let svc = object(&docs, "Service");
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    let selector = sm["spec"]["selector"]["matchLabels"].as_object().unwrap();
    for (k, v) in selector {
        assert_eq!(
            &svc["metadata"]["labels"][k], v,
            "the ServiceMonitor selects label {k} the Service lacks"
        );
    }
    let port = sm["spec"]["endpoints"][0]["port"].as_str().unwrap();
    assert!(svc["spec"]["ports"].as_array().unwrap().iter().any(|p| p["name"] == port));
    assert_eq!(
        sm["spec"]["namespaceSelector"]["matchNames"],
        json!([svc["metadata"]["namespace"]])
    );
    assert_eq!(sm["metadata"]["labels"]["release"], "prometheus");
    // The Service selects the DaemonSet's pods.
    let ds = object(&docs, "DaemonSet");
    for (k, v) in svc["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&ds["spec"]["template"]["metadata"]["labels"][k], v);
    }
    // Without its Service a ServiceMonitor would select nothing: the chart refuses.
    let err = deploy::render_error(
        r#"{"serviceMonitor": {"enabled": true}, "metrics": {"service": {"enabled": false}}}"#,
    );
    assert!(err.contains("serviceMonitor.enabled needs metrics.service.enabled"), "{err}");
}

#[test]
fn plain_manifests_are_the_chart_rendered() {
    for (file, values, kinds) in xtask::deploy_tools::MANIFESTS {
        let path = xtask::deploy_tools::manifests_dir().join(file);
        let committed = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run `cargo xtask manifests`", path.display()));
        let rendered = xtask::deploy_tools::render_manifest(file, values, kinds).unwrap();
        assert!(
            committed == rendered,
            "{} differs from the chart's render: run `cargo xtask manifests` and commit",
            path.display()
        );
    }
}

fn dashboard() -> Value {
    let path = xtask::deploy_tools::chart_dir().join("dashboards/reach-overview.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Every PromQL expression of a dashboard: panel targets and variable queries.
fn expressions(d: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    for v in d["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["query"]["query"].as_str() {
            out.push(q.to_string());
        }
    }
    out
}

/// Problems of a dashboard's queries against the agent's metric catalog.
fn dashboard_problems(d: &Value) -> Vec<String> {
    use reach_agent::metrics::CATALOG;
    // Target labels Prometheus adds to every series it scrapes (and the ServiceMonitor's node).
    const TARGET_LABELS: &[&str] = &["instance", "job", "node"];
    let mut problems = Vec::new();
    for expr in expressions(d) {
        let names = deploy::metric_names(&expr);
        if names.is_empty() {
            problems.push(format!("queries no reach metric: {expr}"));
        }
        let families: Vec<_> = names
            .iter()
            .filter_map(|n| {
                let f = CATALOG.iter().find(|e| e.name == n);
                if f.is_none() {
                    problems.push(format!("{n} is not a metric reach agent exports: {expr}"));
                }
                f
            })
            .collect();
        for label in deploy::label_names(&expr) {
            let known = TARGET_LABELS.contains(&label.as_str())
                || families.iter().any(|f| f.labels.contains(&label.as_str()));
            if !known {
                problems.push(format!("label {label} is on none of {names:?}: {expr}"));
            }
        }
    }
    problems
}

#[test]
fn dashboard_queries_only_metrics_and_labels_the_agent_exports() {
    let d = dashboard();
    let problems = dashboard_problems(&d);
    assert!(problems.is_empty(), "{problems:#?}");
    // What the dashboard is for: each of these has a panel.
    let exprs = expressions(&d).join("\n");
    for (what, needle) in [
        (
            "failed attempts by verdict class",
            "sum by (class) (rate(reach_failed_connection_attempts_total",
        ),
        (
            "failed attempts by pod",
            "sum by (namespace, pod, netns, class) (increase(reach_failed_connection_attempts_total",
        ),
        ("drops by reason", "sum by (reason) (rate(reach_drops_total"),
        (
            "firewall verdicts by zone/policy/rule",
            "sum by (scope_kind, scope, concept, verdict) (increase(reach_firewall_verdicts_total",
        ),
        ("unreachable listeners", "reach_unreachable_listeners"),
    ] {
        assert!(exprs.contains(needle), "no panel for {what}");
    }
    // The chart's ConfigMap carries this very file.
    let docs = deploy::render(r#"{"dashboard": {"enabled": true}}"#);
    let cm = object(&docs, "ConfigMap");
    let shipped: Value =
        serde_json::from_str(cm["data"]["reach-overview.json"].as_str().unwrap()).unwrap();
    assert_eq!(shipped, d);
}

#[test]
fn dashboard_check_catches_an_unknown_metric_and_label() {
    // The check above must fail on a dashboard that asks for what reach does not export.
    let mut d = dashboard();
    d["panels"][0]["targets"][0]["expr"] = json!("sum(rate(reach_failed_connections_total[5m]))");
    d["panels"][1]["targets"][0]["expr"] = json!("sum by (zone) (reach_firewall_verdicts_total)");
    let problems = dashboard_problems(&d);
    assert!(
        problems.iter().any(|p| p.contains("reach_failed_connections_total is not a metric")),
        "{problems:?}"
    );
    assert!(problems.iter().any(|p| p.contains("label zone")), "{problems:?}");
}
