//! Building from a Dockerfile (issue 12): the same engine as recipes, the Dockerfile's
//! own semantics (ARG scoping, ENV over ARG, heredocs, WORKDIR-relative COPY), the
//! docker spellings of the command line, and errors that name the line.

mod common;
mod registry_harness;

use common::*;
use std::path::{Path, PathBuf};

/// Three emulated platforms, two stages; each file written says what the step saw.
const APP: &str = r#"# syntax=docker/dockerfile:1
ARG VERSION=1.0
ARG BASE=rootfs:bases/busybox-${TARGETARCH}${TARGETVARIANT}.tar.gz
FROM ${BASE} AS build
RUN echo "before: [$VERSION]" > /before
ARG VERSION
ARG TARGETARCH
RUN echo "after: [$VERSION] arch=$TARGETARCH" > /after
ENV MODE=env
ARG MODE=arg
RUN echo "$MODE" > /mode
RUN cat <<EOF > /heredoc && sh <<'RAW'
value=$VERSION
EOF
echo 'raw $VERSION' > /raw
RAW

FROM ${BASE} AS runtime
WORKDIR /app
COPY --from=build /before /after /mode /heredoc /raw ./
COPY --chmod=0600 files/ conf/
LABEL org.example.version="[$VERSION]"
EXPOSE 8080
USER 1000:1000
ENTRYPOINT ["/bin/cat"]
CMD ["/app/after"]
"#;

/// A context folder holding the Dockerfile (as `name`), the busybox bases and files/.
fn context(scratch: &Scratch, folder: &str, name: &str, dockerfile: &str) -> PathBuf {
    let recipe = scratch.recipe(
        folder,
        "",
        &[(name, dockerfile), ("files/app.conf", "key = 1\n")],
    );
    let dir = recipe.parent().unwrap().to_path_buf();
    // The folder holds a Dockerfile; no YAML recipe should be found in it.
    std::fs::remove_file(&recipe).unwrap();
    dir
}

fn image<'a>(images: &'a [ReadImage], platform: &str) -> &'a ReadImage {
    images
        .iter()
        .find(|i| i.platform == platform)
        .unwrap_or_else(|| panic!("no {platform} image"))
}

#[test]
fn a_context_folder_builds_its_dockerfile_with_buildkit_semantics() {
    if !emulation_ready() {
        return;
    }
    let scratch = Scratch::new();
    let dir = context(&scratch, "app", "Dockerfile", APP);
    let (digest, err) = xbake_ok(
        &dir,
        &[
            "build",
            ".",
            "--platform",
            "linux/arm/v7",
            "--platform",
            "linux/arm64,linux/ppc64le",
            "-t",
            "app:1",
            "-o",
            "oci:out/app",
        ],
        &[],
    );
    assert!(
        err.contains("# syntax=docker/dockerfile:1 is not used"),
        "{err}"
    );
    let (index, images) = read_layout(&dir.join("out/app"), "1");
    assert_eq!(index, digest);
    assert_eq!(images.len(), 3);
    for (platform, arch) in [
        ("linux/arm/v7", "arm"),
        ("linux/arm64", "arm64"),
        ("linux/ppc64le", "ppc64le"),
    ] {
        let img = image(&images, platform);
        // An ARG is visible from its declaration; the global default needs redeclaring.
        assert_eq!(file_text(img, "app/before"), "before: []\n");
        assert_eq!(
            file_text(img, "app/after"),
            format!("after: [1.0] arch={arch}\n")
        );
        // ENV beats an ARG of the same name.
        assert_eq!(file_text(img, "app/mode"), "env\n");
        // Heredocs: expanded by the shell, and a quoted one kept as written.
        assert_eq!(file_text(img, "app/heredoc"), "value=1.0\n");
        assert_eq!(file_text(img, "app/raw"), "raw $VERSION\n");
        assert_eq!(file_text(img, "app/conf/app.conf"), "key = 1\n");
        assert_eq!(img.meta["app/conf/app.conf"].2 & 0o7777, 0o600);
        let config = &img.config["config"];
        assert_eq!(config["WorkingDir"], "/app");
        assert_eq!(config["User"], "1000:1000");
        assert_eq!(config["Entrypoint"], serde_json::json!(["/bin/cat"]));
        assert_eq!(config["Cmd"], serde_json::json!(["/app/after"]));
        assert_eq!(config["ExposedPorts"], serde_json::json!({"8080/tcp": {}}));
        // VERSION is not declared in the runtime stage: empty there, as in BuildKit.
        assert_eq!(config["Labels"]["org.example.version"], "[]");
        // ARGs are for the build only: never in the config.
        let env = config["Env"].to_string();
        assert!(
            !env.contains("VERSION") && !env.contains("TARGETARCH"),
            "{env}"
        );
    }
    // An auditor rebuilds it from the context folder and gets the same bytes.
    let (said, _) = xbake_ok(&dir, &["verify", ".", "--against", "oci:out/app:1"], &[]);
    assert!(
        said.contains(&format!(
            "oci:out/app:1 ({digest}) is reproduced bit for bit from . (3 platforms)"
        )),
        "{said}"
    );
}

