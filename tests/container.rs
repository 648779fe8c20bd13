//! The container image, built for real: podman (Debian's, installed by
//! scripts/test-deps.sh) builds the Containerfile's last stage from the
//! static binary `make static` made, offline and FROM scratch, into a
//! storage of its own under target/; the test then inspects what users get:
//! the entrypoint at the Go original's path, the user, the HEALTHCHECK and
//! its probe, the labels, one file in the filesystem (the binary, byte for
//! byte) and the size. Running a container is impossible in this sandbox, so
//! the binary is run from the image's root filesystem instead.
//!
//! The stage that compiles inside a Rust image cannot be built here (no
//! registry), so it is held by its text to the stage that is built: the two
//! differ only in where the binary comes from.
//!
//! Needs root (podman's storage, like tests/scratch.rs's chroot), podman and
//! `KUBERNARY_STATIC_BIN` (make test sets it after make static, as root);
//! otherwise the build test says why it skips.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

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

/// Where the Go original's image held the binary; manifests name it.
const BINARY: &str = "/kubernary/kubernary";

fn stage<'a>(stages: &'a [Stage], name: &str) -> &'a Stage {
    stages.iter().find(|s| s.name.as_deref() == Some(name)).unwrap_or_else(|| panic!("no stage named {name}"))
}

#[test]
fn the_two_image_stages_differ_only_in_where_the_binary_comes_from() {
    let stages = stages(CONTAINERFILE);
    let (compiled, image) = (stage(&stages, "compiled"), stage(&stages, "image"));
    assert_eq!(stages.last().unwrap().name.as_deref(), Some("image"), "make static's image is the default");
    // Both are the runtime stage (FROM scratch) plus the binary, and nothing else.
    assert_eq!(stage(&stages, "runtime").image, "scratch");
    assert_eq!((compiled.image.as_str(), image.image.as_str()), ("runtime", "runtime"));
    for s in [compiled, image] {
        let ops: Vec<&str> = s.body.iter().map(|i| i.op.as_str()).collect();
        assert_eq!(ops, ["COPY"], "stage {:?} must only add the binary to runtime", s.name);
    }

    // The compiling stage runs the same make static and copies its output.
    let build = stage(&stages, "build");
    let static_bin = make_variable("STATIC_BIN");
    assert!(
        build
            .all("RUN")
            .iter()
            .any(|run| run.split_whitespace().collect::<Vec<_>>().ends_with(&["make", "static"])),
        "the build stage must RUN make static: {:?}",
        build.all("RUN")
    );
    let source = format!("{}/{static_bin}", build.one("WORKDIR").trim_end_matches('/'));
    assert_eq!(compiled.one("COPY"), format!("--from=build {source} {BINARY}"));
    assert_eq!(image.one("COPY"), format!("kubernary {BINARY}"));
    assert!(
        build.all("ARG").iter().any(|a| a.split('=').next() == Some("KUBERNARY_COMMIT")),
        "build.rs takes the commit from ARG KUBERNARY_COMMIT where there is no .git"
    );
    for ignored in [".git", "target", ".tools"] {
        assert!(DOCKERIGNORE.lines().any(|l| l.trim() == ignored), ".dockerignore must leave out {ignored}");
    }
    // make image builds the last stage from a context of make static's binary.
    let recipe = make_recipe("image").join("\n");
    for needle in ["$(STATIC_BIN) $(IMAGE_CONTEXT)/kubernary", "--target image", "$(IMAGE_CONTEXT)"] {
        assert!(recipe.contains(needle), "make image lacks {needle}:\n{recipe}");
    }
    assert!(
        MAKEFILE.lines().any(|l| l.starts_with("image: static ")),
        "make image must depend on make static"
    );
}

/// Why the build test cannot run here, if it cannot.
fn cannot_build() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
    if !root {
        return Some("not running as root (podman's storage needs it; run make test as root)".into());
    }
    if std::env::var_os("KUBERNARY_STATIC_BIN").is_none() {
        return Some(
            "KUBERNARY_STATIC_BIN is not set (make test sets it, after make static, as root)".into(),
        );
    }
    match Command::new("podman").arg("--version").output() {
        Ok(out) if out.status.success() => None,
        _ => Some("podman is not installed (scripts/test-deps.sh installs it)".into()),
    }
}

/// podman with a storage of its own: vfs (no overlay mounts to leave
/// behind) under `dir`, which the test removes before and after.
fn podman(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("podman")
        .arg("--root")
        .arg(dir.join("storage"))
        .arg("--runroot")
        .arg(dir.join("run"))
        .args(["--storage-driver=vfs", "--cgroup-manager=cgroupfs", "--events-backend=none"])
        .args(args)
        .output()
        .expect("run podman");
    assert!(
        out.status.success(),
        "podman {args:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every path under `root`, relative, with whether it is a regular file.
fn walk(root: &Path) -> Vec<(String, bool)> {
    let mut found = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let relative = path.strip_prefix(root).unwrap().display().to_string();
            if meta.is_dir() {
                dirs.push(path);
            }
            found.push((relative, meta.is_file()));
        }
    }
    found.sort();
    found
}

