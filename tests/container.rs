//! The Containerfile's structure. No image registry is reachable here, so
//! the image cannot be built in a test; this checks instead that the
//! Containerfile builds with the same `make static` and copies the same
//! binary path that the Makefile produces (and tests/scratch.rs runs), and
//! that its final stage is the scratch image the README promises: the binary
//! alone, a non-root user, the daemon's port, and the self-probe as the
//! health check.

use std::collections::BTreeMap;

const CONTAINERFILE: &str = include_str!("../Containerfile");
const MAKEFILE: &str = include_str!("../Makefile");
const DOCKERIGNORE: &str = include_str!("../.dockerignore");

#[derive(Debug)]
struct Instruction {
    op: String,
    args: String,
}

#[derive(Debug)]
struct Stage {
    image: String,
    name: Option<String>,
    body: Vec<Instruction>,
}

/// Instructions, with `\` continuations joined and comment lines dropped,
/// grouped by stage. ARGs before the first FROM are left out.
fn stages(text: &str) -> Vec<Stage> {
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part.trim());
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                logical.push(std::mem::take(&mut current));
            }
        }
    }
    let mut stages: Vec<Stage> = Vec::new();
    for line in logical.iter().filter(|l| !l.is_empty()) {
        let (op, args) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let op = op.to_ascii_uppercase();
        let args = args.trim().to_string();
        if op == "FROM" {
            let words: Vec<&str> = args.split_whitespace().collect();
            let name = match words.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some(name.to_string()),
                [_] => None,
                _ => panic!("FROM {args}: expected IMAGE [AS NAME]"),
            };
            stages.push(Stage { image: words[0].to_string(), name, body: Vec::new() });
        } else if let Some(stage) = stages.last_mut() {
            stage.body.push(Instruction { op, args });
        }
    }
    stages
}

impl Stage {
    fn all(&self, op: &str) -> Vec<&str> {
        self.body.iter().filter(|i| i.op == op).map(|i| i.args.as_str()).collect()
    }

    fn one(&self, op: &str) -> &str {
        match self.all(op).as_slice() {
            [one] => one,
            other => panic!("stage {:?}: expected one {op}, got {other:?}", self.name),
        }
    }
}

/// A JSON-array (exec form) argument list.
fn exec_form(args: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|e| panic!("{args:?} is not exec (JSON array) form: {e}"))
}

/// `key="value" key2="value 2"`, as LABEL takes them.
fn parse_labels(args: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = args.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=').expect("LABEL key=value");
        let after = after.strip_prefix('"').expect("LABEL values are quoted");
        let end = after.find('"').expect("closing quote");
        out.insert(key.trim().to_string(), after[..end].to_string());
        rest = after[end + 1..].trim();
    }
    out
}

/// The Makefile's `NAME := value` (or `?=`, `=`).
fn make_variable(name: &str) -> String {
    MAKEFILE
        .lines()
        .find_map(|l| {
            let (lhs, rhs) = l.split_once('=')?;
            let lhs = lhs.trim_end_matches([':', '?', ' ']);
            (lhs == name).then(|| rhs.trim().to_string())
        })
        .unwrap_or_else(|| panic!("Makefile sets no {name}"))
}

/// The recipe lines of a Makefile target.
fn make_recipe(target: &str) -> Vec<&str> {
    let mut lines = MAKEFILE
        .lines()
        .skip_while(|l| !l.split_once(':').is_some_and(|(t, _)| t == target && !l.contains(":=")));
    lines.next().unwrap_or_else(|| panic!("Makefile has no {target} target"));
    lines.take_while(|l| l.starts_with('\t')).collect()
}

fn default_port() -> u16 {
    let options = kubernary::cli::parse(&["--no-stats".to_string()], &|_| None)
        .unwrap_or_else(|_| panic!("default options"));
    options.listen[0].port()
}