#[test]
fn dash_f_a_context_build_args_and_target_and_the_same_digest_every_time() {
    if !emulation_ready() {
        return;
    }
    let scratch = Scratch::new();
    let dir = context(&scratch, "ctx", "Containerfile.build", APP);
    let file = dir.join("Containerfile.build");
    let cache_of = |name: &str| scratch.path().join(name).display().to_string();
    let build_f = ["build", "-f", file.to_str().unwrap(), dir.to_str().unwrap()];
    // `head` names the command and the file; `rest` the output and the cache.
    let xbake_on_file = |who: As, head: &[&str], rest: &[&str]| {
        let mut args = head.to_vec();
        args.extend([
            "--build-arg",
            "VERSION=2",
            "--target",
            "build",
            "--platform",
            "arm64",
        ]);
        args.extend(rest);
        let result = xbake(who, scratch.path(), &args, &[]);
        assert_ok(&result);
        String::from_utf8_lossy(&result.stdout).trim().to_string()
    };
    let build = |who: As, cache: &str, out: &str| {
        let out = format!("oci:{}", scratch.path().join(out).display());
        xbake_on_file(
            who,
            &build_f,
            &["--cache-dir", &cache_of(cache), "-o", &out],
        )
    };
    let first = build(As::Me, "c1", "o1");
    let (_, images) = read_layout(&scratch.path().join("o1"), "latest");
    assert_eq!(file_text(&images[0], "after"), "after: [2] arch=arm64\n");
    assert!(
        !images[0].files.contains_key("app/after"),
        "--target build stops there"
    );
    // Another cache, and (when the tests run as root) another user: the same digest.
    assert_eq!(build(As::Me, "c2", "o2"), first);
    if is_root() && test_user().is_some() {
        assert_eq!(build(As::TestUser, "c3", "o3"), first);
    }
    // The issue's command: the same build pushed to a registry gives the same digest,
    // which the registry then serves.
    let Some(registry) = registry_harness::registry_process::RegistryProcess::start() else {
        return;
    };
    let reference = format!("{}/app:1", registry.addr);
    let pushed = xbake_on_file(
        As::Me,
        &build_f,
        &["--cache-dir", &cache_of("c1"), "--push", &reference],
    );
    assert_eq!(pushed, first);
    let Some(served) = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{reference}"),
    ]) else {
        return;
    };
    assert_eq!(format!("sha256:{}", sha256_hex(&served)), first);
    // `xbake verify FILE` rebuilds from the file (its context given) and agrees.
    let against = format!("oci:{}:latest", scratch.path().join("o1").display());
    let verify = [
        "verify",
        file.to_str().unwrap(),
        "--context",
        dir.to_str().unwrap(),
    ];
    xbake_on_file(
        As::Me,
        &verify,
        &["--cache-dir", &cache_of("c4"), "--against", &against],
    );
}

