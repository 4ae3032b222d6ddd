//! Whole-module tests: recipe text in, plan or located error out.

use super::*;

/// The format's reference example (the v1 contract), line numbers in the comments
/// matter to the tests below.
const EXAMPLE: &str = r#"from: rootfs:bases/busybox-${TARGETARCH}${TARGETVARIANT}.tar.gz  # or scratch, or oci:DIR[:tag]
platforms: [arm, arm64, ppc64le]     # default for --arch
args: {VERSION: "1.0"}               # build args; overridden with --build-arg VERSION=2
env: {PATH: /usr/local/bin:/usr/bin:/bin}   # ordered as written; kept in the image config
workdir: /app
source_date_epoch: 0                 # optional, integer seconds
steps:
  - run: uname -m > /arch            # string => /bin/sh -c in the target image
  - run: ["/bin/echo", "exec form"]  # list => exec form
    network: none                    # optional on run steps: private (default) | host | none
  - copy: files/hello.txt            # relative to the recipe's folder
    to: /opt/hello.txt
    mode: "0644"
    owner: "1000:1000"
  - env: {STAGE: two}                # seen by later steps and kept in the config
  - workdir: /srv
  - user: "1000:1000"
config:
  entrypoint: ["/bin/sh"]
  cmd: ["-c", "cat /arch"]
  labels: {org.opencontainers.image.title: hello}
  exposed_ports: ["8080/tcp"]
  stop_signal: SIGTERM
  volumes: ["/data"]
"#;

const FILE: &str = "recipes/hello.yaml";

pub(super) fn platform(name: &str) -> Platform {
    name.parse().unwrap()
}

pub(super) fn amd64() -> Platform {
    platform("amd64")
}

pub(super) fn parse(text: &str) -> Result<Recipe, RecipeError> {
    Recipe::parse(text, Path::new(FILE))
}

pub(super) fn plan_for(
    text: &str,
    target: &str,
    args: &[(&str, &str)],
) -> Result<Plan, RecipeError> {
    let args: Vec<(String, String)> = args
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    parse(text)?.plan(&platform(target), &amd64(), &args)
}

pub(super) fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `(line, column, full message)` of an error that must have a location.
pub(super) fn located(result: Result<impl std::fmt::Debug, RecipeError>) -> (usize, usize, String) {
    let err = result.expect_err("expected an error");
    let at = err
        .location()
        .unwrap_or_else(|| panic!("no location in {err:?}"))
        .clone();
    assert_eq!(at.file, Path::new(FILE));
    let message = err.to_string();
    let prefix = format!("{FILE}:{}:{}: ", at.line, at.column);
    assert!(message.starts_with(&prefix), "{message:?} lacks {prefix:?}");
    (at.line, at.column, message)
}

pub(super) fn parse_error(text: &str) -> (usize, usize, String) {
    located(parse(text))
}

pub(super) fn plan_error(
    text: &str,
    target: &str,
    args: &[(&str, &str)],
) -> (usize, usize, String) {
    located(plan_for(text, target, args))
}

// ---------------------------------------------------------------- the example

#[test]
fn example_plans_for_arm_v7() {
    let recipe = parse(EXAMPLE).unwrap();
    assert_eq!(recipe.file(), Path::new(FILE));
    assert_eq!(recipe.dir(), Path::new("recipes"));
    assert_eq!(
        recipe.digest(),
        crate::digest::Digest::of(EXAMPLE.as_bytes())
    );
    assert_eq!(
        recipe.platforms(),
        [platform("arm/v7"), platform("arm64"), platform("ppc64le")]
    );

    let plan = recipe.plan(&platform("arm"), &amd64(), &[]).unwrap();
    assert_eq!(plan.platform, platform("linux/arm/v7"));
    assert_eq!(plan.from_text, "rootfs:bases/busybox-armv7.tar.gz");
    assert_eq!(
        plan.from,
        BaseRef::Rootfs(PathBuf::from("recipes/bases/busybox-armv7.tar.gz"))
    );
    assert_eq!(plan.args, pairs(&[("VERSION", "1.0")]));
    assert_eq!(
        plan.build_env,
        pairs(&[
            ("TARGETPLATFORM", "linux/arm/v7"),
            ("TARGETOS", "linux"),
            ("TARGETARCH", "arm"),
            ("TARGETVARIANT", "v7"),
            ("BUILDPLATFORM", "linux/amd64"),
            ("BUILDOS", "linux"),
            ("BUILDARCH", "amd64"),
            ("BUILDVARIANT", ""),
            ("GOOS", "linux"),
            ("GOARCH", "arm"),
            ("GOARM", "7"),
            ("VERSION", "1.0"),
        ])
    );
    assert_eq!(plan.env, pairs(&[("PATH", "/usr/local/bin:/usr/bin:/bin")]));
    assert_eq!(plan.workdir.as_deref(), Some("/app"));
    assert_eq!(plan.source_date_epoch, Some(0));
    assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);

    let kinds: Vec<&StepKind> = plan.steps.iter().map(|s| &s.kind).collect();
    assert_eq!(
        kinds,
        [
            &StepKind::Run {
                command: RunCommand::Shell("uname -m > /arch".into()),
                network: None,
                mounts: vec![],
                args: Vec::new(),
            },
            &StepKind::Run {
                command: RunCommand::Exec(vec!["/bin/echo".into(), "exec form".into()]),
                network: Some(Network::None),
                mounts: vec![],
                args: Vec::new(),
            },
            &StepKind::Copy {
                from: None,
                sources: vec!["files/hello.txt".into()],
                to: "/opt/hello.txt".into(),
                mode: Some(0o644),
                owner: Some(CopyOwner::Ids(1000, 1000)),
                unpack: false,
            },
            &StepKind::Env(pairs(&[("STAGE", "two")])),
            &StepKind::Workdir("/srv".into()),
            &StepKind::User("1000:1000".into()),
        ]
    );
    let places: Vec<(usize, usize, usize)> = plan
        .steps
        .iter()
        .map(|s| (s.number, s.location.line, s.location.column))
        .collect();
    assert_eq!(
        places,
        [
            (1, 8, 5),
            (2, 9, 5),
            (3, 11, 5),
            (4, 15, 5),
            (5, 16, 5),
            (6, 17, 5)
        ]
    );
    assert_eq!(
        plan.steps[2].location.to_string(),
        "recipes/hello.yaml:11:5"
    );
    let described: Vec<String> = plan.steps.iter().map(PlanStep::describe).collect();
    assert_eq!(
        described,
        [
            "RUN uname -m > /arch",
            r#"RUN --network=none ["/bin/echo","exec form"]"#,
            "COPY --chown=1000:1000 --chmod=0644 files/hello.txt /opt/hello.txt",
            "ENV STAGE=two",
            "WORKDIR /srv",
            "USER 1000:1000",
        ]
    );
    assert_eq!(
        plan.steps[0].created_by(),
        "RUN /bin/sh -c uname -m > /arch"
    );

    assert_eq!(
        plan.config,
        ConfigSpec {
            entrypoint: Some(vec!["/bin/sh".into()]),
            cmd: Some(vec!["-c".into(), "cat /arch".into()]),
            labels: pairs(&[("org.opencontainers.image.title", "hello")]),
            exposed_ports: vec!["8080/tcp".into()],
            stop_signal: Some("SIGTERM".into()),
            volumes: vec!["/data".into()],
            user: Some("1000:1000".into()),
            ..Default::default()
        }
    );
    assert!(recipe.warnings().is_empty(), "{:?}", recipe.warnings());
}

