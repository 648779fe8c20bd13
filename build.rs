//! Bakes the git commit into the binary for `kubernary --version`.
//!
//! The commit comes from `git rev-parse --short HEAD`; where there is no git
//! repository (a container build stage copies the sources without `.git`)
//! from the `KUBERNARY_COMMIT` variable (the Containerfile's build argument);
//! else it is `unknown`.
//!
//! Cargo reruns this script only when HEAD or the branch it points at moves
//! (or `KUBERNARY_COMMIT` changes), not on every source edit. Each watched
//! path must exist: cargo treats a missing one as always stale, which would
//! rebuild the crate every time.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=KUBERNARY_COMMIT");
    let commit = git(&["rev-parse", "--short", "HEAD"])
        .or_else(|| {
            std::env::var("KUBERNARY_COMMIT").ok().map(|c| c.trim().to_string()).filter(|c| !c.is_empty())
        })
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=KUBERNARY_COMMIT={commit}");
    for path in watched() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// HEAD, the ref it names (loose file, or the `refs/heads` folder it will
/// appear in) and `packed-refs`. In a worktree HEAD lives in the worktree's
/// git dir and the refs in the common one.
fn watched() -> Vec<PathBuf> {
    let (Some(git_dir), Some(common)) =
        (git(&["rev-parse", "--absolute-git-dir"]), git(&["rev-parse", "--git-common-dir"]))
    else {
        return Vec::new();
    };
    let git_dir = PathBuf::from(git_dir);
    let common = absolute(PathBuf::from(common));
    let mut paths = vec![git_dir.join("HEAD"), common.join("packed-refs")];
    if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
        let loose = common.join(&reference);
        match loose.exists() {
            true => paths.push(loose),
            false => paths.extend(loose.parent().map(Path::to_path_buf)),
        }
    }
    paths.retain(|p| p.exists());
    paths
}

fn absolute(path: PathBuf) -> PathBuf {
    match path.is_absolute() {
        true => path,
        false => std::env::current_dir().map(|d| d.join(&path)).unwrap_or(path),
    }
}