#[test]
fn users_by_name_their_groups_and_workdirs_are_looked_up_in_the_image() {
    if !emulation_ready() {
        return;
    }
    let scratch = Scratch::new();
    let dockerfile = "FROM rootfs:bases/busybox-${TARGETARCH}${TARGETVARIANT}.tar.gz
RUN echo 'app:x:1500:1500::/home/app:/bin/sh' >> /etc/passwd && printf 'app:x:1500:\\nops:x:1700:\\ntools:x:1800:root,app\\n' >> /etc/group && mkdir -p /home/app && chown app /home/app
COPY --chown=app:ops files/app.conf /home/app/config.ini
COPY --chown=app files/app.conf /home/app/user-only.ini
COPY --chown=1600 files/app.conf /srv/numeric
USER app
RUN id > /home/app/whoami
WORKDIR /srv/work/app
RUN pwd > /home/app/pwd
USER app:ops
RUN id > /home/app/whoami-ops
";
    let dir = context(&scratch, "users", "Dockerfile", dockerfile);
    xbake_ok(
        &dir,
        &["build", ".", "--platform", "arm64", "-o", "oci:out"],
        &[],
    );
    let (_, images) = read_layout(&dir.join("out"), "latest");
    let owner = |path: &str| {
        let (uid, gid, _) = images[0].meta[path];
        (uid, gid)
    };
    assert_eq!(owner("home/app/config.ini"), (1500, 1700));
    // A user without a group: its uid is the gid too, as Docker documents.
    assert_eq!(owner("home/app/user-only.ini"), (1500, 1500));
    assert_eq!(owner("srv/numeric"), (1600, 1600));
    // The passwd entry's group, and the user's memberships as supplementary groups
    // (runc's rule); an explicit group alone sets none.
    assert_eq!(
        file_text(&images[0], "home/app/whoami"),
        "uid=1500(app) gid=1500(app) groups=1800(tools)\n"
    );
    assert_eq!(
        file_text(&images[0], "home/app/whoami-ops"),
        "uid=1500(app) gid=1700(ops)\n"
    );
    // WORKDIR made its folder and the missing parents, for the USER in effect.
    assert_eq!(file_text(&images[0], "home/app/pwd"), "/srv/work/app\n");
    for folder in ["srv/work", "srv/work/app"] {
        assert_eq!(images[0].meta[folder], (1500, 1500, 0o755), "{folder}");
    }
    // The rootfs base sets no PATH: the config gets BuildKit's default.
    assert_eq!(
        images[0].config["config"]["Env"],
        serde_json::json!(["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"])
    );

    std::fs::write(
        dir.join("Dockerfile"),
        "FROM rootfs:bases/busybox-${TARGETARCH}${TARGETVARIANT}.tar.gz\nCOPY --chown=ghost files/app.conf /x\n",
    )
    .unwrap();
    let out = xbake(
        As::Me,
        &dir,
        &["build", ".", "--platform", "arm64", "-o", "oci:out2"],
        &[],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("--chown=ghost: user \"ghost\" is not in the image's /etc/passwd"),
        "{}",
        text(&out)
    );
    assert!(!dir.join("out2").exists());
}

