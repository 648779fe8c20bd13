//! The Kubernetes manifests in deploy/, held to what the binary serves and
//! reads: every manifest parses; the probe and preStop paths are served by a
//! live daemon; the port is the one it listens on; every `KUBERNARY_*`
//! variable is one the CLI reads or `KUBERNARY_<CHECK>_<KEY>` for a check
//! the manifest lists and a key its kind reads; and the shutdown deadlines
//! fit in the grace period.

mod support;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use support::Daemon;

/// The peak resident set measured under load (README, Kubernetes): a
/// memory request below it would be a promise the pod breaks.
const MEASURED_PEAK_RSS: u64 = 5 * 1024 * 1024;

/// Kubernetes' default when a pod sets no terminationGracePeriodSeconds.
const DEFAULT_GRACE: u64 = 30;

/// The keys a kind reads besides `COMMON_KEYS`, from the binary.
fn kind_keys(kind: &str) -> Option<Vec<&'static str>> {
    kubernary::checks::keys(kind).map(<[&str]>::to_vec)
}

fn all_kinds() -> BTreeSet<&'static str> {
    kubernary::checks::KINDS.iter().copied().collect()
}

/// Every YAML document in deploy/, with the file it came from.
fn documents() -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("read deploy/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in {}", dir.display());
    let mut docs = Vec::new();
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let value = Value::deserialize(doc).unwrap_or_else(|e| panic!("{name}: {e}"));
            if !value.is_null() {
                docs.push((name.clone(), value));
            }
        }
    }
    docs
}

/// A Deployment or DaemonSet and its kubernary container.
struct Workload {
    what: String,
    pod: Value,
    container: Value,
}

