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

/// The YAML files in deploy/ that are not Kubernetes objects: Prometheus'
/// rules and their unit tests, and kustomize's own file.
const NOT_MANIFESTS: [&str; 3] = ["alerts.yaml", "alerts.test.yaml", "kustomization.yaml"];

fn deploy_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// Every YAML document of the Kubernetes manifests in deploy/, with the
/// file it came from.
fn documents() -> Vec<(String, Value)> {
    let dir = deploy_dir();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("read deploy/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .filter(|p| !NOT_MANIFESTS.iter().any(|n| p.ends_with(n)))
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

/// One YAML file of deploy/ as a value.
fn yaml_file(name: &str) -> Value {
    let text =
        std::fs::read_to_string(deploy_dir().join(name)).unwrap_or_else(|e| panic!("deploy/{name}: {e}"));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("deploy/{name}: {e}"))
}

/// The one object of `kind` in the manifests.
fn object(kind: &str) -> Value {
    let found: Vec<Value> = documents().into_iter().map(|(_, d)| d).filter(|d| d["kind"] == kind).collect();
    let [one] = &found[..] else { panic!("deploy/: {} objects of kind {kind}", found.len()) };
    one.clone()
}

/// Runs promtool (Debian's `prometheus` package, installed by
/// scripts/test-deps.sh) in `dir`; panics with its output unless it succeeds.
fn promtool(dir: &Path, args: &[&str]) -> String {
    let output = std::process::Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("promtool: {e}: run scripts/test-deps.sh (make test does), which installs Debian's prometheus")
        });
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "promtool {}: {}\n{text}", args.join(" "), output.status);
    text
}