#[test]
fn copy_heredocs_write_files_with_their_modes_and_owners() {
    if !emulation_ready() {
        return;
    }
    let scratch = Scratch::new();
    let dockerfile = "FROM rootfs:bases/busybox-${TARGETARCH}${TARGETVARIANT}.tar.gz
ARG PORT=8080
COPY <<EOF /etc/app.conf
listen = $PORT \\$kept
EOF
COPY --chmod=0755 --chown=1000:1000 <<-\"EOT\" /usr/local/bin/start
\t#!/bin/sh
\techo \"port $PORT\"
\tEOT
COPY <<one.txt <<two.txt /srv/
first
one.txt
second
two.txt
RUN /usr/local/bin/start > /started && cat /srv/one.txt /srv/two.txt > /both
";
    let dir = context(&scratch, "heredocs", "Dockerfile", dockerfile);
    xbake_ok(
        &dir,
        &[
            "build",
            ".",
            "--platform",
            "arm64",
            "--build-arg",
            "PORT=9000",
            "-o",
            "oci:out",
        ],
        &[],
    );
    let (_, images) = read_layout(&dir.join("out"), "latest");
    let img = &images[0];
    assert_eq!(file_text(img, "etc/app.conf"), "listen = 9000 $kept\n");
    assert_eq!(
        file_text(img, "usr/local/bin/start"),
        "#!/bin/sh\necho \"port $PORT\"\n"
    );
    let (uid, gid, mode) = img.meta["usr/local/bin/start"];
    assert_eq!((uid, gid, mode & 0o7777), (1000, 1000, 0o755));
    assert_eq!(img.meta["etc/app.conf"].2 & 0o7777, 0o644);
    // The script ran with the build's environment: the ARG is in it.
    assert_eq!(file_text(img, "started"), "port 9000\n");
    assert_eq!(file_text(img, "both"), "first\nsecond\n");
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn add_unpacks_local_archives_and_copies_other_files() {
    use common::hostile_tar::RawTar;
    let scratch = Scratch::new();
    let dir = scratch.path().join("add");
    std::fs::create_dir_all(&dir).unwrap();
    let vendor = gzip(
        &RawTar::new()
            .dir("lib/")
            .file("lib/v.txt", b"vendored\n")
            .finish(),
    );
    let not_a_tar = gzip(b"just text, gzipped\n");
    std::fs::write(dir.join("vendor.tar.gz"), &vendor).unwrap();
    std::fs::write(
        dir.join("plain.tar"),
        RawTar::new().file("p.txt", b"plain\n").finish(),
    )
    .unwrap();
    std::fs::write(dir.join("notes.gz"), &not_a_tar).unwrap();
    std::fs::write(
        dir.join("escape.tar"),
        RawTar::new().file("../../escaped", b"x").finish(),
    )
    .unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM scratch\nADD vendor.tar.gz /opt/\nADD plain.tar notes.gz /srv/\nCOPY vendor.tar.gz /kept/\n",
    )
    .unwrap();
    xbake_ok(&dir, &["build", ".", "-o", "oci:out"], &[]);
    let (_, images) = read_layout(&dir.join("out"), "latest");
    let img = &images[0];
    assert_eq!(file_text(img, "opt/lib/v.txt"), "vendored\n");
    assert_eq!(file_text(img, "srv/p.txt"), "plain\n");
    // Not a tar inside: copied as it is, as Docker's ADD does; COPY never unpacks.
    assert_eq!(img.files["srv/notes.gz"], not_a_tar);
    assert_eq!(img.files["kept/vendor.tar.gz"], vendor);
    let history = img.config["history"].to_string();
    assert!(history.contains("ADD vendor.tar.gz /opt/"), "{history}");

    // An archive whose entries climb out of the destination is refused, and nothing
    // is written.
    std::fs::write(dir.join("Dockerfile"), "FROM scratch\nADD escape.tar /x/\n").unwrap();
    let out = xbake(As::Me, &dir, &["build", ".", "-o", "oci:out2"], &[]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "copying to /x: layer entry \"../../escaped\": unsafe path \"../../escaped\": has a \"..\" component"
        ),
        "{}",
        text(&out)
    );
    assert!(!dir.join("out2").exists());
    assert!(!scratch.path().join("escaped").exists());
}

/// Serves `body` for every request on loopback, for as long as the test runs.
fn serve(body: &'static [u8]) -> String {
    use std::io::{BufRead, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = std::io::BufReader::new(&stream);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let mut stream = &stream;
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body);
        }
    });
    format!("http://127.0.0.1:{port}")
}