#[test]
fn example_plans_for_arm64_without_variant_or_goarm() {
    let plan = plan_for(EXAMPLE, "linux/arm64", &[]).unwrap();
    assert_eq!(plan.from_text, "rootfs:bases/busybox-arm64.tar.gz");
    assert_eq!(
        plan.build_env,
        pairs(&[
            ("TARGETPLATFORM", "linux/arm64"),
            ("TARGETOS", "linux"),
            ("TARGETARCH", "arm64"),
            ("TARGETVARIANT", ""),
            ("BUILDPLATFORM", "linux/amd64"),
            ("BUILDOS", "linux"),
            ("BUILDARCH", "amd64"),
            ("BUILDVARIANT", ""),
            ("GOOS", "linux"),
            ("GOARCH", "arm64"),
            ("VERSION", "1.0"),
        ])
    );
    // Nothing else depends on the platform.
    let arm = plan_for(EXAMPLE, "arm", &[]).unwrap();
    assert_eq!(plan.steps, arm.steps);
    assert_eq!(plan.config, arm.config);
}

#[test]
fn build_platform_is_visible() {
    let recipe = parse("from: scratch\nworkdir: /${BUILDARCH}${BUILDVARIANT}\n").unwrap();
    let plan = recipe
        .plan(&platform("s390x"), &platform("arm/v6"), &[])
        .unwrap();
    assert_eq!(plan.workdir.as_deref(), Some("/armv6"));
    assert!(
        plan.build_env
            .contains(&("BUILDPLATFORM".into(), "linux/arm/v6".into()))
    );
    assert!(!plan.build_env.iter().any(|(name, _)| name == "GOARM"));
}

// ---------------------------------------------------------------- locations

#[test]
fn yaml_syntax_error_is_located() {
    let text = "from: scratch\nsteps:\n  - run: \"unterminated\n";
    let (line, column, message) = parse_error(text);
    assert_eq!((line, column), (3, 10), "{message}");
    assert_eq!(message, "recipes/hello.yaml:3:10: unclosed quote");

    let (line, column, _) = parse_error("from: scratch\n steps: []\n");
    assert_eq!((line, column), (2, 7));
}

#[test]
fn unknown_top_level_key_is_located_and_the_expected_keys_listed() {
    let (line, column, message) = parse_error("from: scratch\nform: scratch\n");
    assert_eq!((line, column), (2, 1));
    assert!(message.contains("unknown field `form`"), "{message}");
    assert!(message.contains("from, platforms, args, env"), "{message}");
    let (line, column, message) = parse_error("from: scratch\nconfig:\n  entry: [x]\n");
    assert_eq!((line, column), (3, 3));
    assert!(message.contains("entrypoint"), "{message}");
}

