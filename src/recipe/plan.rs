//! The plan: one recipe expanded for one platform, ready for the builder. Plain data,
//! plus the text each step shows in progress lines and in the image history.

use std::fmt;
use std::str::FromStr;

use super::base::BaseRef;
use super::error::Location;
use crate::platform::Platform;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The stage's name; None for the top level (the final image).
    pub stage: Option<String>,
    /// Where the steps run: the target, the build machine, or the stage's fixed one.
    pub platform: Platform,
    /// What TARGET* name: the platform being built, or for a stage that does not
    /// depend on it, the stage's own platform.
    pub target: Platform,
    pub from: BaseRef,
    /// The expanded `from:` text as written, for the history.
    pub from_text: String,
    /// Effective build args (declared defaults overridden by `--build-arg`), by name.
    pub args: Vec<(String, String)>,
    /// What RUN steps see but the image config does not keep, in a fixed order:
    /// TARGET*, BUILD*, GOOS, GOARCH, GOARM (arm only), then the build args by name.
    pub build_env: Vec<(String, String)>,
    /// The top-level `env:`, expanded, in recipe order.
    pub env: Vec<(String, String)>,
    pub workdir: Option<String>,
    pub steps: Vec<PlanStep>,
    pub config: ConfigSpec,
    pub source_date_epoch: Option<i64>,
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanStep {
    /// 1-based, as in progress lines and error messages.
    pub number: usize,
    pub location: Location,
    pub kind: StepKind,
    /// Apply the normalisation rules after this step (a run step; the recipe's
    /// `normalize:` unless the step says otherwise).
    pub normalize: bool,
    /// The shell a shell-form run step goes through (the recipe's `config: shell:`);
    /// None: `/bin/sh -c`, Docker's default.
    pub shell: Option<Vec<String>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepKind {
    Run {
        command: RunCommand,
        network: Option<Network>,
        mounts: Vec<RunMount>,
        /// A Dockerfile's ARGs declared above this step in its stage: in the step's
        /// environment (under the image's ENV) and its cache key. Empty for recipes,
        /// whose args are all in the plan's `build_env`.
        args: Vec<(String, String)>,
    },
    Copy {
        /// Where the files come from: None for the build context, else a stage or image.
        from: Option<CopyFrom>,
        /// Expanded patterns: relative to the context folder (see
        /// `resolve_copy_sources`), or with `from`, paths inside that filesystem.
        sources: Vec<String>,
        to: String,
        mode: Option<u32>,
        owner: Option<CopyOwner>,
        /// ADD's rule: a local source that is a tar archive (plain, gzip, bzip2, xz or
        /// zstd) is unpacked into `to` instead of copied.
        unpack: bool,
    },
    /// Files whose content the plan holds (a Dockerfile's `COPY <<EOF /path`), named
    /// inside `to` when it is a folder (ends with `/`, or is one already), else `to`.
    Write {
        /// (name, content), in order.
        files: Vec<(String, String)>,
        to: String,
        mode: Option<u32>,
        owner: Option<CopyOwner>,
    },
    /// A file fetched over HTTP(S) (a Dockerfile's `ADD https://…`), named after the
    /// URL's last path segment inside `to` when it is a folder, else `to`; mode 0600
    /// unless given, as Docker's ADD does. Checked against `checksum` when given.
    Fetch {
        url: String,
        checksum: Option<crate::digest::Digest>,
        to: String,
        mode: Option<u32>,
        owner: Option<CopyOwner>,
    },
    Env(Vec<(String, String)>),
    Workdir(String),
    /// A Dockerfile's WORKDIR: the working directory, made when missing (with its
    /// parents, 0755, owned by the USER in effect) as BuildKit does; a layer when it was.
    MakeWorkdir(String),
    User(String),
}

/// Who owns what a copy step writes (default 0:0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CopyOwner {
    Ids(u32, u32),
    /// `user[:group]` naming a user or group (a Dockerfile's `--chown=app:app`),
    /// resolved against the image's /etc/passwd and /etc/group when the step runs; a
    /// user without a group gives its uid as the gid too, as Docker's documentation says.
    Named(String),
}

