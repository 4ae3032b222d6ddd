//! The plan: one recipe expanded for one platform, ready for the builder. Plain data,
//! plus the text each step shows in progress lines and in the image history.

use std::fmt;
use std::str::FromStr;

use super::base::BaseRef;
use super::error::Location;
use crate::platform::Platform;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub platform: Platform,
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
    },
    Copy {
        /// Expanded patterns, relative to the recipe folder; see `resolve_copy_sources`.
        sources: Vec<String>,
        to: String,
        mode: Option<u32>,
        owner: Option<(u32, u32)>,
    },
    Env(Vec<(String, String)>),
    Workdir(String),
    User(String),
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
    /// Annotations on this platform's image manifest, sorted by key.
    pub manifest_annotations: Vec<(String, String)>,
    /// Annotations on the image index, sorted by key. Expanded per platform like every
    /// value; the builder checks that all platforms agree, since there is one index.
    pub index_annotations: Vec<(String, String)>,
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
            StepKind::Run { command, network } => {
                let mut text = String::from("RUN ");
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
                sources,
                to,
                mode,
                owner,
            } => {
                let mut words = vec!["COPY".to_string()];
                if let Some((uid, gid)) = owner {
                    words.push(format!("--chown={uid}:{gid}"));
                }
                if let Some(mode) = mode {
                    words.push(format!("--chmod={mode:04o}"));
                }
                words.extend(sources.iter().cloned());
                words.push(to.clone());
                words.join(" ")
            }
            StepKind::Env(vars) => {
                let pairs: Vec<String> = vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("ENV {}", pairs.join(" "))
            }
            StepKind::Workdir(dir) => format!("WORKDIR {dir}"),
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
                },
                "RUN uname -m > /arch",
                "RUN /bin/sh -c uname -m > /arch",
            ),
            (
                StepKind::Run {
                    command: RunCommand::Exec(strings(&["/bin/echo", "exec form"])),
                    network: Some(Network::Host),
                },
                r#"RUN ["/bin/echo","exec form"]"#,
                r#"RUN ["/bin/echo","exec form"]"#,
            ),
            (
                StepKind::Run {
                    command: RunCommand::Exec(strings(&["/bin/echo", "exec form"])),
                    network: Some(Network::Private),
                },
                r#"RUN ["/bin/echo","exec form"]"#,
                r#"RUN ["/bin/echo","exec form"]"#,
            ),
            (
                StepKind::Run {
                    command: RunCommand::Shell("ping -c1 x".into()),
                    network: Some(Network::None),
                },
                "RUN --network=none ping -c1 x",
                "RUN --network=none /bin/sh -c ping -c1 x",
            ),
            (
                StepKind::Copy {
                    sources: strings(&["files/hello.txt"]),
                    to: "/opt/hello.txt".into(),
                    mode: None,
                    owner: None,
                },
                "COPY files/hello.txt /opt/hello.txt",
                "COPY files/hello.txt /opt/hello.txt",
            ),
            (
                StepKind::Copy {
                    sources: strings(&["a", "b/*.txt"]),
                    to: "/opt/".into(),
                    mode: Some(0o644),
                    owner: Some((1000, 1000)),
                },
                "COPY --chown=1000:1000 --chmod=0644 a b/*.txt /opt/",
                "COPY --chown=1000:1000 --chmod=0644 a b/*.txt /opt/",
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