#[test]
fn user_env_and_workdir_under_config_are_said_to_be_steps() {
    for (field, step) in [
        ("user", "`- user: NAME`"),
        ("env", "`- env: {KEY: VALUE}`"),
        ("workdir", "`- workdir: /dir`"),
    ] {
        let text = format!("from: scratch\nconfig:\n  {field}: x\n");
        let (line, column, message) = parse_error(&text);
        assert_eq!((line, column), (3, 3), "{message}");
        assert!(
            message.contains(&format!("unknown field `{field}`")),
            "{message}"
        );
        assert!(
            message.contains(&format!("`{field}` is a step ({step})")),
            "{message}"
        );
    }
    // Other unknown config fields get no such hint, nor does `user` elsewhere.
    let (_, _, message) = parse_error("from: scratch\nconfig:\n  entry: [x]\n");
    assert!(!message.contains("is a step"), "{message}");
    let (_, _, message) = parse_error("from: scratch\nuser: x\n");
    assert!(!message.contains("is a step"), "{message}");
}

#[test]
fn unknown_step_key_is_located() {
    let text = "from: scratch\nsteps:\n  - run: make\n    netwrk: none\n";
    let (line, column, message) = parse_error(text);
    assert_eq!((line, column), (4, 5));
    assert!(message.ends_with(
        "unknown key `netwrk` in a step; expected one of run (with network, normalize, mounts), \
         copy (with from, to, mode, owner), env, workdir, user"
    ));
}

#[test]
fn step_with_two_kinds_points_at_the_second() {
    let text = "from: scratch\nsteps:\n  - run: make\n  - workdir: /x\n    user: nobody\n";
    let (line, column, message) = parse_error(text);
    assert_eq!((line, column), (5, 5));
    assert!(message.contains("both `workdir` and `user`"), "{message}");
}

#[test]
fn bad_platform_is_located() {
    let (line, column, message) = parse_error("from: scratch\nplatforms: [arm, mips]\n");
    assert_eq!((line, column), (2, 18));
    assert!(message.contains("unknown platform \"mips\""), "{message}");
    let (line, column, _) =
        parse_error("from: scratch\nplatforms:\n  - arm64\n  - windows/amd64\n");
    assert_eq!((line, column), (4, 5));
}

#[test]
fn bad_mode_is_located() {
    let text = "from: scratch\nsteps:\n  - copy: a\n    to: /b\n    mode: \"0999\"\n";
    let (line, column, message) = parse_error(text);
    assert_eq!((line, column), (5, 11));
    assert!(message.contains("invalid mode \"0999\""), "{message}");
}

#[test]
fn unknown_variable_in_from_is_located_and_known_names_listed() {
    let text = "args: {VERSION: \"1\"}\nfrom: rootfs:b-${TARGETARCH}-${FLAVOR}.tar\n";
    let (line, column, message) = plan_error(text, "arm64", &[]);
    assert_eq!((line, column), (2, 7));
    assert!(message.contains("unknown variable ${FLAVOR}"), "{message}");
    assert!(
        message.ends_with(
            "known: BUILDARCH, BUILDOS, BUILDPLATFORM, BUILDVARIANT, TARGETARCH, TARGETOS, \
             TARGETPLATFORM, TARGETVARIANT, VERSION"
        ),
        "{message}"
    );
}

#[test]
fn unknown_variable_in_copy_destination_is_located() {
    let text = "from: scratch\nsteps:\n  - copy: [a, b]\n    to: /opt/${APP}/\n";
    let (line, column, message) = plan_error(text, "arm64", &[]);
    assert_eq!((line, column), (4, 9));
    assert!(message.contains("${APP}"), "{message}");
    // Each source of a list has its own place.
    let text = "from: scratch\nsteps:\n  - copy: [a, \"${NOPE}\"]\n    to: /opt/\n";
    let (line, column, _) = plan_error(text, "arm64", &[]);
    assert_eq!((line, column), (3, 15));
}

#[test]
fn variables_env_steps_define_are_unknown_before_them() {
    let text = "from: scratch\nsteps:\n  - workdir: /${STAGE}\n  - env: {STAGE: two}\n";
    let (line, column, _) = plan_error(text, "arm64", &[]);
    assert_eq!((line, column), (3, 14));
}

#[test]
fn from_does_not_see_env() {
    let text = "env: {FLAVOR: slim}\nfrom: debian:${FLAVOR}\n";
    let (line, column, _) = plan_error(text, "arm64", &[]);
    assert_eq!((line, column), (2, 7));
}

#[test]
fn unterminated_variable_fails_at_load() {
    let text = "from: scratch\nenv:\n  A: \"x${B\"\n";
    let (line, column, message) = parse_error(text);
    assert_eq!((line, column), (3, 6));
    assert!(message.contains("unterminated ${"), "{message}");
}