impl fmt::Display for CopyOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CopyOwner::Ids(uid, gid) => write!(f, "{uid}:{gid}"),
            CopyOwner::Named(text) => f.write_str(text),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunCommand {
    /// Run with `/bin/sh -c` in the target image.
    Shell(String),
    /// Run as given, without a shell.
    Exec(Vec<String>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Network {
    /// A private network namespace with user-mode networking (the default when a step
    /// and the command line say nothing): the outside world, not the host's loopback.
    /// Named as buildah's and podman's `--network private`.
    Private,
    /// Share the host's network, its loopback services included.
    Host,
    /// A fresh network namespace with only loopback.
    None,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown network {0:?}; expected private, host or none")]
pub struct UnknownNetwork(pub String);

impl FromStr for Network {
    type Err = UnknownNetwork;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "private" => Ok(Network::Private),
            "host" => Ok(Network::Host),
            "none" => Ok(Network::None),
            other => Err(UnknownNetwork(other.to_string())),
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Network::Private => "private",
            Network::Host => "host",
            Network::None => "none",
        })
    }
}

/// A filesystem other than the build context that a copy step or a bind mount reads.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CopyFrom {
    /// Another stage's result, for the same target.
    Stage(String),
    /// An image's filesystem, for the stage's platform; `text` as written, expanded.
    Image { base: BaseRef, text: String },
}

impl fmt::Display for CopyFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CopyFrom::Stage(name) => f.write_str(name),
            CopyFrom::Image { text, .. } => f.write_str(text),
        }
    }
}

/// How concurrent steps share a cache mount (BuildKit's `sharing=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CacheSharing {
    /// Every step uses the same folder at once.
    #[default]
    Shared,
    /// A step that finds it in use gets a fresh one of its own.
    Private,
    /// One step at a time; the others wait.
    Locked,
}

impl CacheSharing {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheSharing::Shared => "shared",
            CacheSharing::Private => "private",
            CacheSharing::Locked => "locked",
        }
    }
}

/// A run step's mount, expanded. None of them reaches the step's layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunMount {
    /// Absolute path inside the step's filesystem.
    pub target: String,
    pub kind: RunMountKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunMountKind {
    /// A folder kept in the cache directory between builds, per id and platform.
    Cache {
        id: String,
        sharing: CacheSharing,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    /// A `--secret` given to the build, as a read-only file.
    Secret {
        id: String,
        required: bool,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    /// A folder or file of a stage, an image or the build context (None), read-only
    /// unless `readwrite` (then the step's writes are thrown away).
    Bind {
        from: Option<CopyFrom>,
        source: String,
        readwrite: bool,
    },
    /// An empty tmpfs.
    Tmpfs { size: Option<u64> },
}

impl RunMount {
    /// BuildKit's `--mount=` text, for progress lines, history and the step key. A
    /// secret shows only its id; its bytes are never part of any text.
    pub fn describe(&self) -> String {
        let target = &self.target;
        match &self.kind {
            RunMountKind::Cache {
                id,
                sharing,
                mode,
                uid,
                gid,
            } => {
                let mut text = format!("--mount=type=cache,target={target}");
                if id != target {
                    text.push_str(&format!(",id={id}"));
                }
                if *sharing != CacheSharing::Shared {
                    text.push_str(&format!(",sharing={}", sharing.as_str()));
                }
                if *mode != 0o755 {
                    text.push_str(&format!(",mode={mode:04o}"));
                }
                if (*uid, *gid) != (0, 0) {
                    text.push_str(&format!(",uid={uid},gid={gid}"));
                }
                text
            }
            RunMountKind::Secret { id, required, .. } => {
                let mut text = format!("--mount=type=secret,id={id},target={target}");
                if *required {
                    text.push_str(",required");
                }
                text
            }
            RunMountKind::Bind {
                from,
                source,
                readwrite,
            } => {
                let mut text = String::from("--mount=type=bind");
                if let Some(from) = from {
                    text.push_str(&format!(",from={from}"));
                }
                text.push_str(&format!(",source={source},target={target}"));
                if *readwrite {
                    text.push_str(",rw");
                }
                text
            }
            RunMountKind::Tmpfs { size } => match size {
                Some(size) => format!("--mount=type=tmpfs,target={target},size={size}"),
                None => format!("--mount=type=tmpfs,target={target}"),
            },
        }
    }
}

/// The image config fields the recipe sets directly.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigSpec {
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    /// Sorted by key, so the config's bytes do not depend on YAML order.
    pub labels: Vec<(String, String)>,
    /// Normalised to `PORT/proto`.
    pub exposed_ports: Vec<String>,
    pub stop_signal: Option<String>,
    pub volumes: Vec<String>,
    /// The last `user:` step, as docker's USER leaves it in the config.
    pub user: Option<String>,
    pub healthcheck: Option<Healthcheck>,
    /// Docker's `Shell`: what shell-form run steps and config commands go through.
    pub shell: Option<Vec<String>>,
    /// Docker's `OnBuild`: a Dockerfile's ONBUILD triggers, as written, for the images
    /// built on this one.
    pub onbuild: Vec<String>,
    /// The image's `author` (a Dockerfile's MAINTAINER, as docker and buildah record it).
    pub author: Option<String>,
    /// Annotations on this platform's image manifest, sorted by key.
    pub manifest_annotations: Vec<(String, String)>,
    /// Annotations on the image index, sorted by key. Expanded per platform like every
    /// value; the builder checks that all platforms agree, since there is one index.
    pub index_annotations: Vec<(String, String)>,
}

impl Plan {
    /// The environment after this stage, given the one its base leaves: what a stage
    /// built on this one starts with, and what its image config records.
    pub fn final_env(&self, base_env: &[(String, String)]) -> Vec<(String, String)> {
        let mut env = base_env.to_vec();
        let mut set = |name: &str, value: &str| match env.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value.to_string(),
            None => env.push((name.to_string(), value.to_string())),
        };
        for (name, value) in &self.env {
            set(name, value);
        }
        for step in &self.steps {
            if let StepKind::Env(vars) = &step.kind {
                for (name, value) in vars {
                    set(name, value);
                }
            }
        }
        env
    }
}

