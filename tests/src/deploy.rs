//! The Helm chart as the tests see it: rendered, linted and schema-checked by the real tools
//! (`deploy/tools/chart.py` in the venv `cargo xtask setup` makes), and the DaemonSet's pod spec
//! translated field by field into the `podman run` ([`crate::podman`]) that runs the image the
//! way a kubelet would.

use serde_json::Value;
use xtask::deploy_tools;

/// Runs chart.py; its JSON stdout, or a panic naming the command and its stderr.
fn chart_py(args: &[&str], stdin: Option<&str>) -> Value {
    let python = deploy_tools::python();
    assert!(
        python.exists(),
        "{} is missing: run `cargo xtask setup` (it makes the venv with helm-python-sdk and \
         kubernetes-validate)",
        python.display()
    );
    let mut cmd = deploy_tools::chart_command();
    cmd.args(args).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped());
    cmd.stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("start chart.py");
    {
        use std::io::Write as _;
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "chart.py {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("chart.py {args:?} printed no JSON ({e}): {}", String::from_utf8_lossy(&out.stdout))
    })
}

/// The chart's objects rendered with `values` (JSON merged over values.yaml), release `reach`
/// in namespace `reach`: `[{"source": template, "object": {...}}]`.
pub fn render(values: &str) -> Vec<Value> {
    let chart = deploy_tools::chart_dir();
    let v = chart_py(&["render", chart.to_str().unwrap(), "--values", values], None);
    v["documents"].as_array().expect("documents").clone()
}