#[test]
fn step_shape_errors() {
    let cases: &[(&str, (usize, usize), &str)] = &[
        (
            "from: scratch\nsteps:\n  - copy: a\n    mode: \"0644\"\n",
            (3, 5),
            "needs `to:`",
        ),
        (
            "from: scratch\nsteps:\n  - run: make\n    to: /x\n",
            (4, 5),
            "`to` belongs on a copy step, not on a run step",
        ),
        (
            "from: scratch\nsteps:\n  - copy: a\n    to: /b\n    network: none\n",
            (5, 5),
            "`network` belongs on a run step, not on a copy step",
        ),
        (
            "from: scratch\nsteps:\n  - network: none\n",
            (3, 5),
            "a step needs one of run, copy, env, workdir, user",
        ),
        (
            "from: scratch\nsteps:\n  - run: \"  \"\n",
            (3, 10),
            "empty run command",
        ),
        (
            "from: scratch\nsteps:\n  - run: []\n",
            (3, 10),
            "empty run command",
        ),
        (
            "from: scratch\nsteps:\n  - run: make\n    network: bridge\n",
            (4, 14),
            "invalid network \"bridge\"",
        ),
        (
            "from: scratch\nsteps:\n  - copy: a\n    to: /b\n    owner: root\n",
            (5, 12),
            "invalid owner \"root\"",
        ),
        (
            "from: scratch\nsteps:\n  - copy: []\n    to: /b\n",
            (3, 11),
            "at least one source",
        ),
        (
            "from: scratch\nsteps:\n  - env:\n",
            (3, 5),
            "at least one NAME",
        ),
        (
            "from: scratch\nsteps:\n  - env: {1A: x}\n",
            (3, 11),
            "invalid env name \"1A\"",
        ),
        (
            "from: scratch\nsteps:\n  - run: make\n  - echo hi\n",
            (4, 5),
            "expected a step: a mapping with one of run",
        ),
    ];
    for (text, at, needle) in cases {
        let (line, column, message) = parse_error(text);
        assert_eq!((line, column), *at, "{text:?}: {message}");
        assert!(message.contains(needle), "{text:?}: {message}");
    }
}

#[test]
fn value_errors_found_at_load() {
    let cases: &[(&str, (usize, usize), &str)] = &[
        (
            "from: scratch\nsource_date_epoch: -1\n",
            (2, 20),
            "zero or positive",
        ),
        (
            "from: scratch\nargs: {TARGETARCH: x}\n",
            (2, 8),
            "set by xbake",
        ),
        (
            "from: scratch\nargs: {a-b: x}\n",
            (2, 8),
            "invalid build arg name",
        ),
        (
            "from: scratch\nconfig:\n  exposed_ports: [\"80/http\"]\n",
            (3, 19),
            "invalid exposed port",
        ),
        (
            "from: scratch\nconfig:\n  stop_signal: SIGNOPE\n",
            (3, 16),
            "invalid stop signal",
        ),
        (
            "from: scratch\nconfig:\n  volumes: [data]\n",
            (3, 13),
            "must be an absolute path",
        ),
        (
            "from: scratch\nconfig:\n  labels: {\"\": x}\n",
            (3, 12),
            "empty label key",
        ),
        (
            "from: scratch\nenv:\n  A: 1\n  A: 2\n",
            (4, 3),
            "duplicate mapping key",
        ),
        (
            "from: scratch\nsteps:\n  - run: 42\n",
            (3, 5),
            "shell command string",
        ),
    ];
    for (text, at, needle) in cases {
        let (line, column, message) = parse_error(text);
        assert_eq!((line, column), *at, "{text:?}: {message}");
        assert!(message.contains(needle), "{text:?}: {message}");
    }
}

#[test]
fn value_errors_found_when_planning() {
    let cases: &[(&str, (usize, usize), &str)] = &[
        (
            "from: scratch\nworkdir: app\n",
            (2, 10),
            "must be an absolute path",
        ),
        (
            "from: scratch\nsteps:\n  - workdir: ${TARGETARCH}\n",
            (3, 14),
            "workdir \"arm64\" must be an absolute path",
        ),
        (
            "from: scratch\nsteps:\n  - user: \"a:b:c\"\n",
            (3, 11),
            "invalid user",
        ),
        ("from: rootfs:base.zip\n", (1, 7), "must be a .tar"),
        (
            "from: scratch\nsteps:\n  - copy: ../x\n    to: /x\n",
            (3, 11),
            "copy source \"../x\" leaves the recipe folder",
        ),
        (
            "from: scratch\nsteps:\n  - copy: /etc/passwd\n    to: /x\n",
            (3, 11),
            "must be relative to the recipe folder",
        ),
        ("args: {E: \"\"}\nfrom: \"${E}\"\n", (2, 7), "empty `from:`"),
    ];
    for (text, at, needle) in cases {
        let (line, column, message) = plan_error(text, "arm64", &[]);
        assert_eq!((line, column), *at, "{text:?}: {message}");
        assert!(message.contains(needle), "{text:?}: {message}");
    }
}

// ---------------------------------------------------------------- expansion

#[test]
fn target_arch_and_variant() {
    let text = "from: debian:${TARGETARCH}${TARGETVARIANT}\n";
    for (target, want) in [
        ("arm", "debian:armv7"),
        ("arm/v6", "debian:armv6"),
        ("arm64", "debian:arm64"),
        ("amd64", "debian:amd64"),
        ("ppc64le", "debian:ppc64le"),
    ] {
        let plan = plan_for(text, target, &[]).unwrap();
        assert_eq!(plan.from, BaseRef::Registry(want.into()), "{target}");
        assert_eq!(plan.from_text, want);
    }
}

#[test]
fn dollars_that_are_not_variables_stay() {
    let text = "from: scratch\nenv:\n  PATH: /opt/bin:$PATH\n  PRICE: $$5 and $${HOME}\n";
    let plan = plan_for(text, "arm64", &[]).unwrap();
    assert_eq!(
        plan.env,
        pairs(&[("PATH", "/opt/bin:$PATH"), ("PRICE", "$5 and ${HOME}")])
    );
}

