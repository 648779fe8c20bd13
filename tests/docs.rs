//! The documentation in README.md and docs/, held to the binary as
//! tests/deploy.rs holds the manifests: every flag and variable the real
//! binary's `--help` lists, every key a check kind reads (its `KEYS`), every
//! variable `src/` reads, every endpoint the server routes, every Prometheus
//! series a live daemon serves, every statsd verb and every `reason` is
//! documented; the flag tables name no flag the binary lacks, the check
//! tables no key a kind does not read, the endpoint table no path a live
//! daemon does not serve; every page is linked from the README and every
//! link lands. A flag, key, variable, endpoint or metric added without its
//! documentation fails here.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::Daemon;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Every page in docs/, by file name.
fn pages() -> BTreeMap<String, String> {
    let dir = root().join("docs");
    let pages: BTreeMap<String, String> = std::fs::read_dir(&dir)
        .expect("read docs/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), read(&p)))
        .collect();
    assert!(pages.len() >= 8, "docs/ holds only {:?}", pages.keys());
    pages
}

fn page(name: &str) -> String {
    pages().remove(name).unwrap_or_else(|| panic!("docs/{name} is missing"))
}

fn readme() -> String {
    read(&root().join("README.md"))
}

/// All of docs/ as one text.
fn all_docs() -> String {
    pages().into_values().collect::<Vec<_>>().join("\n")
}

fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// `name` occurs in `text` as a whole word: `--help` is not found in
/// `--help-long`, `KEY` not in `KEY_FILE`.
fn mentions(text: &str, name: &str) -> bool {
    text.match_indices(name).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + name.len()..].chars().next();
        !before.is_some_and(name_char) && !after.is_some_and(name_char)
    })
}

/// A check key is documented as `` `KEY` `` or `` `KUBERNARY_<NAME>_KEY` ``.
fn documents_key(text: &str, key: &str) -> bool {
    mentions(text, key) || text.contains(&format!("_<NAME>_{key}`"))
}

/// Words made of `name_char`s that start with `prefix`.
fn words_starting(text: &str, prefix: &str) -> BTreeSet<String> {
    let mut words = BTreeSet::new();
    for (at, _) in text.match_indices(prefix) {
        if text[..at].chars().next_back().is_some_and(name_char) {
            continue;
        }
        let word: String = text[at..].chars().take_while(|c| name_char(*c)).collect();
        if word.len() > prefix.len() {
            words.insert(word.trim_end_matches('-').to_string());
        }
    }
    words
}

/// The text between a `## ` heading containing `title` and the next `## `.
fn section<'a>(text: &'a str, title: &str) -> &'a str {
    let start = text
        .match_indices("\n## ")
        .map(|(at, _)| at + 1)
        .find(|at| text[*at..].lines().next().unwrap().contains(title))
        .unwrap_or_else(|| panic!("no `## ` heading with {title}"));
    let end = text[start + 3..].find("\n## ").map_or(text.len(), |e| start + 3 + e);
    &text[start..end]
}

/// The first cell of every table row (header and separator rows left out).
fn first_cells(text: &str) -> Vec<&str> {
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with('|')).collect();
    let mut cells = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let cell = row.trim_start_matches('|').split('|').next().unwrap_or("").trim();
        let next_is_separator =
            rows.get(i + 1).is_some_and(|r| r.starts_with("|---") || r.starts_with("| ---"));
        if next_is_separator || cell.starts_with("---") {
            continue;
        }
        cells.push(cell);
    }
    cells
}

fn binary_output(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kubernary")).args(args).env_clear().output().unwrap();
    assert!(out.status.success(), "kubernary {args:?}: {}", out.status);
    String::from_utf8(out.stdout).unwrap()
}

/// The daemon's `--help`.
fn help() -> String {
    binary_output(&["--help"])
}