#[test]
fn add_fetches_urls_and_checks_their_checksum() {
    let scratch = Scratch::new();
    let dir = scratch.path().join("fetch");
    std::fs::create_dir_all(&dir).unwrap();
    let server = serve(b"asset\n");
    let sum = sha256_hex(b"asset\n");
    std::fs::write(
        dir.join("Dockerfile"),
        format!(
            "FROM scratch\nARG BASE={server}\nADD --checksum=sha256:{sum} ${{BASE}}/files/asset.txt /opt/\nADD --chmod=644 $BASE/files/asset.txt?v=1 /opt/named.txt\n"
        ),
    )
    .unwrap();
    let (first, err) = xbake_ok(&dir, &["build", ".", "-o", "oci:out"], &[]);
    assert!(
        err.contains(&format!("fetching {server}/files/asset.txt")),
        "{err}"
    );
    let (_, images) = read_layout(&dir.join("out"), "latest");
    let img = &images[0];
    assert_eq!(file_text(img, "opt/asset.txt"), "asset\n");
    assert_eq!(
        img.meta["opt/asset.txt"].2 & 0o7777,
        0o600,
        "Docker's mode for a fetched file"
    );
    assert_eq!(file_text(img, "opt/named.txt"), "asset\n");
    assert_eq!(img.meta["opt/named.txt"].2 & 0o7777, 0o644);
    // Cached: the checksummed step is not fetched again; the other is, to know its content.
    let (again, err) = xbake_ok(&dir, &["build", ".", "-o", "oci:out"], &[]);
    assert_eq!(again, first);
    assert_eq!(steps_line(&err), "1 platform: 0 steps run, 2 cached");
    let fetches: Vec<&str> = err.lines().filter(|l| l.contains("fetching ")).collect();
    assert_eq!(fetches.len(), 1, "{err}");
    assert!(fetches[0].ends_with("/files/asset.txt?v=1"), "{err}");

    let wrong = "0".repeat(64);
    std::fs::write(
        dir.join("Dockerfile"),
        format!("FROM scratch\nADD --checksum=sha256:{wrong} {server}/asset.txt /x\n"),
    )
    .unwrap();
    let out = xbake(As::Me, &dir, &["build", ".", "-o", "oci:out2"], &[]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!(
            "{server}/asset.txt: --checksum=sha256:{wrong} was given, but the download is sha256:{sum}"
        )),
        "{}",
        text(&out)
    );
    assert!(!dir.join("out2").exists());
}