#[test]
fn run_text_is_left_to_the_shell() {
    let text = "from: scratch\nsteps:\n  - run: echo ${TARGETARCH} $$ ${UNDECLARED\n";
    let plan = plan_for(text, "arm64", &[]).unwrap();
    assert_eq!(
        plan.steps[0].kind,
        StepKind::Run {
            command: RunCommand::Shell("echo ${TARGETARCH} $$ ${UNDECLARED".into()),
            network: None,
            mounts: vec![],
            args: Vec::new(),
        }
    );
}

#[test]
fn build_args_override_defaults_and_undeclared_ones_warn() {
    let text = "args:\n  VERSION: \"1.0\"\n  EMPTY:\nfrom: debian:${VERSION}${EMPTY}\n\
                config:\n  labels: {v: \"${VERSION}-${EXTRA}\"}\n";
    let plan = plan_for(
        text,
        "arm64",
        &[("VERSION", "2"), ("EXTRA", "x"), ("EXTRA", "y")],
    )
    .unwrap();
    assert_eq!(plan.from_text, "debian:2");
    assert_eq!(
        plan.args,
        pairs(&[("EMPTY", ""), ("EXTRA", "y"), ("VERSION", "2")])
    );
    assert_eq!(plan.config.labels, pairs(&[("v", "2-y")]));
    assert_eq!(
        plan.warnings,
        ["build arg EXTRA is not declared in `args:` of recipes/hello.yaml"]
    );
    assert_eq!(
        plan.build_env[plan.build_env.len() - 3..],
        pairs(&[("EMPTY", ""), ("EXTRA", "y"), ("VERSION", "2")])
    );
}

#[test]
fn bad_build_args_are_refused_without_a_location() {
    for (name, needle) in [
        ("TARGETARCH", "set by xbake"),
        ("A-B", "invalid build arg name"),
    ] {
        let err = plan_for("from: scratch\n", "arm64", &[(name, "x")]).unwrap_err();
        assert!(err.location().is_none());
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("--build-arg {name}: ")),
            "{message}"
        );
        assert!(message.contains(needle), "{message}");
    }
}

#[test]
fn env_chains_in_order_across_env_steps() {
    let text = "args: {V: \"1\"}\nfrom: scratch\nenv:\n  APP: /opt/app\n  BIN: ${APP}/bin\n\
                workdir: ${APP}\nsteps:\n  - env:\n      STAGE: one\n      LOG: ${APP}/${STAGE}.log\n\
                \x20 - workdir: ${BIN}\n  - env: {STAGE: two, V: \"${V}+${STAGE}\"}\n\
                \x20 - copy: files/${STAGE}\n    to: ${APP}/${STAGE}-${V}\n  - user: ${STAGE}\n\
                config:\n  labels: {stage: \"${STAGE}\", b: \"${LOG}\"}\n";
    let plan = plan_for(text, "arm64", &[]).unwrap();
    assert_eq!(
        plan.env,
        pairs(&[("APP", "/opt/app"), ("BIN", "/opt/app/bin")])
    );
    assert_eq!(plan.workdir.as_deref(), Some("/opt/app"));
    let kinds: Vec<&StepKind> = plan.steps.iter().map(|s| &s.kind).collect();
    assert_eq!(
        kinds,
        [
            &StepKind::Env(pairs(&[("STAGE", "one"), ("LOG", "/opt/app/one.log")])),
            &StepKind::Workdir("/opt/app/bin".into()),
            &StepKind::Env(pairs(&[("STAGE", "two"), ("V", "1+two")])),
            &StepKind::Copy {
                from: None,
                sources: vec!["files/two".into()],
                to: "/opt/app/two-1+two".into(),
                mode: None,
                owner: None,
                unpack: false,
            },
            &StepKind::User("two".into()),
        ]
    );
    // Labels see the final scope and come out sorted by key.
    assert_eq!(
        plan.config.labels,
        pairs(&[("b", "/opt/app/one.log"), ("stage", "two")])
    );
    assert_eq!(plan.config.user.as_deref(), Some("two"));
}

// ---------------------------------------------------------------- forms

#[test]
fn scalar_forms_are_read_as_written() {
    let text = "from: scratch\nplatforms: 386\nargs: {V: 1.10}\nsteps:\n\
                \x20 - copy: 0644\n    to: /x\n    mode: 0644\n    owner: 1000\n\
                \x20 - copy: [a, b]\n    to: /y/\n    mode: 755\n\
                \x20 - run: yes\n\
                config:\n  exposed_ports: [8080, 53/udp]\n  cmd: cat /arch\n  entrypoint: []\n";
    let recipe = parse(text).unwrap();
    assert_eq!(recipe.platforms(), [platform("386")]);
    let plan = recipe.plan(&platform("386"), &amd64(), &[]).unwrap();
    assert_eq!(plan.args, pairs(&[("V", "1.10")]));
    assert_eq!(
        plan.steps[0].kind,
        StepKind::Copy {
            from: None,
            sources: vec!["0644".into()],
            to: "/x".into(),
            mode: Some(0o644),
            owner: Some(CopyOwner::Ids(1000, 1000)),
            unpack: false,
        }
    );
    assert!(matches!(
        &plan.steps[1].kind,
        StepKind::Copy { sources, mode: Some(0o755), .. } if sources == &["a", "b"]
    ));
    assert_eq!(
        plan.steps[2].kind,
        StepKind::Run {
            command: RunCommand::Shell("yes".into()),
            network: None,
            mounts: vec![],
            args: Vec::new(),
        }
    );
    assert_eq!(plan.config.exposed_ports, ["8080/tcp", "53/udp"]);
    assert_eq!(
        plan.config.cmd,
        Some(vec!["/bin/sh".into(), "-c".into(), "cat /arch".into()])
    );
    assert_eq!(plan.config.entrypoint, Some(vec![]));
}