/// Docker's HEALTHCHECK, as the image config's `Healthcheck` holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Healthcheck {
    /// `["CMD", program, args…]`, `["CMD-SHELL", command]` or `["NONE"]`.
    pub test: Vec<String>,
    /// Durations in nanoseconds; 0 is unset (the runtime's default) and is not written.
    pub interval: u64,
    pub timeout: u64,
    pub start_period: u64,
    pub start_interval: u64,
    /// 0 is unset.
    pub retries: u32,
}

/// `COPY [--from=…|--checksum=…] [--chown=…] [--chmod=…] SOURCES… TO`, as the history
/// and progress lines show copy-like steps.
fn copy_text(
    keyword: &str,
    first_flag: Option<String>,
    owner: &Option<CopyOwner>,
    mode: Option<u32>,
    sources: impl IntoIterator<Item = String>,
    to: &str,
) -> String {
    let mut words = vec![keyword.to_string()];
    words.extend(first_flag);
    words.extend(owner.as_ref().map(|owner| format!("--chown={owner}")));
    words.extend(mode.map(|mode| format!("--chmod={mode:04o}")));
    words.extend(sources);
    words.push(to.to_string());
    words.join(" ")
}

/// The last path segment of a URL: the name a fetched file gets in a folder, as in
/// Docker's ADD.
pub fn url_file_name(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = rest.split(['?', '#']).next().unwrap_or_default();
    let (_, path) = path.split_once('/')?;
    path.rsplit('/')
        .next()
        .filter(|name| !name.is_empty() && *name != "." && *name != "..")
}

/// Docker's default shell for shell-form commands on Linux.
pub const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

impl PlanStep {
    /// What a shell-form run step executes: its shell, then the script.
    pub fn shell_argv(&self, script: &str) -> Vec<String> {
        let mut argv: Vec<String> = match &self.shell {
            Some(shell) => shell.clone(),
            None => DEFAULT_SHELL.iter().map(|s| s.to_string()).collect(),
        };
        argv.push(script.to_string());
        argv
    }

    /// Progress text: `RUN uname -m > /arch`, `COPY files/a /opt/a`, `ENV A=1`.
    pub fn describe(&self) -> String {
        self.render(false)
    }

    /// Docker-style history text; differs from [`PlanStep::describe`] only in showing
    /// the shell a shell-form RUN goes through (`RUN /bin/sh -c uname -m > /arch`).
    pub fn created_by(&self) -> String {
        self.render(true)
    }

