//! Stages, copy `from:` and run `mounts:` as the recipe module reads and plans them.

use super::tests_support::*;
use super::*;

const STAGED: &str = r#"
stages:
  build:
    from: rootfs:bases/golang-${BUILDARCH}.tar.zst
    platform: build
    env: {CGO_ENABLED: "0"}
    steps:
      - copy: src/
        to: /src
      - run: GOARCH=$TARGETARCH go build -o /out/hello .
        mounts:
          - {type: cache, target: /root/.cache/go-build}
          - {type: secret, id: token, required: true}
          - {type: tmpfs, target: /tmp, size: 64m}
          - {type: bind, from: assets, source: /data, target: /mnt/assets}
  assets:
    from: scratch
    platform: linux/arm64
  tools:
    from: rootfs:bases/busybox-amd64.tar.gz
    platform: build
from: build
steps:
  - copy: /out/hello
    from: build
    to: /usr/local/bin/hello
  - copy: /etc/os-release
    from: debian:bookworm
    to: /os-release
"#;

fn stage(recipe: &Recipe, name: &str) -> usize {
    recipe.stage_index(name).unwrap()
}

#[test]
fn stages_run_where_their_platform_says_and_name_the_target_only_when_they_use_it() {
    let recipe = parse(STAGED).unwrap();
    assert_eq!(recipe.stage_names(), ["build", "assets", "tools"]);
    let arm = platform("arm/v6");
    let host = amd64();
    // `build` names TARGETARCH: it runs on the build machine for the target.
    assert_eq!(
        recipe.stage_platforms(stage(&recipe, "build"), &arm, &host),
        (host, arm)
    );
    // `tools` does not: built once, as if for its own platform.
    assert_eq!(
        recipe.stage_platforms(stage(&recipe, "tools"), &arm, &host),
        (host, host)
    );
    let arm64 = platform("arm64");
    assert_eq!(
        recipe.stage_platforms(stage(&recipe, "assets"), &arm, &host),
        (arm64, arm64)
    );
    assert_eq!(recipe.fixed_platforms(), [arm64]);
    // The final image depends on `build`, so on the target.
    let final_stage = recipe.output_stage(None).unwrap();
    assert_eq!(recipe.stage_platforms(final_stage, &arm, &host), (arm, arm));
}

#[test]
fn a_build_stage_plan_sees_the_target_and_runs_with_go_variables_for_its_own_platform() {
    let recipe = parse(STAGED).unwrap();
    let arm = platform("arm/v7");
    let plan = recipe
        .plan_stage(
            stage(&recipe, "build"),
            &arm,
            &amd64(),
            &[],
            &pairs(&[("PATH", "/usr/bin")]),
            &[],
        )
        .unwrap();
    assert_eq!(plan.stage.as_deref(), Some("build"));
    assert_eq!(plan.platform, amd64());
    assert_eq!(plan.target, arm);
    assert_eq!(plan.from_text, "rootfs:bases/golang-amd64.tar.zst");
    let env: std::collections::BTreeMap<_, _> = plan.build_env.iter().cloned().collect();
    assert_eq!(env["TARGETPLATFORM"], "linux/arm/v7");
    assert_eq!(env["TARGETARCH"], "arm");
    assert_eq!(env["BUILDARCH"], "amd64");
    assert_eq!(env["GOARCH"], "amd64");
    assert!(!env.contains_key("GOARM"));
    let StepKind::Run { mounts, .. } = &plan.steps[1].kind else {
        panic!("{:?}", plan.steps[1]);
    };
    assert_eq!(
        plan.steps[1].describe(),
        "RUN --mount=type=cache,target=/root/.cache/go-build \
         --mount=type=secret,id=token,target=/run/secrets/token,required \
         --mount=type=tmpfs,target=/tmp,size=67108864 \
         --mount=type=bind,from=assets,source=/data,target=/mnt/assets \
         GOARCH=$TARGETARCH go build -o /out/hello ."
    );
    assert_eq!(
        mounts[0].kind,
        RunMountKind::Cache {
            id: "/root/.cache/go-build".into(),
            sharing: CacheSharing::Shared,
            mode: 0o755,
            uid: 0,
            gid: 0
        }
    );
    assert_eq!(
        mounts[3].kind,
        RunMountKind::Bind {
            from: Some(CopyFrom::Stage("assets".into())),
            source: "/data".into(),
            readwrite: false
        }
    );
}