impl Workload {
    /// Name to value, `None` for a value from `valueFrom`.
    fn env(&self) -> BTreeMap<String, Option<String>> {
        self.container["env"]
            .as_array()
            .map(|vars| {
                vars.iter()
                    .map(|v| {
                        let name = v["name"].as_str().expect("env name").to_string();
                        (name, v["value"].as_str().map(str::to_string))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn env_map(&self) -> HashMap<String, String> {
        self.env().into_iter().filter_map(|(k, v)| Some((k, v?))).collect()
    }

    /// `(name, kind)` of each check in KUBERNARY_CHECKS.
    fn checks(&self) -> Vec<(String, String)> {
        let list = self
            .env_map()
            .get("KUBERNARY_CHECKS")
            .cloned()
            .unwrap_or_else(|| panic!("{}: KUBERNARY_CHECKS is not set", self.what));
        list.split(',')
            .map(str::trim)
            .filter(|i| !i.is_empty())
            .map(|item| match item.split_once('=') {
                Some((name, kind)) => (name.trim().to_string(), kind.trim().to_string()),
                None => (item.to_string(), item.to_string()),
            })
            .collect()
    }

    /// The options the CLI makes of this environment, and the variables it
    /// read to make them.
    fn cli(&self) -> (kubernary::cli::Options, BTreeSet<String>) {
        let env = self.env_map();
        let read = RefCell::new(BTreeSet::new());
        let parsed = kubernary::cli::parse(&[], &|name| {
            read.borrow_mut().insert(name.to_string());
            env.get(name).cloned()
        });
        match parsed {
            Ok(options) => (options, read.into_inner()),
            Err(e) => panic!("{}: the CLI refuses this environment: {e:?}", self.what),
        }
    }

    /// A check's TIMEOUT, or the default.
    fn timeout(&self, check: &str) -> Duration {
        let var = format!("KUBERNARY_{}_TIMEOUT", var_name(check));
        match self.env_map().get(&var) {
            Some(text) => {
                kubernary::duration::parse(text).unwrap_or_else(|e| panic!("{}: {var}: {e}", self.what))
            }
            None => kubernary::config::DEFAULT_TIMEOUT,
        }
    }

    fn max_timeout(&self) -> Duration {
        self.checks().iter().map(|(name, _)| self.timeout(name)).max().unwrap()
    }

    /// The container port a probe's `port` names (by name or number).
    fn port(&self, port: &Value) -> u64 {
        let ports = self.container["ports"].as_array().expect("container ports");
        match port {
            Value::Number(n) => n.as_u64().unwrap(),
            Value::String(name) => ports
                .iter()
                .find(|p| p["name"] == name.as_str())
                .and_then(|p| p["containerPort"].as_u64())
                .unwrap_or_else(|| panic!("{}: no container port named {name}", self.what)),
            other => panic!("{}: port {other}", self.what),
        }
    }

    fn http_get(&self, at: &[&str]) -> (String, u64) {
        let mut v = &self.container;
        for key in at {
            v = &v[*key];
        }
        let get = &v["httpGet"];
        let path = get["path"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: {} has no httpGet.path", self.what, at.join(".")));
        (path.to_string(), self.port(&get["port"]))
    }
}

/// `KUBERNARY_<NAME>_`: the check name upper-cased, `-` as `_`.
fn var_name(check: &str) -> String {
    check.to_ascii_uppercase().replace('-', "_")
}

fn workloads() -> Vec<Workload> {
    let mut out = Vec::new();
    for (file, doc) in documents() {
        let kind = doc["kind"].as_str().unwrap_or_default();
        if !["Deployment", "DaemonSet"].contains(&kind) {
            continue;
        }
        let what = format!("{file}: {kind} {}", doc["metadata"]["name"]);
        let pod = doc["spec"]["template"]["spec"].clone();
        let container = pod["containers"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["name"] == "kubernary"))
            .unwrap_or_else(|| panic!("{what}: no container named kubernary"))
            .clone();
        out.push(Workload { what, pod, container });
    }
    out
}

/// `16Mi`, `64M`, `1Gi`, `1000`: bytes.
fn quantity(text: &str) -> u64 {
    let units = [
        ("Ki", 1u64 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("k", 1000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
    ];
    for (suffix, factor) in units {
        if let Some(n) = text.strip_suffix(suffix) {
            return n.parse::<u64>().unwrap() * factor;
        }
    }
    text.parse().unwrap()
}

#[test]
fn every_manifest_parses_into_the_objects_the_readme_names() {
    let docs = documents();
    let mut kinds = BTreeSet::new();
    for (file, doc) in &docs {
        for field in ["apiVersion", "kind"] {
            assert!(doc[field].is_string(), "{file}: no {field}: {doc}");
        }
        assert!(doc["metadata"]["name"].is_string(), "{file}: no name");
        kinds.insert(doc["kind"].as_str().unwrap().to_string());
    }
    for kind in ["Deployment", "DaemonSet", "ServiceAccount"] {
        assert!(kinds.contains(kind), "deploy/ has no {kind}: {kinds:?}");
    }

    // The workloads run as the ServiceAccount, whose IRSA annotation names
    // a role.
    let accounts: Vec<&Value> =
        docs.iter().map(|(_, d)| d).filter(|d| d["kind"] == "ServiceAccount").collect();
    for account in &accounts {
        let arn = account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
            .as_str()
            .expect("an IRSA role-arn annotation");
        assert!(arn.starts_with("arn:aws:iam::") && arn.contains(":role/"), "{arn}");
    }
    for w in workloads() {
        let sa = w.pod["serviceAccountName"].as_str().expect("serviceAccountName");
        assert!(
            accounts.iter().any(|a| a["metadata"]["name"] == sa),
            "{}: ServiceAccount {sa} is not in deploy/",
            w.what
        );
    }
}

#[test]
fn env_names_are_what_the_binary_reads() {
    let mut kinds_seen = BTreeSet::new();
    for w in workloads() {
        let (_, cli_vars) = w.cli();
        let checks = w.checks();
        for (name, kind) in &checks {
            assert!(
                kind_keys(kind).is_some(),
                "{}: check {name} has unknown kind {kind:?} (kinds: {:?})",
                w.what,
                all_kinds()
            );
            kinds_seen.insert(kind.clone());
        }
        let env = w.env();
        for var in env.keys().filter(|v| v.starts_with("KUBERNARY_")) {
            if var == "KUBERNARY_CHECKS" || cli_vars.contains(var) {
                continue;
            }
            // KUBERNARY_<CHECK>_<KEY>, for any reading that fits (a check
            // named `s3` and one named `s3-logs` share a prefix).
            let fits = checks.iter().any(|(name, kind)| {
                let prefix = format!("KUBERNARY_{}_", var_name(name));
                var.strip_prefix(&prefix).is_some_and(|key| {
                    kubernary::checks::COMMON_KEYS.contains(&key) || kind_keys(kind).unwrap().contains(&key)
                })
            });
            assert!(
                fits,
                "{}: {var} is neither a variable the CLI reads ({cli_vars:?}) nor \
                 KUBERNARY_<CHECK>_<KEY> for a check in KUBERNARY_CHECKS ({checks:?}) \
                 and a key its kind reads",
                w.what
            );
        }
        // Required keys: the binary builds every check below.
        for (name, _) in &checks {
            w.timeout(name);
        }
        checks_the_binary_builds(&w);
    }
    let all = all_kinds();
    let seen: BTreeSet<&str> = kinds_seen.iter().map(String::as_str).collect();
    assert_eq!(seen, all, "deploy/ should show every kind of check");
}

/// The checks whose kind is on this branch, built from the manifest's
/// environment exactly as the daemon builds them at start.
fn checks_the_binary_builds(w: &Workload) {
    kubernary::tls::install_crypto_provider();
    let known: Vec<String> = w
        .checks()
        .into_iter()
        .filter(|(_, kind)| kubernary::checks::KINDS.contains(&kind.as_str()))
        .map(|(name, kind)| format!("{name}={kind}"))
        .collect();
    let mut env = w.env_map();
    env.insert("KUBERNARY_CHECKS".into(), known.join(","));
    // What the kubelet puts into every pod's environment.
    env.insert("KUBERNETES_SERVICE_HOST".into(), "127.0.0.1".into());
    env.insert("KUBERNETES_SERVICE_PORT".into(), "443".into());
    if let Err(e) = kubernary::config::checks(&env) {
        panic!("{}: the daemon would refuse to start: {e}", w.what);
    }
}

#[test]
fn probes_port_and_shutdown_fit_the_binary() {
    for w in workloads() {
        let (options, _) = w.cli();
        let listen_port = u64::from(options.listen[0].port());

        let (ready, ready_port) = w.http_get(&["readinessProbe"]);
        let (live, live_port) = w.http_get(&["livenessProbe"]);
        let (stop, stop_port) = w.http_get(&["lifecycle", "preStop"]);
        assert_eq!(ready, "/health", "{}: readiness runs the checks", w.what);
        assert_eq!(live, "/livez", "{}: liveness runs no check", w.what);
        assert_eq!(stop, "/quitquitquit", "{}: preStop", w.what);
        for port in [ready_port, live_port, stop_port] {
            assert_eq!(port, listen_port, "{}: the daemon listens on {listen_port}", w.what);
        }

        // /health answers when its slowest check has: the probe must wait
        // longer than the longest TIMEOUT.
        let max_timeout = w.max_timeout();
        let ready_timeout = w.container["readinessProbe"]["timeoutSeconds"].as_u64().unwrap_or(1);
        assert!(
            Duration::from_secs(ready_timeout) > max_timeout,
            "{}: readiness timeoutSeconds {ready_timeout} <= check timeout {max_timeout:?}",
            w.what
        );

        // The shutdown is over before the kubelet's SIGKILL: requests in
        // flight (each up to the longest TIMEOUT) are drained within
        // close-after, everything within kill-after, both inside the grace
        // period.
        let grace = w.pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(DEFAULT_GRACE);
        assert!(
            options.kill_after < Duration::from_secs(grace),
            "{}: kill-after {:?} must end before the grace period ({grace}s)",
            w.what,
            options.kill_after
        );
        assert!(options.close_after <= options.kill_after, "{}: close-after after kill-after", w.what);
        assert!(
            options.close_after >= max_timeout,
            "{}: close-after {:?} cuts off a /health waiting on a {max_timeout:?} check",
            w.what,
            options.close_after
        );

        // Locked down as the image allows: non-root, read-only, no
        // capabilities; no Service variables in kubernary's namespace.
        assert_eq!(w.pod["securityContext"]["runAsNonRoot"], true, "{}", w.what);
        assert_eq!(w.pod["securityContext"]["runAsUser"], 65534, "{}", w.what);
        let sc = &w.container["securityContext"];
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{}", w.what);
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{}", w.what);
        assert!(
            sc["capabilities"]["drop"].as_array().is_some_and(|d| d.iter().any(|c| c == "ALL")),
            "{}: drop ALL capabilities",
            w.what
        );
        assert_eq!(w.pod["enableServiceLinks"], false, "{}", w.what);

        let requests = &w.container["resources"]["requests"];
        assert!(requests["cpu"].is_string(), "{}: cpu request", w.what);
        let memory = quantity(requests["memory"].as_str().expect("memory request"));
        assert!(
            memory >= MEASURED_PEAK_RSS,
            "{}: memory request {memory} below the measured {MEASURED_PEAK_RSS}",
            w.what
        );
    }
}

/// The paths the manifests probe, asked of a live daemon the way the
/// kubelet asks (GET): served, with the meaning the manifests rely on.
#[test]
fn a_live_daemon_serves_the_manifests_paths() {
    let mut probed = BTreeSet::new();
    let mut pre_stop = BTreeSet::new();
    for w in workloads() {
        probed.insert(w.http_get(&["readinessProbe"]).0);
        probed.insert(w.http_get(&["livenessProbe"]).0);
        pre_stop.insert(w.http_get(&["lifecycle", "preStop"]).0);
    }
    // An s3 check with no credentials: it fails, at once, which is all a
    // readiness probe needs to see an answer.
    let mut daemon = Daemon::start(&["--no-stats"], &[("KUBERNARY_S3_BUCKET", "canary")]);
    for path in &probed {
        let response = daemon.get(path);
        assert!(
            ![404, 405].contains(&response.status),
            "GET {path}: {} {:?}",
            response.status,
            response.body
        );
        if path == "/livez" {
            assert_eq!(response.status, 200, "liveness: {:?}", response.body);
        } else {
            let body: Value = serde_json::from_str(&response.body)
                .unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {:?}", response.body));
            assert!(body["s3"]["ok"].is_boolean(), "GET {path}: {body}");
        }
    }
    let [stop] = pre_stop.iter().collect::<Vec<_>>()[..] else { panic!("one preStop path: {pre_stop:?}") };
    assert_eq!(daemon.get(stop).status, 200);
    let status = daemon.wait_exit(Duration::from_secs(10)).expect("the preStop path starts the shutdown");
    assert_eq!(status.code(), Some(0));
}