#[test]
fn minimal_recipe() {
    let plan = plan_for("from: scratch\n", "riscv64", &[]).unwrap();
    assert_eq!(plan.from, BaseRef::Scratch);
    assert!(plan.steps.is_empty() && plan.env.is_empty() && plan.args.is_empty());
    assert_eq!(plan.config, ConfigSpec::default());
    assert_eq!(plan.source_date_epoch, None);
    assert!(parse("from: scratch\n").unwrap().platforms().is_empty());
}

#[test]
fn oci_layout_base_is_relative_to_the_recipe() {
    let plan = plan_for("from: oci:out/base:${TARGETARCH}\n", "arm64", &[]).unwrap();
    assert_eq!(
        plan.from,
        BaseRef::OciLayout {
            dir: PathBuf::from("recipes/out/base"),
            tag: Some("arm64".into())
        }
    );
}

#[test]
fn yaml_anchors_are_located_where_used() {
    let text = "from: scratch\nenv:\n  A: &dir relative\nsteps:\n  - workdir: *dir\n";
    let (line, column, _) = plan_error(text, "arm64", &[]);
    assert_eq!((line, column), (5, 14));
}

// ---------------------------------------------------------------- files

#[test]
fn load_reads_the_file_and_names_it_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.yaml");
    std::fs::write(&path, "from: scratch\nbogus: 1\n").unwrap();
    let err = Recipe::load(&path).unwrap_err();
    assert_eq!(err.location().map(|at| at.file.clone()), Some(path.clone()));
    assert!(
        err.to_string()
            .starts_with(&format!("{}:2:1: ", path.display()))
    );

    std::fs::write(&path, EXAMPLE).unwrap();
    let recipe = Recipe::load(&path).unwrap();
    assert_eq!(recipe.dir(), dir.path());

    let missing = dir.path().join("missing.yaml");
    let err = Recipe::load(&missing).unwrap_err();
    assert!(matches!(err, RecipeError::Read { .. }));
    assert!(err.to_string().contains("missing.yaml"), "{err}");
}

#[test]
fn a_bare_file_name_lives_in_the_current_folder() {
    let recipe = Recipe::parse("from: scratch\n", Path::new("hello.yaml")).unwrap();
    assert_eq!(recipe.dir(), Path::new("."));
}

#[test]
fn planned_copy_sources_resolve_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("files")).unwrap();
    std::fs::write(dir.path().join("files/hello.txt"), "hi").unwrap();
    let path = dir.path().join("r.yaml");
    std::fs::write(&path, EXAMPLE).unwrap();
    let plan = Recipe::load(&path)
        .unwrap()
        .plan(&platform("arm64"), &amd64(), &[])
        .unwrap();
    let step = &plan.steps[2];
    let StepKind::Copy { sources, .. } = &step.kind else {
        panic!("step 3 is a copy: {step:?}");
    };
    let context = crate::context::BuildContext::open(dir.path()).unwrap();
    let found = resolve_copy_sources(&context, sources, &step.location).unwrap();
    assert_eq!(
        found,
        [dir.path().canonicalize().unwrap().join("files/hello.txt")]
    );
}

#[test]
fn empty_sections_are_allowed() {
    for text in [
        "from: scratch\nsteps:\n",
        "from: scratch\nconfig:\n",
        "from: scratch\nconfig:\n  labels:\n  volumes:\n  exposed_ports:\n",
        "from: scratch\nenv:\nargs:\nplatforms: []\nsteps: []\n",
    ] {
        let plan = plan_for(text, "arm64", &[]);
        assert!(plan.is_ok(), "{text:?}: {plan:?}");
    }
}

#[test]
fn normalize_is_on_for_run_steps_unless_the_recipe_or_the_step_turns_it_off() {
    let flags = |text: &str| -> Vec<bool> {
        plan_for(text, "amd64", &[])
            .unwrap()
            .steps
            .iter()
            .map(|s| s.normalize)
            .collect()
    };
    let steps = "steps:\n  - run: a\n  - run: b\n    normalize: false\n  - env: {A: '1'}\n";
    assert_eq!(
        flags(&format!("from: scratch\n{steps}")),
        [true, false, false]
    );
    let off =
        "from: scratch\nnormalize: false\nsteps:\n  - run: a\n  - run: b\n    normalize: true\n";
    assert_eq!(flags(off), [false, true]);
}

#[test]
fn normalize_errors_are_located() {
    let text = "from: scratch\nsteps:\n  - copy: a\n    to: /b\n    normalize: false\n";
    let (line, column, message) = parse_error(text);
    assert_eq!((line, column), (5, 5), "{message}");
    assert!(message.contains("`normalize`"), "{message}");
    assert!(message.contains("run"), "{message}");
    let (line, column, message) =
        parse_error("from: scratch\nsteps:\n  - run: a\n    normalize: sometimes\n");
    assert_eq!((line, column), (4, 16), "{message}");
    let (line, column, message) = parse_error("from: scratch\nnormalize: 3\n");
    assert_eq!((line, column), (2, 12), "{message}");
    assert!(message.starts_with("recipes/hello.yaml:2:12"), "{message}");
}

