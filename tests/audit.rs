//! `verify` and `diff` explain what differs: files only a normalisation rule covers,
//! layers aligned by content (an inserted step is named, the rest still matches), and
//! the first differing lines of a text file or the first differing byte of a binary one.

mod common;

use common::*;

/// Runs `xbake ARGS` in `dir` and returns (exit code, stdout).
fn run(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    let out = xbake(As::Me, dir, args, &[]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

const LOGGING: &str = "from: rootfs:bases/busybox-${TARGETARCH}.tar.gz
platforms: [amd64, arm64]
steps:
  - run: echo stable > /etc/stable
  - run: mkdir -p /var/log && echo \"$(date +%s) $(cat /proc/sys/kernel/random/uuid)\" > /var/log/dpkg.log
";

#[test]
fn verify_against_an_image_built_without_the_rules_says_so() {
    if !emulation_ready() {
        return;
    }
    let scratch = Scratch::new();
    let recipe = scratch.recipe("rules", LOGGING, &[]);
    let dir = recipe.parent().unwrap();
    xbake_ok(
        dir,
        &["build", "recipe.yaml", "--no-normalize", "-o", "oci:pub:1"],
        &[],
    );
    let (code, report) = run(dir, &["verify", "recipe.yaml", "--against", "oci:pub:1"]);
    assert_eq!(code, Some(1), "{report}");
    let hint = "only files that xbake's normalisation rules cover differ (/var/log/dpkg.log): \
                A (oci:pub:1) was built without them (by another tool, or with --no-normalize)";
    for platform in ["linux/amd64", "linux/arm64"] {
        let section = report
            .split(&format!("{platform}: differs\n"))
            .nth(1)
            .unwrap_or_else(|| panic!("no {platform} in:\n{report}"));
        assert!(section.starts_with(&format!("  {hint}\n")), "{report}");
    }
    assert!(
        report.contains(
            "/var/log/dpkg.log: content differs (normalisation rule: truncate /var/log/dpkg.log)"
        ),
        "{report}"
    );
    // The rebuild truncated the log: the published line is what it lost.
    assert!(
        report.contains("first difference at line 1:\n        -"),
        "{report}"
    );
    assert!(!report.contains("/etc/stable"), "{report}");

    let (code, out) = run(
        dir,
        &["verify", "recipe.yaml", "--against", "oci:pub:1", "--json"],
    );
    assert_eq!(code, Some(1));
    let report = json(out.as_bytes());
    let platform = &report["platforms"][0];
    assert_eq!(
        platform["normalisation"]["paths"],
        serde_json::json!(["/var/log/dpkg.log"])
    );
    assert_eq!(platform["normalisation"]["built_without"], "A");
    assert_eq!(platform["matching_layers"], 2, "base and step 1 match");
    let file = &platform["layers"][0]["files"][0];
    assert_eq!(file["rule"]["action"], "truncate");
    assert_eq!(file["content"]["b_size"], 0);
    assert_eq!(file["content"]["first_difference"], 0);
}

const TWO_STEPS: &str = "from: rootfs:bases/busybox-${TARGETARCH}.tar.gz
platforms: [amd64]
steps:
  - run: echo stable > /etc/stable
  - run: echo top > /top
";

#[test]
fn an_inserted_step_is_named_and_the_layers_after_it_still_match() {
    if fixtures().is_none() && skip("no busybox fixtures; run `just fixtures`") {
        return;
    }
    let scratch = Scratch::new();
    let recipe = scratch.recipe("insert", TWO_STEPS, &[]);
    let dir = recipe.parent().unwrap();
    xbake_ok(dir, &["build", "recipe.yaml", "-o", "oci:pub:1"], &[]);
    std::fs::write(
        &recipe,
        TWO_STEPS.replace(
            "  - run: echo top",
            "  - run: mkdir /extra && echo x > /extra/file\n  - run: echo top",
        ),
    )
    .unwrap();
    let (code, report) = run(dir, &["verify", "recipe.yaml", "--against", "oci:pub:1"]);
    assert_eq!(code, Some(1), "{report}");
    assert!(
        report.contains(
            "  3 layers identical in both, matched by content wherever they sit (A has 3, B has 4)\n"
        ),
        "{report}"
    );
    let extra = report
        .lines()
        .find(|l| l.starts_with("  extra layer "))
        .unwrap_or_else(|| panic!("no extra layer in:\n{report}"));
    assert!(
        extra.starts_with("  extra layer 3/4 (sha256:") && extra.ends_with(") in B: 2 entries"),
        "{extra}"
    );
    assert!(report.contains("    /extra/file: only in B\n"), "{report}");
    // Nothing else is compared: the top layer lined up with its twin.
    assert!(!report.contains("/top"), "{report}");
    assert!(!report.contains("  layer "), "{report}");

    // The other way round, the published image has the extra layer.
    let (_, rebuilt) = run(dir, &["build", "recipe.yaml", "-o", "oci:new:1"]);
    assert!(rebuilt.starts_with("sha256:"), "{rebuilt}");
    let (code, out) = run(dir, &["diff", "--json", "oci:new:1", "oci:pub:1"]);
    assert_eq!(code, Some(1));
    let report = json(out.as_bytes());
    let layers = &report["platforms"][0]["layers"];
    assert_eq!(layers.as_array().unwrap().len(), 1, "{layers}");
    assert_eq!(layers[0]["status"], "only in A");
    assert_eq!(layers[0]["a_index"], 3);
    assert_eq!(report["platforms"][0]["matching_layers"], 3);
}

const FILES: &str = "from: rootfs:bases/busybox-${TARGETARCH}.tar.gz
platforms: [amd64]
args: {WORD: one}
steps:
  - run: printf 'alpha\\nbeta\\ngamma\\ndelta\\n%s\\nomega\\n' \"$WORD\" > /etc/conf.txt && printf 'AB\\000CD%s' \"$WORD\" > /data.bin
";

#[test]
fn diff_shows_the_first_differing_lines_and_the_first_differing_byte() {
    if fixtures().is_none() && skip("no busybox fixtures; run `just fixtures`") {
        return;
    }
    let scratch = Scratch::new();
    let recipe = scratch.recipe("files", FILES, &[]);
    let dir = recipe.parent().unwrap();
    xbake_ok(dir, &["build", "recipe.yaml", "-o", "oci:x:1"], &[]);
    xbake_ok(
        dir,
        &[
            "build",
            "recipe.yaml",
            "--build-arg",
            "WORD=three",
            "-o",
            "oci:x:2",
        ],
        &[],
    );
    let (code, report) = run(dir, &["diff", "oci:x:1", "oci:x:2"]);
    assert_eq!(code, Some(1), "{report}");
    assert!(
        report.contains(
            "    /etc/conf.txt: content differs\n      text, 33 → 35 bytes, first difference at line 5:\n         \
             beta\n         gamma\n         delta\n        -one\n        +three\n"
        ),
        "{report}"
    );
    assert!(
        report.contains(
            "    /data.bin: content differs\n      binary, 8 → 10 bytes, first difference at byte 5\n"
        ),
        "{report}"
    );
    assert!(
        report.contains("  1 of 2 layers identical in both\n"),
        "{report}"
    );
    assert!(!report.contains("normalisation"), "{report}");

    // Verifying the image built with --build-arg against the recipe alone: the report
    // says the rebuild took the recipe's defaults.
    let (code, report) = run(dir, &["verify", "recipe.yaml", "--against", "oci:x:2"]);
    assert_eq!(code, Some(1), "{report}");
    assert!(
        report.contains("note: the rebuild used the recipe's defaults for WORD=one"),
        "{report}"
    );
    let (code, report) = run(
        dir,
        &[
            "verify",
            "recipe.yaml",
            "--against",
            "oci:x:2",
            "--build-arg",
            "WORD=three",
        ],
    );
    assert_eq!(code, Some(0), "{report}");
}