#[test]
fn the_build_stage_runs_make_static_and_the_image_copies_its_output() {
    let stages = stages(CONTAINERFILE);
    assert!(stages.len() >= 2, "multi-stage: {stages:#?}");
    let image = stages.last().unwrap();
    let from = image.all("COPY").iter().map(|c| c.split_whitespace().collect::<Vec<_>>()).collect::<Vec<_>>();
    let [copy] = from.as_slice() else {
        panic!("the final stage copies exactly one thing, the binary: {from:?}")
    };
    let [from_flag, source, dest] = copy.as_slice() else {
        panic!("COPY --from=STAGE SRC DEST, got {copy:?}")
    };
    let build_name = from_flag.strip_prefix("--from=").expect("the binary comes from the build stage");
    let build = stages
        .iter()
        .find(|s| s.name.as_deref() == Some(build_name))
        .unwrap_or_else(|| panic!("no stage named {build_name}"));

    // The same make target the Makefile has, producing the path copied.
    let static_bin = make_variable("STATIC_BIN");
    assert_eq!(static_bin, "target/static/kubernary");
    assert!(
        build.all("RUN").iter().any(|run| {
            let words: Vec<&str> = run.split_whitespace().collect();
            words.windows(2).any(|w| w == ["make", "static"])
        }),
        "the build stage must RUN make static: {:?}",
        build.all("RUN")
    );
    assert!(
        make_recipe("static")
            .iter()
            .any(|l| l.trim_start().starts_with("cp ") && l.trim_end().ends_with("$(STATIC_BIN)")),
        "make static must copy the binary to $(STATIC_BIN): {:?}",
        make_recipe("static")
    );
    let workdir = build.one("WORKDIR");
    assert_eq!(
        *source,
        format!("{}/{static_bin}", workdir.trim_end_matches('/')),
        "COPY must take make static's output from the build stage's WORKDIR"
    );
    // make test hands the same path to the empty-root test.
    assert!(
        MAKEFILE.contains("KUBERNARY_STATIC_BIN=$(CURDIR)/$(STATIC_BIN)"),
        "make test must pass $(STATIC_BIN) to tests/scratch.rs"
    );
    // build.rs takes the commit from KUBERNARY_COMMIT where there is no .git.
    assert!(
        build.all("ARG").iter().any(|a| a.split('=').next() == Some("KUBERNARY_COMMIT")),
        "the build stage must declare ARG KUBERNARY_COMMIT"
    );
    for ignored in [".git", "target", ".tools"] {
        assert!(DOCKERIGNORE.lines().any(|l| l.trim() == ignored), ".dockerignore must leave out {ignored}");
    }

    // ENTRYPOINT and HEALTHCHECK name the binary where COPY put it.
    assert_eq!(exec_form(image.one("ENTRYPOINT")), [dest.to_string()]);
    let healthcheck = image.one("HEALTHCHECK");
    let (options, cmd) = healthcheck.split_once("CMD ").expect("HEALTHCHECK [OPTIONS] CMD [...]");
    let cmd = exec_form(cmd.trim());
    assert_eq!(cmd[..2], [dest.to_string(), "probe".to_string()]);
    let request = kubernary::probe::parse(&cmd[2..], &|_| None)
        .expect("the HEALTHCHECK's probe arguments parse")
        .expect("not --help");
    assert_eq!(request.url, format!("http://127.0.0.1:{}/health", default_port()));
    // The probe gives up before the runtime kills it.
    let timeout = options
        .split_whitespace()
        .find_map(|o| o.strip_prefix("--timeout="))
        .expect("HEALTHCHECK --timeout=");
    let timeout = kubernary::duration::parse(timeout).unwrap();
    assert!(request.timeout < timeout, "{request:?} vs {timeout:?}");
}

#[test]
fn the_image_is_scratch_with_the_binary_alone_as_a_non_root_user() {
    let stages = stages(CONTAINERFILE);
    let image = stages.last().unwrap();
    assert_eq!(image.image, "scratch");
    let ops: Vec<&str> = image.body.iter().map(|i| i.op.as_str()).collect();
    for op in &ops {
        assert!(
            ["ARG", "LABEL", "COPY", "USER", "EXPOSE", "ENTRYPOINT", "HEALTHCHECK"].contains(op),
            "the scratch stage has no {op}: it holds the binary and metadata only"
        );
    }
    assert_eq!(image.one("USER"), "65534:65534");
    assert_eq!(image.one("EXPOSE"), default_port().to_string());

    let labels: BTreeMap<String, String> = image.all("LABEL").iter().flat_map(|l| parse_labels(l)).collect();
    for key in ["title", "description", "source", "licenses", "version", "revision", "created"] {
        let key = format!("org.opencontainers.image.{key}");
        assert!(labels.get(&key).is_some_and(|v| !v.is_empty()), "missing label {key}: {labels:?}");
    }
    assert!(
        labels.keys().all(|k| k.starts_with("org.opencontainers.image.")),
        "labels follow OCI's annotation keys: {labels:?}"
    );
    assert_eq!(labels["org.opencontainers.image.licenses"], env!("CARGO_PKG_LICENSE"));
    assert_eq!(labels["org.opencontainers.image.source"], env!("CARGO_PKG_REPOSITORY"));
    assert_eq!(labels["org.opencontainers.image.title"], "kubernary");
    assert_eq!(labels["org.opencontainers.image.version"], "${VERSION}");
    assert_eq!(labels["org.opencontainers.image.revision"], "${KUBERNARY_COMMIT}");
    // Defaults for a build without make image's arguments.
    let args: Vec<&str> = image.all("ARG");
    assert!(
        args.contains(&format!("VERSION={}", env!("CARGO_PKG_VERSION")).as_str()),
        "ARG VERSION defaults to Cargo.toml's version: {args:?}"
    );
}