#[test]
fn onbuild_triggers_are_recorded_and_run_by_the_image_built_on_them() {
    if !emulation_ready() {
        return;
    }
    let scratch = Scratch::new();
    let base = context(
        &scratch,
        "base",
        "Dockerfile",
        "FROM rootfs:bases/busybox-${TARGETARCH}${TARGETVARIANT}.tar.gz
WORKDIR /app
ONBUILD COPY data.txt /app/
ONBUILD RUN ls /app > /app/manifest.txt
CMD [\"cat\", \"/app/manifest.txt\"]
",
    );
    xbake_ok(
        &base,
        &["build", ".", "--platform", "arm64", "-o", "oci:out:1"],
        &[],
    );
    let (_, images) = read_layout(&base.join("out"), "1");
    assert_eq!(
        images[0].config["config"]["OnBuild"],
        serde_json::json!(["COPY data.txt /app/", "RUN ls /app > /app/manifest.txt"])
    );
    assert!(
        !images[0].files.contains_key("app/manifest.txt"),
        "a stage does not run its own triggers"
    );

    let child = scratch.path().join("child");
    std::fs::create_dir_all(&child).unwrap();
    std::fs::write(child.join("data.txt"), "the child's data\n").unwrap();
    std::fs::write(
        child.join("Dockerfile"),
        format!(
            "FROM oci:{}:1\nLABEL stage=child\n",
            base.join("out").display()
        ),
    )
    .unwrap();
    let (_, err) = xbake_ok(
        &child,
        &["build", ".", "--platform", "arm64", "-o", "oci:out"],
        &[],
    );
    assert!(err.contains("[arm64 1/2] COPY data.txt /app/"), "{err}");
    let (_, images) = read_layout(&child.join("out"), "latest");
    let img = &images[0];
    assert_eq!(file_text(img, "app/data.txt"), "the child's data\n");
    // The shell makes the file before ls runs, so ls lists it too.
    assert_eq!(
        file_text(img, "app/manifest.txt"),
        "data.txt\nmanifest.txt\n"
    );
    // Run, so not handed on to grandchildren (as in Docker).
    assert!(
        img.config["config"].get("OnBuild").is_none(),
        "{}",
        img.config
    );
    assert_eq!(img.config["config"]["Labels"]["stage"], "child");
}

#[test]
fn dockerignore_keeps_files_out_of_copy_dot_with_its_exceptions() {
    let scratch = Scratch::new();
    let dir = scratch.path().join("ignore");
    for (path, text) in [
        ("Dockerfile", "FROM scratch\nCOPY . /ctx/\n"),
        (
            ".dockerignore",
            "# logs and the build folder stay out, but keep.log and build/keep/ go in\n*.log\n!keep.log\nbuild\n!build/keep\nDockerfile\n",
        ),
        ("debug.log", "a\n"),
        ("keep.log", "k\n"),
        ("build/drop/x", "x\n"),
        ("build/keep/y", "y\n"),
        ("src/main.c", "int main;\n"),
    ] {
        let file = dir.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, text).unwrap();
    }
    xbake_ok(&dir, &["build", ".", "-o", "oci:out"], &[]);
    let (_, images) = read_layout(&dir.join("out"), "latest");
    let files: Vec<&str> = images[0].files.keys().map(String::as_str).collect();
    // The Dockerfile is read even though the ignore file leaves it out of the context,
    // and the build's own cache (here inside the context) is never part of it.
    assert_eq!(
        files,
        [
            "ctx/.dockerignore",
            "ctx/build/keep/y",
            "ctx/keep.log",
            "ctx/src/main.c"
        ]
    );
}

#[test]
fn dockerfile_errors_name_the_line_and_write_nothing() {
    let scratch = Scratch::new();
    let cases = [
        (
            "FROM scratch\nCOPY --chown='a b' a /a\n",
            "Dockerfile:2: COPY: --chown=a b: expected user[:group], by name or number",
        ),
        (
            "FROM scratch\nRUN --mount=type=cache,targt=/x true\n",
            "Dockerfile:2: RUN: --mount type=cache: unknown field \"targt\"",
        ),
        (
            "RUN true\n",
            "Dockerfile:1: RUN: the first instruction must be FROM",
        ),
        (
            "FROM scratch\nFOO bar\n",
            "Dockerfile:2: FOO: unknown instruction `FOO`",
        ),
        (
            "FROM scratch\nRUN <<EOF\nno end\n",
            "Dockerfile:2: heredoc `EOF` is not terminated",
        ),
    ];
    for (i, (text, message)) in cases.iter().enumerate() {
        let dir = scratch.path().join(format!("bad{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("Dockerfile"), text).unwrap();
        let out = xbake(As::Me, &dir, &["build", ".", "-o", "oci:out"], &[]);
        assert!(!out.status.success(), "{text}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(message),
            "{text}\nwanted: {message}\n{stderr}"
        );
        assert!(!dir.join("out").exists(), "no output after an error");
    }
    let empty = scratch.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = xbake(
        As::Me,
        Path::new("/"),
        &["build", empty.to_str().unwrap()],
        &[],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("has no Dockerfile, Containerfile, xbake.yaml: name the file with -f"),
        "{}",
        text(&out)
    );
}