/// Flags (`--x`, `-d`) and variables (`KUBERNARY_X`) the daemon's help lists.
fn flags_and_variables() -> (BTreeSet<String>, BTreeSet<String>) {
    let help = help();
    let mut flags = words_starting(&help, "--");
    flags.remove("--");
    flags.extend(words_starting(&help, "-d"));
    let variables = words_starting(&help, "KUBERNARY_");
    assert!(flags.len() >= 10 && variables.len() >= 10, "help parsed to {flags:?} {variables:?}");
    (flags, variables)
}

#[test]
fn every_flag_and_variable_in_the_help_is_documented() {
    let (flags, variables) = flags_and_variables();
    let configuration = page("configuration.md");
    let readme = readme();
    let mut missing = Vec::new();
    for flag in &flags {
        if !mentions(&configuration, &format!("`{flag}")) {
            missing.push(format!("{flag} in docs/configuration.md"));
        }
        if !mentions(&readme, &format!("`{flag}")) {
            missing.push(format!("{flag} in README.md's flag table"));
        }
    }
    for var in &variables {
        if !mentions(&configuration, var) {
            missing.push(format!("{var} in docs/configuration.md"));
        }
    }
    assert!(missing.is_empty(), "undocumented: {missing:#?}");
}

#[test]
fn the_flag_tables_name_no_flag_the_binary_lacks() {
    let (mut known, variables) = flags_and_variables();
    known.extend(words_starting(&binary_output(&["probe", "--help"]), "--"));
    let (readme, configuration) = (readme(), page("configuration.md"));
    let tables = [
        ("README.md", section(&readme, "Flags")),
        ("docs/configuration.md", section(&configuration, "Flags and their variables")),
    ];
    for (what, text) in tables {
        let mut named = 0;
        for cell in first_cells(text) {
            for flag in words_starting(cell, "--").into_iter().chain(words_starting(cell, "-d")) {
                named += 1;
                assert!(known.contains(&flag), "{what} documents {flag}, which kubernary --help lacks");
            }
            for var in words_starting(cell, "KUBERNARY_") {
                assert!(variables.contains(&var), "{what} documents {var}, which kubernary --help lacks");
            }
        }
        assert!(named >= 10, "{what}: no flag table found");
    }
}

/// Each flag's `(default X)` from the help, quotes removed.
fn defaults_in_help() -> BTreeMap<String, String> {
    let help = help().split_whitespace().collect::<Vec<_>>().join(" ");
    let options = help.split_once("Options: ").expect("an Options section").1;
    let mut defaults = BTreeMap::new();
    // Each option's text runs from its flag to the next `[env ...]`.
    for entry in options.split(']').filter(|e| e.contains("(default ")) {
        let flag = entry.split_whitespace().find(|w| w.starts_with("--")).unwrap().trim_end_matches(',');
        let default = entry.split("(default ").nth(1).unwrap().split(')').next().unwrap();
        defaults.insert(flag.to_string(), default.trim_matches('"').to_string());
    }
    assert!(defaults.len() >= 5, "{defaults:?}");
    defaults
}

#[test]
fn the_defaults_in_the_flag_tables_are_the_binarys() {
    let defaults = defaults_in_help();
    let (readme, configuration) = (readme(), page("configuration.md"));
    for (what, text) in [
        ("README.md", section(&readme, "Flags")),
        ("docs/configuration.md", section(&configuration, "Flags and their variables")),
    ] {
        for row in text.lines().filter(|l| l.starts_with("| `--")) {
            let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
            let flag = cells[0].trim_matches('`').split_whitespace().next().unwrap();
            if let Some(default) = defaults.get(flag) {
                assert_eq!(cells[2].trim_matches('`'), default, "{what}: the default of {flag}");
            }
        }
    }
}

/// Code spans (`` `...` `` on one line) of a Markdown text.
fn code_spans(text: &str) -> Vec<&str> {
    let mut spans = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            spans.extend(line.split('`').skip(1).step_by(2));
        }
    }
    spans
}