/// Alerting rules: valid, and their unit tests (deploy/alerts.test.yaml)
/// pass: each alert fires when it should and stays quiet when it should
/// not. The PrometheusRule carries the very same groups.
#[test]
fn alerting_rules_pass_promtool_and_their_unit_tests() {
    let dir = deploy_dir();
    let checked = promtool(&dir, &["check", "rules", "alerts.yaml"]);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = promtool(&dir, &["test", "rules", "alerts.test.yaml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");

    let rules = yaml_file("alerts.yaml");
    let operator = object("PrometheusRule");
    assert_eq!(operator["spec"]["groups"], rules["groups"], "prometheusrule.yaml and alerts.yaml differ");

    // Every alert has unit tests, and each is tested both firing and quiet.
    let tests = yaml_file("alerts.test.yaml");
    let mut fired = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for case in tests["tests"].as_array().unwrap() {
        for check in case["alert_rule_test"].as_array().unwrap() {
            let name = check["alertname"].as_str().unwrap().to_string();
            if check["exp_alerts"].as_array().is_some_and(|a| a.is_empty()) {
                quiet.insert(name);
            } else {
                fired.insert(name);
            }
        }
    }
    for rule in rules["groups"][0]["rules"].as_array().unwrap() {
        let alert = rule["alert"].as_str().unwrap();
        assert!(fired.contains(alert), "alerts.test.yaml never sees {alert} fire");
        assert!(quiet.contains(alert), "alerts.test.yaml never sees {alert} stay quiet");
    }
}

/// Every PromQL expression of the dashboard (template variables filled
/// in) evaluated by promtool over what a live daemon exports, each as an
/// alert `count(<expr>) > 0`: a query with a typo, or naming a metric that
/// was renamed, finds nothing and fails here.
#[test]
fn every_dashboard_query_finds_series_the_daemon_exports() {
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(deploy_dir().join("dashboard.json")).unwrap()).unwrap();
    let exprs = dashboard_exprs(&dashboard);
    assert!(exprs.len() >= 10, "{exprs:?}");

    let scrape = live_scrape();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    let mut tests = String::from(
        "rule_files:\n  - dashboard.rules.yaml\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n",
    );
    for (series, values) in input_series(&scrape) {
        tests.push_str(&format!("      - series: {}\n        values: '{values}'\n", yaml_str(&series)));
    }
    tests.push_str("    alert_rule_test:\n");
    for (i, expr) in exprs.iter().enumerate() {
        let expr = fill_variables(expr);
        rules.push_str(&format!(
            "      - alert: Query{i}\n        expr: {}\n",
            yaml_str(&format!("count({expr}) > 0"))
        ));
        tests.push_str(&format!(
            "      - eval_time: 15m\n        alertname: Query{i}\n        exp_alerts:\n          - exp_labels: {{}}\n"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dashboard.rules.yaml"), &rules).unwrap();
    std::fs::write(dir.path().join("dashboard.test.yaml"), &tests).unwrap();
    promtool(dir.path(), &["check", "rules", "dashboard.rules.yaml"]);
    let out = std::process::Command::new("promtool")
        .args(["test", "rules", "dashboard.test.yaml"])
        .current_dir(dir.path())
        .output()
        .expect("promtool");
    if !out.status.success() {
        // Name the queries that found nothing, not just their numbers.
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let failed: Vec<String> = exprs
            .iter()
            .enumerate()
            .filter(|(i, _)| text.contains(&format!("alertname: Query{i},")))
            .map(|(_, e)| e.clone())
            .collect();
        panic!("dashboard queries that find no series the daemon exports: {failed:#?}\n{text}");
    }
}

/// Every metric the alerting rules and their tests name is one the daemon
/// exports (or Prometheus' own `up`): the unit tests feed the rules series
/// by name, so a renamed metric would otherwise leave them green.
#[test]
fn every_metric_the_alerts_name_is_exported() {
    let scrape = live_scrape();
    let mut exported: BTreeSet<String> = scrape.iter().map(|(series, _, _)| metric_name(series)).collect();
    exported.insert("up".into());
    let rules = yaml_file("alerts.yaml");
    let tests = yaml_file("alerts.test.yaml");
    let mut named = BTreeSet::new();
    for rule in rules["groups"][0]["rules"].as_array().unwrap() {
        named.extend(promql_metrics(rule["expr"].as_str().unwrap()));
    }
    for case in tests["tests"].as_array().unwrap() {
        for series in case["input_series"].as_array().unwrap() {
            named.insert(metric_name(series["series"].as_str().unwrap()));
        }
    }
    assert!(named.len() >= 5, "{named:?}");
    let unknown: Vec<_> = named.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "alerts name metrics the daemon does not export: {unknown:?}\nexported: {exported:?}"
    );
}

/// `kubectl apply -k deploy/` applies every manifest but the optional
/// DaemonSet; the Service and ServiceMonitor reach the container's port;
/// the NetworkPolicy admits the monitoring namespace, to that port only.
#[test]
fn kustomization_service_monitor_and_network_policy_fit_the_workloads() {
    let kustomization = yaml_file("kustomization.yaml");
    assert_eq!(kustomization["kind"], "Kustomization");
    let listed: BTreeSet<String> = kustomization["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    let files: BTreeSet<String> = documents().into_iter().map(|(file, _)| file).collect();
    for file in &listed {
        assert!(files.contains(file), "kustomization.yaml lists {file}, which is not a manifest in deploy/");
    }
    for file in files.difference(&listed) {
        assert_eq!(file, "daemonset.yaml", "kustomization.yaml leaves out {file}");
    }

    let deployment = workloads().into_iter().find(|w| w.what.contains("Deployment")).expect("a Deployment");
    let pod_labels = &object("Deployment")["spec"]["template"]["metadata"]["labels"];
    let selects = |selector: &Value| {
        selector.as_object().expect("a label selector").iter().all(|(k, v)| &pod_labels[k] == v)
    };
    let (http_path, http_port) = deployment.http_get(&["readinessProbe"]);
    assert_eq!(http_path, "/health");

    let service = object("Service");
    assert!(selects(&service["spec"]["selector"]), "the Service selects no kubernary pod");
    let port = &service["spec"]["ports"][0];
    assert_eq!(deployment.port(&port["targetPort"]), http_port, "the Service's targetPort");
    let monitor = object("ServiceMonitor");
    assert!(
        monitor["spec"]["selector"]["matchLabels"]
            .as_object()
            .unwrap()
            .iter()
            .all(|(k, v)| &service["metadata"]["labels"][k] == v),
        "the ServiceMonitor selects no Service"
    );
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], port["name"], "the ServiceMonitor's port");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    // Alerts and dashboard expect the job Prometheus names after the Service.
    assert_eq!(service["metadata"]["name"], "kubernary");

    let policy = object("NetworkPolicy");
    assert!(
        selects(&policy["spec"]["podSelector"]["matchLabels"]),
        "the NetworkPolicy selects no kubernary pod"
    );
    assert_eq!(
        policy["spec"]["policyTypes"],
        serde_json::json!(["Ingress"]),
        "egress stays open for the checks"
    );
    let rules = policy["spec"]["ingress"].as_array().expect("ingress rules");
    assert_eq!(rules.len(), 1, "one way in: {rules:?}");
    let from = rules[0]["from"].as_array().unwrap();
    assert_eq!(from.len(), 1);
    assert_eq!(
        from[0]["namespaceSelector"]["matchLabels"],
        serde_json::json!({"kubernetes.io/metadata.name": "monitoring"})
    );
    assert!(from[0].get("podSelector").is_none() && from[0].get("ipBlock").is_none(), "{from:?}");
    let ports = rules[0]["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 1);
    assert_eq!(deployment.port(&ports[0]["port"]), http_port, "the policy's port is the HTTP port");
}

/// Every `expr` in the dashboard's panels.
fn dashboard_exprs(dashboard: &Value) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("expr", Value::String(e)) => out.push(e.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    walk(&dashboard["panels"], &mut out);
    out
}

/// Grafana's variables as Prometheus would see them with "All" selected.
fn fill_variables(expr: &str) -> String {
    let filled = expr
        .replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
        .replace("$namespace", ".*")
        .replace("$pod", ".*")
        .replace("$check", ".*");
    assert!(!filled.contains('$'), "a dashboard variable this test does not know: {expr}");
    filled
}

/// A quoted YAML string (JSON's quoting is valid YAML).
fn yaml_str(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

/// `(series, value, type)` of each sample a live daemon with a passing and
/// a failing check exports.
fn live_scrape() -> Vec<(String, f64, String)> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || listener.incoming().for_each(drop));
    let down = format!("127.0.0.1:{}", support::free_port());
    // An HTTPS check, for the series of its handshake.
    let ca = support::TestCa::new();
    let web = support::WebServer::start_tls(&ca);
    web.set("/ok", 200, "fine");
    let secure = format!("https://localhost:{}/ok", web.port());
    let ca_file = ca.ca_path().display().to_string();
    let daemon = Daemon::start(
        &["--no-stats"],
        &[
            ("KUBERNARY_CHECKS", "up=tcp,down=tcp,secure=http"),
            ("KUBERNARY_UP_ADDRESS", &up),
            ("KUBERNARY_DOWN_ADDRESS", &down),
            ("KUBERNARY_SECURE_URL", &secure),
            ("KUBERNARY_SECURE_CA_FILE", &ca_file),
        ],
    );
    // Each run counts: one of each is enough for every series to exist.
    assert_eq!(daemon.get("/health").status, 503);
    let text = daemon.get("/metrics").body;
    let mut types = HashMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            types.insert(name.to_string(), kind.to_string());
        } else if !line.starts_with('#') && !line.is_empty() {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let name = metric_name(series);
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s).filter(|b| types.get(*b).is_some_and(|t| t == "histogram"))
                })
                .unwrap_or(&name);
            let kind = types.get(base).cloned().unwrap_or_else(|| panic!("no TYPE for {series}"));
            samples.push((series.to_string(), value.parse().unwrap(), kind));
        }
    }
    assert!(samples.iter().any(|(s, _, _)| s.starts_with("kubernary_check_failures_total{")), "{text}");
    samples
}