// ---------------------------------------------------------------- operators in values

#[test]
fn buildkit_operators_work_in_recipe_values() {
    let text = "args: {VERSION: \"\"}\n\
                from: debian:${VERSION:-bookworm}\n\
                env:\n  GOARM: \"${TARGETVARIANT#v}\"\n  SUFFIX: \"${TARGETVARIANT:+-${TARGETVARIANT}}\"\n\
                steps:\n  - workdir: /src/${UNDECLARED-default}\n\
                config:\n  labels: {arch: \"${TARGETPLATFORM##*/}\"}\n";
    let v6 = plan_for(text, "arm/v6", &[]).unwrap();
    assert_eq!(v6.from_text, "debian:bookworm");
    assert_eq!(v6.env, pairs(&[("GOARM", "6"), ("SUFFIX", "-v6")]));
    assert_eq!(v6.steps[0].kind, StepKind::Workdir("/src/default".into()));
    assert_eq!(v6.config.labels, pairs(&[("arch", "v6")]));
    let arm64 = plan_for(text, "arm64", &[("VERSION", "trixie")]).unwrap();
    assert_eq!(arm64.from_text, "debian:trixie");
    assert_eq!(arm64.env, pairs(&[("GOARM", ""), ("SUFFIX", "")]));
    assert_eq!(arm64.config.labels, pairs(&[("arch", "arm64")]));
}

#[test]
fn operator_errors_are_located() {
    let (line, column, message) = parse_error("from: scratch\nenv:\n  A: \"${B:#x}\"\n");
    assert_eq!((line, column), (3, 6), "{message}");
    assert!(
        message.contains("invalid variable reference ${B:#x}"),
        "{message}"
    );
    let (line, column, message) = plan_error(
        "from: scratch\nworkdir: /${VERSION:?give --build-arg VERSION}\n",
        "arm64",
        &[],
    );
    assert_eq!((line, column), (2, 10), "{message}");
    assert!(
        message.ends_with(": VERSION: give --build-arg VERSION"),
        "{message}"
    );
    // `#` and `%` need the name to exist, like `${NAME}`.
    let (_, _, message) = plan_error("from: scratch\nworkdir: /${NOPE%x}\n", "arm64", &[]);
    assert!(
        message.contains("unknown variable ${NOPE}; known: BUILDARCH"),
        "{message}"
    );
}

// ---------------------------------------------------------------- config extensions

const EXTENSIONS: &str = r#"from: scratch
args: {VERSION: "1.0"}
steps:
  - run: echo $0
  - run: ["/bin/echo", "exec"]
config:
  shell: ["/bin/bash", "-eu", "-c"]
  cmd: serve --port 80
  healthcheck:
    test: ["CMD", "/bin/check", "--quick"]
    interval: 1m30s
    timeout: 500ms
    start_period: 0s
    start_interval: 2s
    retries: 3
  annotations:
    manifest: {org.opencontainers.image.version: "${VERSION}", b.arch: "${TARGETARCH}"}
    index: {org.opencontainers.image.title: hello}
"#;

