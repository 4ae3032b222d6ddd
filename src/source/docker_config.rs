//! The parts of a base image's config that docker writes beside OCI's fields and a
//! child image inherits (`Healthcheck`, `Shell`): oci-spec's parsed config has no place
//! for them, so they are read from the same JSON on their own.

use crate::recipe::Healthcheck;
use serde::Deserialize;

/// What a build inherits from a base image besides OCI's config.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DockerConfig {
    pub healthcheck: Option<Healthcheck>,
    /// The shell of shell-form commands, as docker's `SHELL` sets it.
    pub shell: Option<Vec<String>>,
    /// `OnBuild`: the ONBUILD triggers a Dockerfile built on this image runs first.
    pub onbuild: Vec<String>,
}

#[derive(Deserialize, Default)]
struct RawImageConfig {
    #[serde(default)]
    config: Option<RawRuntime>,
}

#[derive(Deserialize, Default)]
struct RawRuntime {
    #[serde(rename = "Healthcheck", default)]
    healthcheck: Option<RawHealthcheck>,
    #[serde(rename = "Shell", default)]
    shell: Option<Vec<String>>,
    #[serde(rename = "OnBuild", default)]
    onbuild: Option<Vec<String>>,
}

/// Docker's field names and units: durations in integer nanoseconds, each optional.
#[derive(Deserialize, Default)]
struct RawHealthcheck {
    #[serde(rename = "Test", default)]
    test: Option<Vec<String>>,
    #[serde(rename = "Interval", default)]
    interval: Option<u64>,
    #[serde(rename = "Timeout", default)]
    timeout: Option<u64>,
    #[serde(rename = "StartPeriod", default)]
    start_period: Option<u64>,
    #[serde(rename = "StartInterval", default)]
    start_interval: Option<u64>,
    #[serde(rename = "Retries", default)]
    retries: Option<u32>,
}

impl<'de> Deserialize<'de> for DockerConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = RawImageConfig::deserialize(deserializer)?;
        let runtime = raw.config.unwrap_or_default();
        Ok(DockerConfig {
            healthcheck: runtime.healthcheck.map(|h| Healthcheck {
                test: h.test.unwrap_or_default(),
                interval: h.interval.unwrap_or(0),
                timeout: h.timeout.unwrap_or(0),
                start_period: h.start_period.unwrap_or(0),
                start_interval: h.start_interval.unwrap_or(0),
                retries: h.retries.unwrap_or(0),
            }),
            // An empty list is docker's "unset" (Go's omitempty writes none).
            shell: runtime.shell.filter(|s| !s.is_empty()),
            onbuild: runtime.onbuild.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<DockerConfig, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn healthcheck_and_shell_are_read_in_dockers_names_and_units() {
        let config = parse(
            r#"{"architecture":"amd64","os":"linux","config":{"Env":["A=1"],
               "Healthcheck":{"Test":["CMD-SHELL","curl -f localhost"],"Interval":30000000000,"Retries":3},
               "Shell":["/bin/bash","-c"]},"rootfs":{"type":"layers","diff_ids":[]}}"#,
        )
        .unwrap();
        assert_eq!(
            config,
            DockerConfig {
                healthcheck: Some(Healthcheck {
                    test: vec!["CMD-SHELL".into(), "curl -f localhost".into()],
                    interval: 30_000_000_000,
                    retries: 3,
                    ..Healthcheck::default()
                }),
                shell: Some(vec!["/bin/bash".into(), "-c".into()]),
                onbuild: Vec::new(),
            }
        );
    }

    #[test]
    fn absent_null_and_empty_mean_nothing_to_inherit() {
        for json in [
            r#"{"architecture":"amd64","os":"linux"}"#,
            r#"{"config":null}"#,
            r#"{"config":{"Healthcheck":null,"Shell":null}}"#,
            r#"{"config":{"Shell":[]}}"#,
        ] {
            assert_eq!(parse(json).unwrap(), DockerConfig::default(), "{json}");
        }
    }

    #[test]
    fn mistyped_fields_are_errors() {
        for json in [
            r#"{"config":{"Shell":"/bin/bash"}}"#,
            r#"{"config":{"Healthcheck":{"Interval":-1}}}"#,
            r#"{"config":{"Healthcheck":{"Test":"CMD /ok"}}}"#,
        ] {
            assert!(parse(json).is_err(), "{json}");
        }
    }
}