#[test]
fn copy_from_names_a_stage_or_an_image() {
    let recipe = parse(STAGED).unwrap();
    let arm64 = platform("arm64");
    let (from, text) = recipe
        .stage_from(recipe.output_stage(None).unwrap(), &arm64, &amd64(), &[])
        .unwrap();
    assert_eq!(from, BaseRef::Stage("build".into()));
    assert_eq!(text, "build");
    let plan = recipe.plan(&arm64, &amd64(), &[]).unwrap();
    let froms: Vec<_> = plan
        .steps
        .iter()
        .map(|s| match &s.kind {
            StepKind::Copy { from, .. } => from.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        froms,
        [
            Some(CopyFrom::Stage("build".into())),
            Some(CopyFrom::Image {
                base: BaseRef::Registry("debian:bookworm".into()),
                text: "debian:bookworm".into()
            })
        ]
    );
}

#[test]
fn the_base_images_env_is_visible_after_from() {
    let text = "from: scratch\nenv: {PATH: \"/opt/bin:${PATH}\", D: \"${MISSING:-dflt}\"}\n";
    let recipe = parse(text).unwrap();
    let plan = recipe
        .plan_stage(
            0,
            &amd64(),
            &amd64(),
            &[],
            &pairs(&[("PATH", "/usr/bin:/bin")]),
            &[],
        )
        .unwrap();
    assert_eq!(
        plan.env,
        pairs(&[("PATH", "/opt/bin:/usr/bin:/bin"), ("D", "dflt")])
    );
    // Without it, PATH is unknown, as before.
    let (_, _, message) = located(recipe.plan_stage(0, &amd64(), &amd64(), &[], &[], &[]));
    assert!(message.contains("unknown variable ${PATH}"), "{message}");
}

#[test]
fn stage_mistakes_are_located() {
    let cases: &[(&str, (usize, usize), &str)] = &[
        (
            "stages:\n  Build:\n    from: scratch\nfrom: scratch\n",
            (2, 3),
            "invalid stage name \"Build\"",
        ),
        (
            "stages:\n  a:\n    from: scratch\n    platform: mips\nfrom: scratch\n",
            (4, 15),
            "invalid stage platform \"mips\"",
        ),
        (
            "stages:\n  a:\n    from: b\n  b:\n    from: a\nfrom: a\n",
            (3, 11),
            "stage a depends on itself: a -> b -> a",
        ),
        (
            "stages:\n  a:\n    from: scratch\n    steps:\n      - copy: /x\n        from: a\n        to: /y\nfrom: a\n",
            (6, 15),
            "stage a depends on itself: a -> a",
        ),
        (
            "from: scratch\nsteps:\n  - run: x\n    mounts:\n      - {type: volume, target: /x}\n",
            (5, 16),
            "unknown mount type \"volume\"",
        ),
        (
            "from: scratch\nsteps:\n  - run: x\n    mounts:\n      - {type: tmpfs, target: /x, id: y}\n",
            (5, 39),
            "a tmpfs mount has no `id`; it takes target, size",
        ),
        (
            "from: scratch\nsteps:\n  - run: x\n    mounts:\n      - {type: cache}\n",
            (5, 9),
            "a cache mount needs `target`",
        ),
        (
            "from: scratch\nsteps:\n  - run: x\n    mounts:\n      - {type: secret, id: a/b}\n",
            (5, 28),
            "invalid secret id \"a/b\"",
        ),
        (
            "from: scratch\nsteps:\n  - copy: x\n    to: /y\n    mounts: []\n",
            (5, 5),
            "`mounts` belongs on a run step, not on a copy step",
        ),
        (
            "from: scratch\nsteps:\n  - run: x\n    from: y\n",
            (4, 5),
            "`from` belongs on a copy step, not on a run step",
        ),
    ];
    for (text, at, want) in cases {
        let (line, column, message) = parse_error(text);
        assert!(message.contains(want), "{text}\n{message}");
        assert_eq!((line, column), *at, "{text}\n{message}");
    }
}

#[test]
fn mount_targets_are_checked_when_planning() {
    for (target, ok) in [
        ("/cache", true),
        ("/root/.cache/", true),
        ("/", false),
        ("relative", false),
        ("/proc/x", false),
        ("/dev", false),
        ("/sys/fs", false),
        ("/a/../b", false),
        ("/procfs", true),
    ] {
        let text = format!(
            "from: scratch\nsteps:\n  - run: x\n    mounts:\n      - {{type: cache, target: \"{target}\"}}\n"
        );
        let result = plan_for(&text, "amd64", &[]);
        assert_eq!(result.is_ok(), ok, "{target}: {result:?}");
    }
    let twice = "from: scratch\nsteps:\n  - run: x\n    mounts:\n      - {type: tmpfs, target: /t}\n      - {type: cache, target: /t/}\n";
    let (_, _, message) = plan_error(twice, "amd64", &[]);
    assert!(
        message.contains("two mounts of this step have the target /t"),
        "{message}"
    );
}

#[test]
fn unknown_targets_are_named_with_the_stages() {
    let recipe = parse(STAGED).unwrap();
    assert_eq!(
        recipe.output_stage(Some("nope")).unwrap_err().to_string(),
        "--target nope: the recipe has no such stage; its stages: build, assets, tools"
    );
    assert_eq!(recipe.output_stage(Some("tools")).unwrap(), 2);
    let plain = parse("from: scratch\n").unwrap();
    assert!(
        plain
            .output_stage(Some("x"))
            .unwrap_err()
            .to_string()
            .ends_with("its stages: none")
    );
}

#[test]
fn a_recipe_on_a_base_with_onbuild_triggers_says_it_does_not_run_them() {
    let recipe = parse("from: scratch\nsteps:\n  - run: \"true\"\n").unwrap();
    let triggers = ["RUN make".to_string()];
    let plan = recipe
        .plan_stage(0, &amd64(), &amd64(), &[], &[], &triggers)
        .unwrap();
    assert_eq!(
        plan.warnings,
        ["the base of stage final has ONBUILD triggers (RUN make); only Dockerfiles run them"]
    );
    assert_eq!(plan.steps.len(), 1, "the trigger is not run");
}