#[test]
fn healthcheck_shell_and_annotations_reach_the_plan() {
    let plan = plan_for(EXTENSIONS, "arm64", &[("VERSION", "2")]).unwrap();
    let bash = vec!["/bin/bash".to_string(), "-eu".into(), "-c".into()];
    assert_eq!(plan.config.shell.as_ref(), Some(&bash));
    assert_eq!(
        plan.config.cmd,
        Some(vec![
            "/bin/bash".into(),
            "-eu".into(),
            "-c".into(),
            "serve --port 80".into()
        ]),
        "a shell-form cmd goes through the recipe's shell"
    );
    assert_eq!(
        plan.config.healthcheck,
        Some(Healthcheck {
            test: vec!["CMD".into(), "/bin/check".into(), "--quick".into()],
            interval: 90_000_000_000,
            timeout: 500_000_000,
            start_period: 0,
            start_interval: 2_000_000_000,
            retries: 3,
        })
    );
    assert_eq!(
        plan.config.manifest_annotations,
        pairs(&[
            ("b.arch", "arm64"),
            ("org.opencontainers.image.version", "2")
        ]),
        "expanded and sorted by key"
    );
    assert_eq!(
        plan.config.index_annotations,
        pairs(&[("org.opencontainers.image.title", "hello")])
    );
    assert_eq!(plan.steps[0].shell.as_ref(), Some(&bash));
    assert_eq!(plan.steps[0].created_by(), "RUN /bin/bash -eu -c echo $0");
    assert_eq!(plan.steps[1].created_by(), r#"RUN ["/bin/echo","exec"]"#);
}

#[test]
fn without_the_extensions_nothing_changes() {
    let plan = plan_for(
        "from: scratch\nsteps:\n  - run: echo\nconfig:\n  cmd: x\n",
        "arm64",
        &[],
    )
    .unwrap();
    assert_eq!(plan.steps[0].shell, None);
    assert_eq!(plan.steps[0].created_by(), "RUN /bin/sh -c echo");
    assert_eq!(
        plan.config.cmd,
        Some(vec!["/bin/sh".into(), "-c".into(), "x".into()])
    );
    assert_eq!(plan.config.healthcheck, None);
    assert!(plan.config.manifest_annotations.is_empty());
}

#[test]
fn healthcheck_test_forms() {
    let test_of = |test: &str| {
        let text = format!("from: scratch\nconfig:\n  healthcheck:\n    test: {test}\n");
        plan_for(&text, "arm64", &[]).map(|plan| plan.config.healthcheck.unwrap().test)
    };
    let strings = |words: &[&str]| words.iter().map(|w| w.to_string()).collect::<Vec<_>>();
    assert_eq!(
        test_of("curl -f http://localhost/").unwrap(),
        strings(&["CMD-SHELL", "curl -f http://localhost/"])
    );
    assert_eq!(
        test_of("[CMD-SHELL, \"exit 0\"]").unwrap(),
        strings(&["CMD-SHELL", "exit 0"])
    );
    assert_eq!(test_of("[NONE]").unwrap(), strings(&["NONE"]));
    assert_eq!(test_of("[CMD, /ok]").unwrap(), strings(&["CMD", "/ok"]));
}

#[test]
fn config_extension_errors_are_located() {
    let hc = |body: &str| format!("from: scratch\nconfig:\n  healthcheck:\n{body}");
    let cases: Vec<(String, (usize, usize), &str)> = vec![
        (
            hc("    test: /ok\n    interval: 10\n"),
            (5, 15),
            "invalid healthcheck interval \"10\": expected a duration like 30s",
        ),
        (
            hc("    test: /ok\n    timeout: 1x\n"),
            (5, 14),
            "invalid healthcheck timeout \"1x\"",
        ),
        (
            hc("    test: /ok\n    start_period: -5s\n"),
            (5, 19),
            "invalid healthcheck start_period \"-5s\"",
        ),
        (
            hc("    test: /ok\n    start_interval: 10us\n"),
            (5, 21),
            "shorter than 1ms",
        ),
        (
            hc("    test: /ok\n    retries: -1\n"),
            (5, 14),
            "retries must be between 0 and 2147483647, not -1",
        ),
        (
            hc("    test: /ok\n    retries: 2147483648\n"),
            (5, 14),
            "not 2147483648",
        ),
        (hc("    test: []\n"), (4, 11), "the list is empty"),
        (hc("    test: [CMD]\n"), (4, 11), "CMD needs a program"),
        (hc("    test: [NONE, x]\n"), (4, 11), "NONE takes nothing"),
        (
            hc("    test: [CMD-SHELL, a, b]\n"),
            (4, 11),
            "one command string",
        ),
        (hc("    test: \"  \"\n"), (4, 11), "the command is empty"),
        (
            hc("    test: [RUN, x]\n"),
            (4, 11),
            "it starts with \"RUN\"",
        ),
        (
            hc("    test: [NONE]\n    retries: 1\n    interval: 1s\n"),
            (5, 14),
            "`retries` has no meaning with the healthcheck test [\"NONE\"]",
        ),
        (hc("    interval: 1s\n"), (4, 5), "missing field `test`"),
        (
            hc("    test: /ok\n    every: 1s\n"),
            (5, 5),
            "unknown field `every`",
        ),
        (
            "from: scratch\nconfig:\n  shell: /bin/bash -c\n".into(),
            (3, 10),
            "shell must be an exec-form list",
        ),
        (
            "from: scratch\nconfig:\n  shell: []\n".into(),
            (3, 10),
            "shell must be an exec-form list",
        ),
        (
            "from: scratch\nconfig:\n  annotations:\n    manifest: {\"\": x}\n".into(),
            (4, 16),
            "empty annotation key",
        ),
        (
            "from: scratch\nconfig:\n  annotations:\n    layer: {a: b}\n".into(),
            (4, 5),
            "unknown field `layer`",
        ),
        (
            "from: scratch\nconfig:\n  annotations:\n    index: {a: \"${X\"}\n".into(),
            (4, 16),
            "unterminated ${",
        ),
    ];
    for (text, at, needle) in &cases {
        let (line, column, message) = parse_error(text);
        assert_eq!((line, column), *at, "{text:?}: {message}");
        assert!(message.contains(needle), "{text:?}: {message}");
    }
}

#[test]
fn exec_forms_with_variables_warn_at_load() {
    let text = r#"from: scratch
steps:
  - run: ["/bin/echo", "${TARGETARCH}"]
  - run: echo ${TARGETARCH}
  - run: ["/bin/echo", "$${TARGETARCH}", "$PATH"]
config:
  entrypoint: ["/app", "--arch=${TARGETARCH}"]
  cmd: ["${VERSION:-1}"]
  healthcheck:
    test: ["CMD", "/ok", "${PORT}"]
"#;
    let recipe = parse(text).unwrap();
    assert_eq!(
        recipe.warnings(),
        [
            "recipes/hello.yaml:3:10: this run step is exec form and is not expanded; \
             ${TARGETARCH} stays literal",
            "recipes/hello.yaml:7:15: config.entrypoint is exec form and is not expanded; \
             ${TARGETARCH} stays literal",
            "recipes/hello.yaml:8:8: config.cmd is exec form and is not expanded; \
             ${VERSION:-1} stays literal",
            "recipes/hello.yaml:10:11: config.healthcheck.test is exec form and is not \
             expanded; ${PORT} stays literal",
        ]
    );
    // And they are indeed left as written.
    let plan = recipe.plan(&platform("arm64"), &amd64(), &[]).unwrap();
    assert_eq!(plan.config.cmd, Some(vec!["${VERSION:-1}".to_string()]));
}