    fn render(&self, show_shell: bool) -> String {
        match &self.kind {
            StepKind::Run {
                command,
                network,
                mounts,
                args,
            } => {
                let mut text = String::from("RUN ");
                // As BuildKit's history shows a step's ARGs: `|2 A=1 B=2 `.
                if show_shell && !args.is_empty() {
                    text.push_str(&format!("|{} ", args.len()));
                    for (name, value) in args {
                        text.push_str(&format!("{name}={value} "));
                    }
                }
                for mount in mounts {
                    text.push_str(&mount.describe());
                    text.push(' ');
                }
                // Only `none` is shown: history text is part of the image's bytes, and
                // `host` (the default once) and `private` (the default now) both leave
                // the step online, so neither changes the digests of existing images.
                if *network == Some(Network::None) {
                    text.push_str("--network=none ");
                }
                match command {
                    // As docker's history shows it: `/bin/sh -c uname -m > /arch`.
                    RunCommand::Shell(script) if show_shell => {
                        text.push_str(&self.shell_argv(script).join(" "));
                    }
                    RunCommand::Shell(script) => text.push_str(script),
                    RunCommand::Exec(argv) => text.push_str(&json_array(argv)),
                }
                text
            }
            StepKind::Copy {
                from,
                sources,
                to,
                mode,
                owner,
                unpack,
            } => {
                let keyword = if *unpack { "ADD" } else { "COPY" };
                let from = from.as_ref().map(|from| format!("--from={from}"));
                copy_text(keyword, from, owner, *mode, sources.iter().cloned(), to)
            }
            StepKind::Write {
                files,
                to,
                mode,
                owner,
            } => {
                let names = files.iter().map(|(name, _)| format!("<<{name}"));
                copy_text("COPY", None, owner, *mode, names, to)
            }
            StepKind::Fetch {
                url,
                checksum,
                to,
                mode,
                owner,
            } => {
                let checksum = checksum.as_ref().map(|c| format!("--checksum={c}"));
                copy_text("ADD", checksum, owner, *mode, [url.clone()], to)
            }
            StepKind::Env(vars) => {
                let pairs: Vec<String> = vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("ENV {}", pairs.join(" "))
            }
            StepKind::Workdir(dir) | StepKind::MakeWorkdir(dir) => format!("WORKDIR {dir}"),
            StepKind::User(user) => format!("USER {user}"),
        }
    }
}

