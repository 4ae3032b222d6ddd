//! The CI and Kubernetes examples are valid: the GitHub Actions workflow against the
//! workflow schema (PyPI's check-jsonschema), the Kubernetes Jobs against a current
//! Kubernetes version's schemas (PyPI's kubernetes-validate), both installed here.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A virtualenv with the validators, made once per machine (outside the clone).
fn validators() -> Option<PathBuf> {
    let venv = python_venv(
        "xbake-test-validators",
        &["check-jsonschema==0.39.0", "kubernetes-validate==1.37.0"],
    )?;
    let ready = venv.join("bin/check-jsonschema").is_file()
        && venv.join("bin/kubernetes-validate").is_file();
    ready.then_some(venv)
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn check_workflow(venv: &Path, file: &Path) -> std::process::Output {
    Command::new(venv.join("bin/check-jsonschema"))
        .args(["--builtin-schema", "vendor.github-workflows"])
        .arg(file)
        .output()
        .unwrap()
}

fn check_kubernetes(venv: &Path, file: &Path) -> std::process::Output {
    Command::new(venv.join("bin/kubernetes-validate"))
        .args(["--strict", "--kubernetes-version", "1.34"])
        .arg(file)
        .output()
        .unwrap()
}

#[test]
fn the_github_actions_workflow_is_a_valid_workflow() {
    let Some(venv) = validators() else {
        skip("could not install check-jsonschema from PyPI");
        return;
    };
    let workflow = repo().join("examples/ci/github-actions.yml");
    let out = check_workflow(&venv, &workflow);
    assert!(out.status.success(), "{}", text(&out));
    // The check can fail: the same file without its jobs' runners is refused.
    let broken = tempfile::tempdir().unwrap();
    let copy = broken.path().join("broken.yml");
    let original = std::fs::read_to_string(&workflow).unwrap();
    std::fs::write(&copy, original.replace("    runs-on:", "    runs_on:")).unwrap();
    assert!(!check_workflow(&venv, &copy).status.success());
    // It uses the flags xbake has.
    for flag in [
        "--push-by-digest",
        "--metadata-file",
        "manifest create",
        "xbake doctor",
    ] {
        assert!(original.contains(flag), "{flag}");
    }
}

#[test]
fn the_kubernetes_jobs_validate_against_a_current_kubernetes() {
    let Some(venv) = validators() else {
        skip("could not install kubernetes-validate from PyPI");
        return;
    };
    for name in ["build-jobs.yaml", "merge-job.yaml"] {
        let file = repo().join("examples/kubernetes").join(name);
        let out = check_kubernetes(&venv, &file);
        assert!(out.status.success(), "{name}: {}", text(&out));
    }
    let jobs = std::fs::read_to_string(repo().join("examples/kubernetes/build-jobs.yaml")).unwrap();
    assert!(jobs.contains("hostUsers: false") && jobs.contains("kubernetes.io/arch: arm64"));
    // A misspelt field is refused (--strict), so the check can fail.
    let broken = tempfile::tempdir().unwrap();
    let copy = broken.path().join("broken.yaml");
    std::fs::write(&copy, jobs.replace("nodeSelector:", "nodeSelectr:")).unwrap();
    assert!(!check_kubernetes(&venv, &copy).status.success());
}

#[test]
fn the_shell_version_says_how_to_use_it() {
    let script = repo().join("examples/ci/build-and-merge.sh");
    let out = Command::new("bash")
        .arg(&script)
        .env("IMAGE", "x/y")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("usage:"), "{}", text(&out));
    let out = Command::new("bash")
        .arg(&script)
        .arg("build")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("set IMAGE"), "{}", text(&out));
}