#[test]
fn every_flag_the_docs_name_is_one_the_binary_has() {
    let (mut known, _) = flags_and_variables();
    known.extend(words_starting(&binary_output(&["probe", "--help"]), "--"));
    // Placeholders for "any flag", "any switch".
    known.extend(["--flag", "--switch"].map(String::from));
    let switches: Vec<String> = known.iter().map(|f| format!("--no-{}", &f[2..])).collect();
    let mut sources = vec![("README.md".to_string(), readme())];
    // The pages about using kubernary; the others also name other tools'
    // flags (wrk's, chromium's).
    let about_kubernary =
        ["configuration.md", "checks.md", "endpoints.md", "metrics.md", "migrating.md", "container.md"];
    sources.extend(pages().into_iter().filter(|(name, _)| about_kubernary.contains(&name.as_str())));
    let mut named = 0;
    for (name, text) in &sources {
        for span in code_spans(text) {
            let Some(first) = span.split_whitespace().next().filter(|w| w.starts_with("--")) else {
                continue;
            };
            let flag = first.split('=').next().unwrap().trim_end_matches(',');
            named += 1;
            assert!(
                known.contains(flag) || switches.iter().any(|s| s == flag),
                "{name} names `{span}`, but kubernary has no {flag}"
            );
        }
    }
    assert!(named > 20, "found only {named} flags in the docs");
}

/// Variables src/ reads: string literals that look like environment
/// variables, outside `#[cfg(test)]` modules, that are not check keys.
fn variables_in_source() -> BTreeSet<String> {
    let mut keys: BTreeSet<&str> = kubernary::checks::COMMON_KEYS.iter().copied().collect();
    for kind in kubernary::checks::KINDS {
        keys.extend(kubernary::checks::keys(kind).unwrap());
    }
    let mut found = BTreeSet::new();
    let mut dirs = vec![root().join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().map_or(true, |e| e != "rs") {
                continue;
            }
            let text = read(&path);
            let code = text.split("#[cfg(test)]").next().unwrap();
            for literal in code.split('"').skip(1).step_by(2) {
                let looks_like_a_variable = literal.contains('_')
                    && literal.len() > 3
                    && literal.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                    && literal.starts_with(|c: char| c.is_ascii_uppercase())
                    && !literal.ends_with('_');
                if looks_like_a_variable && !keys.contains(literal) && !literal.starts_with("CARGO_") {
                    found.insert(literal.to_string());
                }
            }
        }
    }
    assert!(found.contains("AWS_ACCESS_KEY_ID") && found.contains("KUBERNARY_CHECKS"), "{found:?}");
    found
}

#[test]
fn every_variable_the_source_reads_is_documented() {
    let docs = all_docs();
    let missing: Vec<String> = variables_in_source().into_iter().filter(|v| !mentions(&docs, v)).collect();
    assert!(missing.is_empty(), "read by src/ but not in docs/: {missing:?}");
}

#[test]
fn every_check_kind_and_key_is_documented_in_its_own_section() {
    let checks = page("checks.md");
    for key in kubernary::checks::COMMON_KEYS {
        assert!(
            documents_key(section(&checks, "Settings every check has"), key),
            "docs/checks.md: common key {key}"
        );
    }
    for kind in kubernary::checks::KINDS {
        let text = section(&checks, &format!("`{kind}`"));
        let keys = kubernary::checks::keys(kind).unwrap();
        for key in keys {
            assert!(documents_key(text, key), "docs/checks.md, section {kind}: key {key} is not documented");
        }
        // The section's tables name no key the kind does not read.
        for cell in first_cells(text) {
            let Some(key) = cell.strip_prefix('`').and_then(|c| c.split('`').next()) else { continue };
            let key = key.strip_prefix("KUBERNARY_<NAME>_").unwrap_or(key);
            if key.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
                assert!(
                    keys.contains(&key),
                    "docs/checks.md, section {kind}: documents {key}, which {kind} does not read"
                );
            }
        }
        assert!(mentions(&readme(), &format!("`{kind}`")), "README.md's table of kinds lacks {kind}");
    }
}