/// A render that must fail (a template's `fail`): Helm's message.
pub fn render_error(values: &str) -> String {
    let chart = deploy_tools::chart_dir();
    let out = deploy_tools::chart_command()
        .args(["render", chart.to_str().unwrap(), "--values", values])
        .output()
        .unwrap();
    assert!(!out.status.success(), "rendering with {values} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `helm lint --strict` (with `kube_version`, e.g. "v1.30.0").
pub fn lint(values: &str, kube_version: &str) -> Value {
    let chart = deploy_tools::chart_dir();
    chart_py(
        &["lint", chart.to_str().unwrap(), "--values", values, "--kube-version", kube_version],
        None,
    )
}

/// kubernetes-validate, strict, of `documents` against each release in `kube` ("latest" is
/// the newest it knows): `{"versions": [...], "results": [{kind, name, kube, result, error}]}`.
pub fn validate(documents: &[Value], kube: &[&str]) -> Value {
    let mut args = vec!["validate"];
    for k in kube {
        args.extend(["--kube", k]);
    }
    chart_py(&args, Some(&serde_json::to_string(documents).unwrap()))
}

/// The one object of `kind` among `documents`.
pub fn object<'a>(documents: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> =
        documents.iter().map(|d| &d["object"]).filter(|o| o["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "expected one {kind}, found {}", found.len());
    found[0]
}

/// The DaemonSet's one container.
pub fn container(daemonset: &Value) -> &Value {
    let containers = daemonset["spec"]["template"]["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1, "reach's DaemonSet has one container");
    &containers[0]
}

/// The capabilities the container adds.
pub fn added_capabilities(daemonset: &Value) -> Vec<String> {
    container(daemonset)["securityContext"]["capabilities"]["add"]
        .as_array()
        .map(|a| a.iter().map(|c| c.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// A copy of `daemonset` adding exactly `caps`.
pub fn with_capabilities(daemonset: &Value, caps: &[String]) -> Value {
    let mut ds = daemonset.clone();
    ds["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"]["add"] =
        Value::from(caps.to_vec());
    ds
}

/// The pod-spec and container fields [`podman_run_args`] knows how to carry over. Any other
/// field fails the translation: a podman run that silently ignored part of the DaemonSet would
/// prove nothing about it.
const POD_FIELDS: &[&str] = &[
    "serviceAccountName",
    "automountServiceAccountToken",
    "hostNetwork",
    "hostPID",
    "dnsPolicy",
    "terminationGracePeriodSeconds",
    "containers",
    "volumes",
    "nodeSelector",
    "tolerations",
];
const CONTAINER_FIELDS: &[&str] = &[
    "name",
    "image",
    "imagePullPolicy",
    "args",
    "ports",
    "livenessProbe",
    "readinessProbe",
    "resources",
    "securityContext",
    "volumeMounts",
];
const SECURITY_FIELDS: &[&str] = &[
    "runAsUser",
    "runAsNonRoot",
    "privileged",
    "allowPrivilegeEscalation",
    "readOnlyRootFilesystem",
    "capabilities",
    "seccompProfile",
];

fn keys_known(what: &str, v: &Value, known: &[&str]) {
    for k in v.as_object().unwrap_or_else(|| panic!("{what} is not an object")).keys() {
        assert!(
            known.contains(&k.as_str()),
            "{what}.{k}: the podman translation does not carry it over; teach tests/src/deploy.rs"
        );
    }
}

/// `podman run` arguments (after `run`, before the image) that give the container what the
/// DaemonSet's pod spec gives it on a node: host network and PID namespace, the security
/// context (capabilities, read-only root, no privilege escalation, the runtime's default
/// seccomp profile, uid 0), the hostPath mounts with their read-only flags and propagation,
/// and the memory and CPU limits. Returns (arguments, the container's args).
pub fn podman_run_args(daemonset: &Value) -> (Vec<String>, Vec<String>) {
    let pod = &daemonset["spec"]["template"]["spec"];
    keys_known("pod spec", pod, POD_FIELDS);
    let c = container(daemonset);
    keys_known("container", c, CONTAINER_FIELDS);
    let sc = &c["securityContext"];
    keys_known("securityContext", sc, SECURITY_FIELDS);
    let mut args: Vec<String> = Vec::new();
    fn arg(args: &mut Vec<String>, a: &str) {
        args.push(a.to_string());
    }
    if pod["hostNetwork"] == true {
        arg(&mut args, "--network=host");
    }
    if pod["hostPID"] == true {
        arg(&mut args, "--pid=host");
    }
    assert_eq!(sc["privileged"], false, "the DaemonSet must not be privileged");
    if let Some(uid) = sc["runAsUser"].as_u64() {
        args.push(format!("--user={uid}:{uid}"));
    }
    if sc["readOnlyRootFilesystem"] == true {
        // podman adds writable tmpfs on /tmp, /var/tmp and /run to a read-only root unless
        // told not to; a kubelet adds none.
        arg(&mut args, "--read-only");
        arg(&mut args, "--read-only-tmpfs=false");
    }
    if sc["allowPrivilegeEscalation"] == false {
        arg(&mut args, "--security-opt=no-new-privileges");
    }
    match sc["seccompProfile"]["type"].as_str() {
        // podman's default profile is its runtime default, as containerd's is for RuntimeDefault.
        Some("RuntimeDefault") => {}
        other => panic!("seccompProfile {other:?}: only RuntimeDefault is translated"),
    }
    let caps = &sc["capabilities"];
    let drop: Vec<&str> = caps["drop"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c.as_str()).collect())
        .unwrap_or_default();
    assert_eq!(drop, ["ALL"], "the container drops every capability first");
    arg(&mut args, "--cap-drop=all");
    for cap in added_capabilities(daemonset) {
        args.push(format!("--cap-add={cap}"));
    }
    // Volumes by name → host path.
    let volumes = pod["volumes"].as_array().cloned().unwrap_or_default();
    for m in c["volumeMounts"].as_array().cloned().unwrap_or_default() {
        let name = m["name"].as_str().unwrap();
        let vol = volumes
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("volumeMount {name} has no volume"));
        let host = vol["hostPath"]["path"]
            .as_str()
            .unwrap_or_else(|| panic!("volume {name} is not a hostPath: translate it"));
        // What the kubelet checks or creates before starting the pod.
        match vol["hostPath"]["type"].as_str() {
            Some("Directory") => assert!(
                std::path::Path::new(host).is_dir(),
                "hostPath {host} (type Directory) does not exist here: the kubelet would not start the pod"
            ),
            Some("DirectoryOrCreate") => std::fs::create_dir_all(host).unwrap(),
            other => panic!("hostPath type {other:?} of {name}: translate it"),
        }
        let mut opts = vec![if m["readOnly"] == true { "ro" } else { "rw" }];
        match m["mountPropagation"].as_str() {
            None | Some("None") => opts.push("rprivate"),
            Some("HostToContainer") => opts.push("rslave"),
            Some(p) => panic!("mountPropagation {p}: translate it"),
        }
        args.push(format!(
            "--volume={host}:{}:{}",
            m["mountPath"].as_str().unwrap(),
            opts.join(",")
        ));
    }
    let limits = &c["resources"]["limits"];
    if let Some(mem) = limits["memory"].as_str() {
        let mib: u64 = mem.strip_suffix("Mi").expect("memory limit in Mi").parse().unwrap();
        args.push(format!("--memory={mib}m"));
    }
    if let Some(cpu) = limits["cpu"].as_str() {
        let milli: f64 = cpu.strip_suffix('m').expect("cpu limit in m").parse().unwrap();
        args.push(format!("--cpus={}", milli / 1000.0));
    }
    let container_args =
        c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect();
    (args, container_args)
}

/// The port of the container's `metrics` port (the probes' target).
pub fn metrics_port(daemonset: &Value) -> u16 {
    let ports = container(daemonset)["ports"].as_array().unwrap();
    let p = ports.iter().find(|p| p["name"] == "metrics").expect("a port named metrics");
    p["containerPort"].as_u64().unwrap() as u16
}

/// `reach_[a-z_]+` metric names in a PromQL expression.
pub fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("reach_") {
        let start = i + at;
        let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
        if start > 0 && ident(b[start - 1]) {
            i = start + 6;
            continue;
        }
        let mut end = start;
        while end < b.len() && ident(b[end]) {
            end += 1;
        }
        out.push(expr[start..end].to_string());
        i = end;
    }
    out
}

/// Label names a PromQL expression groups by (`by (a, b)`) or selects on (`{a="x"}`).
pub fn label_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("by (") {
        let inner = &rest[at + 4..];
        let close = inner.find(')').expect("unclosed by (");
        out.extend(
            inner[..close].split(',').map(|l| l.trim().to_string()).filter(|l| !l.is_empty()),
        );
        rest = &inner[close..];
    }
    let mut rest = expr;
    while let Some(at) = rest.find('{') {
        let inner = &rest[at + 1..];
        let close = inner.find('}').expect("unclosed {");
        for matcher in inner[..close].split(',') {
            let name: String = matcher
                .trim()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push(name);
            }
        }
        rest = &inner[close..];
    }
    out
}