#[test]
fn podman_builds_the_image_users_get() {
    if let Some(why) = cannot_build() {
        // Straight to stderr, past libtest's capture: a skip must be seen.
        let _ = writeln!(std::io::stderr(), "SKIPPED podman_builds_the_image_users_get: {why}");
        return;
    }
    let binary = PathBuf::from(std::env::var_os("KUBERNARY_STATIC_BIN").unwrap());
    let binary_bytes = std::fs::read(&binary).expect("read KUBERNARY_STATIC_BIN: run make static");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("podman");
    // A run that died halfway leaves its storage; start from nothing.
    let _ = std::fs::remove_dir_all(&dir);
    let context = dir.join("context");
    std::fs::create_dir_all(&context).unwrap();
    std::fs::copy(&binary, context.join("kubernary")).unwrap();

    let tag = "localhost/kubernary-test:latest";
    let started = Instant::now();
    podman(
        &dir,
        &[
            "build",
            "--isolation=chroot",
            "--format=docker",
            "--pull=never",
            "--layers=false",
            "--quiet",
            "--build-arg=KUBERNARY_COMMIT=0123abc",
            "--build-arg=CREATED=2026-12-01T00:00:00Z",
            "--file",
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("Containerfile").display().to_string(),
            "--tag",
            tag,
            &context.display().to_string(),
        ],
    );
    let built_in = started.elapsed();

    let inspect: Value = serde_json::from_str(&podman(&dir, &["image", "inspect", tag])).unwrap();
    let image = &inspect[0];
    let config = &image["Config"];
    assert_eq!(
        image["ManifestType"], "application/vnd.docker.distribution.manifest.v2+json",
        "docker format, for HEALTHCHECK"
    );
    assert_eq!(config["Entrypoint"], json!([BINARY]), "the Go original's path");
    assert_eq!(config["User"], "65534:65534");
    assert_eq!(
        config["Cmd"],
        Value::Null,
        "no default arguments: the statsd address or --no-stats is the user's"
    );
    assert_eq!(config["ExposedPorts"], json!({format!("{}/tcp", default_port()): {}}));

    // The HEALTHCHECK runs the probe, which gives up before the runtime
    // kills it, so its own line says why.
    let health = &image["Healthcheck"];
    let test: Vec<String> = serde_json::from_value(health["Test"].clone()).unwrap();
    assert_eq!(test[..3], ["CMD", BINARY, "probe"]);
    let request = kubernary::probe::parse(&test[3..], &|_| None)
        .expect("the probe's arguments parse")
        .expect("not --help");
    assert_eq!(request.url, format!("http://127.0.0.1:{}/health", default_port()));
    let runtime_timeout = Duration::from_nanos(health["Timeout"].as_u64().expect("a HEALTHCHECK timeout"));
    assert!(
        request.timeout < runtime_timeout,
        "probe {:?} vs HEALTHCHECK {runtime_timeout:?}",
        request.timeout
    );

    let labels = &config["Labels"];
    let label =
        |key: &str| labels[format!("org.opencontainers.image.{key}")].as_str().unwrap_or("").to_string();
    assert_eq!(label("title"), "kubernary");
    assert_eq!(label("version"), env!("CARGO_PKG_VERSION"), "ARG VERSION defaults to Cargo.toml's");
    assert_eq!(label("revision"), "0123abc");
    assert_eq!(label("created"), "2026-12-01T00:00:00Z");
    assert_eq!(label("licenses"), env!("CARGO_PKG_LICENSE"));
    assert_eq!(label("source"), env!("CARGO_PKG_REPOSITORY"));
    assert!(!label("description").is_empty() && label("documentation").ends_with("docs/container.md"));

    // One file: the binary, byte for byte, executable.
    let root = PathBuf::from(podman(&dir, &["image", "mount", tag]).trim());
    let files = walk(&root);
    assert_eq!(files, [("kubernary".to_string(), false), ("kubernary/kubernary".to_string(), true)]);
    let inside = root.join("kubernary/kubernary");
    assert!(std::fs::read(&inside).unwrap() == binary_bytes, "the image's binary is not make static's");
    use std::os::unix::fs::PermissionsExt;
    assert!(std::fs::metadata(&inside).unwrap().permissions().mode() & 0o111 != 0, "not executable");
    // What the Go original's README runs: `docker run ... /kubernary/kubernary --help`.
    let help = Command::new(&inside).arg("--help").env_clear().output().unwrap();
    assert!(
        help.status.success()
            && String::from_utf8_lossy(&help.stdout)
                .contains("Checks whether your Kubernetes cluster works.")
    );

    // The size: the binary and a few KiB of metadata, nothing else.
    let size = image["Size"].as_u64().unwrap();
    let binary_size = binary_bytes.len() as u64;
    assert!(
        size >= binary_size && size - binary_size < 64 * 1024,
        "image {size} bytes for a {binary_size}-byte binary"
    );
    let _ = writeln!(
        std::io::stderr(),
        "FIGURE image: {size} bytes ({:.2} MiB), binary {binary_size} bytes; built in {built_in:.1?}",
        size as f64 / (1024.0 * 1024.0)
    );

    podman(&dir, &["image", "unmount", tag]);
    podman(&dir, &["rmi", "--force", tag]);
    std::fs::remove_dir_all(&dir).unwrap();
}