/// A check of `kind` built from the fewest settings it takes.
fn build(kind: &str) -> Box<dyn kubernary::contract::Check> {
    let required: &[(&str, &str)] = match kind {
        "s3" => &[("BUCKET", "canary")],
        "http" => &[("URL", "http://127.0.0.1:1/")],
        "tcp" => &[("ADDRESS", "127.0.0.1:1")],
        "dns" => &[("NAME", "localhost")],
        "kubernetes" => &[("URL", "https://127.0.0.1:1"), ("TOKEN_FILE", "/nonexistent")],
        _ => &[],
    };
    let env: HashMap<String, String> =
        required.iter().map(|(k, v)| (format!("KUBERNARY_C_{k}"), v.to_string())).collect();
    let settings = kubernary::checks::Settings::new("c", &env);
    kubernary::checks::build(kind, &settings).unwrap_or_else(|e| panic!("{kind}: {e}"))
}

#[test]
fn every_statsd_name_is_documented() {
    let checks = page("checks.md");
    let metrics = page("metrics.md");
    for kind in kubernary::checks::KINDS {
        let verb = build(kind).verb();
        let text = section(&checks, &format!("`{kind}`"));
        for metric in ["succeeded", "failed", "duration"] {
            let name = format!(".{verb}.{metric}");
            assert!(text.contains(&name), "docs/checks.md, section {kind}: no {name}");
        }
        assert!(mentions(&metrics, &format!("`{verb}`")), "docs/metrics.md: no verb `{verb}` for {kind}");
    }
}

#[test]
fn every_reason_is_documented() {
    let contract = read(&root().join("src/contract.rs"));
    let endpoints = page("endpoints.md");
    let reasons: Vec<&str> = contract
        .lines()
        .filter(|l| l.trim_start().starts_with("Reason::") && l.contains("=> \""))
        .map(|l| l.split('"').nth(1).unwrap())
        .collect();
    assert!(reasons.len() >= 10, "{reasons:?}");
    let cells = first_cells(&endpoints);
    for reason in reasons {
        assert!(cells.contains(&format!("`{reason}`").as_str()), "docs/endpoints.md: reason {reason}");
    }
}

/// The paths the server routes: string literals on its routing lines.
fn routed_paths() -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    for file in ["src/server.rs", "src/render.rs", "src/status.rs"] {
        let path = root().join(file);
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        let code = text.split("#[cfg(test)]").next().unwrap();
        for line in code.lines().filter(|l| l.contains("=>") || l.contains("strip_prefix(")) {
            for literal in line.split('"').skip(1).step_by(2) {
                if literal.starts_with('/') && literal.chars().all(|c| c.is_ascii_lowercase() || c == '/') {
                    paths.insert(literal.to_string());
                }
            }
        }
    }
    assert!(paths.contains("/health") && paths.contains("/livez"), "{paths:?}");
    paths
}

/// A daemon with one passing tcp check, and the listener it checks.
fn daemon() -> (Daemon, TcpListener) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let daemon = Daemon::start(
        &["--no-stats"],
        &[("KUBERNARY_CHECKS", "port=tcp"), ("KUBERNARY_PORT_ADDRESS", address.as_str())],
    );
    (daemon, listener)
}

#[test]
fn every_endpoint_is_documented_and_every_documented_endpoint_is_served() {
    let (endpoints, docs) = (page("endpoints.md"), all_docs());
    for path in routed_paths() {
        let path = path.trim_end_matches('/');
        let path = if path.is_empty() { "/" } else { path };
        assert!(
            mentions(&docs, &format!("`{path}")) || mentions(&docs, &format!("`GET {path}")),
            "docs/: the server routes {path}, which no page documents"
        );
    }
    let (daemon, _listener) = daemon();
    let mut served = 0;
    for cell in first_cells(section(&endpoints, "Endpoints")) {
        let path = cell.trim_matches('`').split_whitespace().last().unwrap();
        let path = path.replace("<name>", "port");
        // HEAD, so that /quitquitquit (GET, POST) answers 405 and stays put.
        let status = daemon.request("HEAD", &path).status;
        assert_ne!(status, 404, "docs/endpoints.md documents {path}, which the daemon does not serve");
        served += 1;
    }
    assert!(served >= 5, "docs/endpoints.md: no endpoint table");
}