/// promtool input series for a scrape, with the labels a ServiceMonitor
/// scrape adds, and Prometheus' own `up`: counters climb, gauges hold.
fn input_series(scrape: &[(String, f64, String)]) -> Vec<(String, String)> {
    const TARGET: &str = r#"job="kubernary",namespace="kubernary",pod="kubernary-0""#;
    let mut out = vec![(format!("up{{{TARGET}}}"), "1x20".to_string())];
    for (series, value, kind) in scrape {
        let series = match series.split_once('{') {
            Some((name, labels)) => format!("{name}{{{TARGET},{labels}"),
            None => format!("{series}{{{TARGET}}}"),
        };
        let values = match kind.as_str() {
            "counter" | "histogram" => format!("{value}+1x20"),
            _ => format!("{value}x20"),
        };
        out.push((series, values));
    }
    out
}

fn metric_name(series: &str) -> String {
    series.split('{').next().unwrap().trim().to_string()
}

/// The metric names a PromQL expression selects: identifiers once strings,
/// label matchers, ranges and grouping clauses are gone, that are neither
/// functions, keywords nor numbers.
fn promql_metrics(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: [&str; 13] = [
        "and",
        "or",
        "unless",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "offset",
        "bool",
        "inf",
        "nan",
    ];
    let mut text = String::new();
    let mut depth = 0;
    for c in expr.chars() {
        match c {
            '{' | '[' => depth += 1,
            '}' | ']' => depth -= 1,
            _ if depth > 0 => {}
            c => text.push(c),
        }
    }
    // Drop `by (...)`, `on (...)` and the like: their contents are labels.
    let mut cleaned = String::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find(|c: char| c.is_ascii_alphanumeric() || c == '_') {
        cleaned.push_str(&rest[..i]);
        let end = rest[i..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .map_or(rest.len(), |e| i + e);
        let word = &rest[i..end];
        rest = &rest[end..];
        if ["by", "without", "on", "ignoring", "group_left", "group_right"].contains(&word) {
            if let Some(open) = rest.trim_start().strip_prefix('(') {
                rest = &open[open.find(')').map_or(open.len(), |j| j + 1)..];
            }
            continue;
        }
        cleaned.push(' ');
        cleaned.push_str(word);
        cleaned.push(' ');
    }
    cleaned.push_str(rest);
    let mut names = BTreeSet::new();
    let mut words = cleaned.split_whitespace().peekable();
    while let Some(word) = words.next() {
        let is_call = words.peek().is_some_and(|next| next.starts_with('('));
        let is_ident = word.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
        let is_duration = word.chars().next().is_some_and(|c| c.is_ascii_digit());
        if is_ident && !is_call && !is_duration && !KEYWORDS.contains(&word.to_ascii_lowercase().as_str()) {
            names.insert(word.to_string());
        }
    }
    names
}