/// `["/bin/echo","exec form"]`: the JSON form docker shows for exec-form commands.
fn json_array(argv: &[String]) -> String {
    // Serialising a slice of strings cannot fail; the fallback keeps this total anyway.
    serde_json::to_string(argv).unwrap_or_else(|_| format!("{argv:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn step(kind: StepKind) -> PlanStep {
        PlanStep {
            number: 1,
            location: Location {
                file: PathBuf::from("r.yaml"),
                line: 1,
                column: 1,
            },
            normalize: false,
            kind,
            shell: None,
        }
    }

    fn strings(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn describe_and_created_by() {
        let cases = [
            (
                StepKind::Run {
                    command: RunCommand::Shell("uname -m > /arch".into()),
                    network: None,
                    mounts: vec![],
                    args: Vec::new(),
                },
                "RUN uname -m > /arch",
                "RUN /bin/sh -c uname -m > /arch",
            ),
            (
                StepKind::Run {
                    command: RunCommand::Exec(strings(&["/bin/echo", "exec form"])),
                    network: Some(Network::Host),
                    mounts: vec![],
                    args: Vec::new(),
                },
                r#"RUN ["/bin/echo","exec form"]"#,
                r#"RUN ["/bin/echo","exec form"]"#,
            ),
            (
                StepKind::Run {
                    command: RunCommand::Exec(strings(&["/bin/echo", "exec form"])),
                    network: Some(Network::Private),
                    mounts: vec![],
                    args: Vec::new(),
                },
                r#"RUN ["/bin/echo","exec form"]"#,
                r#"RUN ["/bin/echo","exec form"]"#,
            ),
            (
                StepKind::Run {
                    command: RunCommand::Shell("ping -c1 x".into()),
                    network: Some(Network::None),
                    mounts: vec![],
                    args: Vec::new(),
                },
                "RUN --network=none ping -c1 x",
                "RUN --network=none /bin/sh -c ping -c1 x",
            ),
            (
                StepKind::Copy {
                    from: None,
                    sources: strings(&["files/hello.txt"]),
                    to: "/opt/hello.txt".into(),
                    mode: None,
                    owner: None,
                    unpack: false,
                },
                "COPY files/hello.txt /opt/hello.txt",
                "COPY files/hello.txt /opt/hello.txt",
            ),
            (
                StepKind::Copy {
                    from: None,
                    sources: strings(&["a", "b/*.txt"]),
                    to: "/opt/".into(),
                    mode: Some(0o644),
                    owner: Some(CopyOwner::Ids(1000, 1000)),
                    unpack: false,
                },
                "COPY --chown=1000:1000 --chmod=0644 a b/*.txt /opt/",
                "COPY --chown=1000:1000 --chmod=0644 a b/*.txt /opt/",
            ),
            (
                StepKind::Copy {
                    from: Some(CopyFrom::Stage("build".into())),
                    sources: strings(&["/out/hello"]),
                    to: "/usr/local/bin/hello".into(),
                    mode: None,
                    owner: None,
                    unpack: false,
                },
                "COPY --from=build /out/hello /usr/local/bin/hello",
                "COPY --from=build /out/hello /usr/local/bin/hello",
            ),
            (
                StepKind::Run {
                    command: RunCommand::Shell("go build".into()),
                    network: None,
                    mounts: vec![
                        RunMount {
                            target: "/root/.cache/go-build".into(),
                            kind: RunMountKind::Cache {
                                id: "/root/.cache/go-build".into(),
                                sharing: CacheSharing::Locked,
                                mode: 0o755,
                                uid: 0,
                                gid: 0,
                            },
                        },
                        RunMount {
                            target: "/run/secrets/token".into(),
                            kind: RunMountKind::Secret {
                                id: "token".into(),
                                required: true,
                                mode: 0o400,
                                uid: 0,
                                gid: 0,
                            },
                        },
                    ],
                    args: Vec::new(),
                },
                "RUN --mount=type=cache,target=/root/.cache/go-build,sharing=locked \
                 --mount=type=secret,id=token,target=/run/secrets/token,required go build",
                "RUN --mount=type=cache,target=/root/.cache/go-build,sharing=locked \
                 --mount=type=secret,id=token,target=/run/secrets/token,required \
                 /bin/sh -c go build",
            ),
            (
                StepKind::Env(vec![
                    ("STAGE".into(), "two".into()),
                    ("B".into(), "x y".into()),
                ]),
                "ENV STAGE=two B=x y",
                "ENV STAGE=two B=x y",
            ),
            (
                StepKind::Workdir("/srv".into()),
                "WORKDIR /srv",
                "WORKDIR /srv",
            ),
            (
                StepKind::User("1000:1000".into()),
                "USER 1000:1000",
                "USER 1000:1000",
            ),
        ];
        for (kind, describe, created_by) in cases {
            let s = step(kind);
            assert_eq!(s.describe(), describe);
            assert_eq!(s.created_by(), created_by);
        }
    }

    #[test]
    fn a_recipe_shell_runs_shell_form_steps_and_shows_in_the_history() {
        let mut s = step(StepKind::Run {
            command: RunCommand::Shell("echo $0".into()),
            network: None,
            mounts: vec![],
            args: Vec::new(),
        });
        assert_eq!(
            s.shell_argv("echo $0"),
            strings(&["/bin/sh", "-c", "echo $0"])
        );
        s.shell = Some(strings(&["/bin/bash", "-eu", "-o", "pipefail", "-c"]));
        assert_eq!(
            s.shell_argv("echo $0"),
            strings(&["/bin/bash", "-eu", "-o", "pipefail", "-c", "echo $0"])
        );
        assert_eq!(s.describe(), "RUN echo $0");
        assert_eq!(s.created_by(), "RUN /bin/bash -eu -o pipefail -c echo $0");
    }

    #[test]
    fn network_parses_for_the_cli() {
        assert_eq!("private".parse(), Ok(Network::Private));
        assert_eq!("host".parse(), Ok(Network::Host));
        assert_eq!("none".parse(), Ok(Network::None));
        for n in [Network::Private, Network::Host, Network::None] {
            assert_eq!(n.to_string().parse(), Ok(n));
        }
        assert_eq!(
            "bridge".parse::<Network>(),
            Err(UnknownNetwork("bridge".into()))
        );
        assert_eq!(Network::None.to_string(), "none");
    }
}