#[test]
fn every_prometheus_series_is_documented_and_every_documented_one_is_served() {
    let (daemon, _listener) = daemon();
    // The first run, so that every per-check series has a sample.
    assert_eq!(daemon.get("/health").status, 200);
    let body = daemon.get("/metrics").body;
    let served: BTreeSet<&str> =
        body.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).collect();
    assert!(served.len() >= 7, "{body}");
    let (metrics, docs) = (page("metrics.md"), all_docs());
    for name in &served {
        assert!(mentions(&docs, name), "docs/: {name} is served but no page documents it");
    }
    for cell in first_cells(section(&metrics, "Prometheus")) {
        for name in cell.split(',').map(|n| n.trim().trim_matches('`')) {
            assert!(served.contains(name), "docs/metrics.md documents {name}, which /metrics does not serve");
        }
    }
}

#[test]
fn every_variable_in_deploy_is_documented() {
    let (_, globals) = flags_and_variables();
    let checks = page("checks.md");
    let configuration = page("configuration.md");
    let mut seen = 0;
    for entry in std::fs::read_dir(root().join("deploy")).unwrap() {
        let path = entry.unwrap().path();
        let text = read(&path);
        let names = text
            .match_indices("name: KUBERNARY_")
            .map(|(at, _)| text[at + 6..].chars().take_while(|c| name_char(*c)).collect::<String>());
        for var in names {
            seen += 1;
            if globals.contains(&var) || var == "KUBERNARY_CHECKS" {
                assert!(mentions(&configuration, &var) || mentions(&checks, &var), "{var}");
                continue;
            }
            let documented_key = kubernary::checks::COMMON_KEYS
                .iter()
                .chain(kubernary::checks::KINDS.iter().flat_map(|k| kubernary::checks::keys(k).unwrap()))
                .any(|key| var.ends_with(&format!("_{key}")) && documents_key(&checks, key));
            assert!(
                documented_key,
                "{}: {var} is neither a documented flag variable nor a documented check key",
                path.display()
            );
        }
    }
    assert!(seen > 5, "no KUBERNARY_ variables in deploy/");
}

/// The relative links of a Markdown text: `](target)`.
fn links(text: &str) -> Vec<&str> {
    text.match_indices("](")
        .filter_map(|(at, _)| text[at + 2..].split(')').next())
        .filter(|t| !t.starts_with("http") && !t.starts_with('#') && !t.is_empty())
        .collect()
}

/// GitHub's anchor for a heading.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    text.lines().filter(|l| l.starts_with('#')).map(|l| slug(l.trim_start_matches('#'))).collect()
}

#[test]
fn the_readme_is_short_links_every_page_and_every_link_lands() {
    let readme = readme();
    let lines = readme.lines().count();
    assert!(lines <= 250, "README.md has {lines} lines; move the detail into docs/");
    for name in pages().keys() {
        assert!(readme.contains(&format!("](docs/{name})")), "README.md does not link docs/{name}");
    }
    let mut sources = vec![(root().join("README.md"), readme.clone())];
    sources.extend(pages().into_iter().map(|(name, text)| (root().join("docs").join(name), text)));
    for (source, text) in &sources {
        for link in links(text) {
            let (file, anchor) = link.split_once('#').unwrap_or((link, ""));
            let target = source.parent().unwrap().join(file);
            assert!(target.exists(), "{}: link {link} goes nowhere", source.display());
            if !anchor.is_empty() && file.ends_with(".md") {
                assert!(
                    anchors(&read(&target)).contains(anchor),
                    "{}: no #{anchor} in {file}",
                    source.display()
                );
            }
        }
    }
}

#[test]
fn the_go_original_is_called_by_its_name() {
    let mut sources = vec![("README.md".to_string(), readme())];
    sources.extend(pages());
    for (name, text) in sources {
        let lower = text.to_lowercase();
        for word in ["the seed", "seed's"] {
            assert!(!lower.contains(word), "{name} says {word:?}: call it negz/kubernary or the Go original");
        }
    }
}
