//! The image being built, as plain data: inherited from the base, changed by each step,
//! and finally rendered into an OCI config and manifest. Pure: no I/O.

use super::timefmt::rfc3339;
use crate::image::{ImageError, descriptor};
use crate::platform::Platform;
use crate::recipe::{ConfigSpec, Healthcheck};
use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, HistoryBuilder, ImageConfiguration, ImageConfigurationBuilder,
    ImageManifest, ImageManifestBuilder, MediaType, Os, RootFsBuilder, SCHEMA_VERSION,
};
use std::collections::{BTreeMap, BTreeSet};

/// History comment marking entries this tool wrote (BuildKit writes its own).
pub const HISTORY_COMMENT: &str = "xbake.recipe.v1";

pub use crate::image::Layer;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    /// None keeps a base entry's own time.
    pub created: Option<String>,
    pub created_by: String,
    pub comment: Option<String>,
    pub empty_layer: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageState {
    pub env: Vec<(String, String)>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub labels: BTreeMap<String, String>,
    pub exposed_ports: BTreeSet<String>,
    pub volumes: BTreeSet<String>,
    pub stop_signal: Option<String>,
    /// The config's `author`, inherited from the base as docker does.
    pub author: Option<String>,
    /// Docker's extensions of the config, inherited from a base image as docker does
    /// (read apart from oci-spec's config: source/docker_config.rs).
    pub healthcheck: Option<Healthcheck>,
    pub shell: Option<Vec<String>>,
    /// Docker's `OnBuild` (the ONBUILD triggers for images built on this one). A base's
    /// are run by the Dockerfile built on it, not inherited, as in Docker.
    pub onbuild: Vec<String>,
    /// On the image manifest.
    pub annotations: BTreeMap<String, String>,
    pub layers: Vec<Layer>,
    pub history: Vec<HistoryEntry>,
}

/// The image config as written: OCI's fields plus the Docker extensions docker buildx
/// writes into `config` (`Healthcheck`, `Shell`), which oci-spec's `Config` cannot
/// hold. Serialises to exactly the OCI config's JSON when there are none, so images
/// without them keep their digests.
#[derive(Clone, Debug)]
pub struct ImageConfig {
    pub oci: ImageConfiguration,
    healthcheck: Option<Healthcheck>,
    shell: Option<Vec<String>>,
    onbuild: Vec<String>,
}

impl ImageConfig {
    /// The Docker fields, in the names and units docker writes them: durations as
    /// integer nanoseconds, zero values left out (Go's `omitempty`).
    fn extensions(&self) -> serde_json::Map<String, serde_json::Value> {
        use serde_json::{Value, json};
        let mut fields = serde_json::Map::new();
        if let Some(h) = &self.healthcheck {
            let mut check = serde_json::Map::new();
            if !h.test.is_empty() {
                check.insert("Test".into(), json!(h.test));
            }
            for (name, value) in [
                ("Interval", h.interval),
                ("Timeout", h.timeout),
                ("StartPeriod", h.start_period),
                ("StartInterval", h.start_interval),
                ("Retries", u64::from(h.retries)),
            ] {
                if value != 0 {
                    check.insert(name.into(), json!(value));
                }
            }
            fields.insert("Healthcheck".into(), Value::Object(check));
        }
        if let Some(shell) = self.shell.as_ref().filter(|s| !s.is_empty()) {
            fields.insert("Shell".into(), json!(shell));
        }
        if !self.onbuild.is_empty() {
            fields.insert("OnBuild".into(), json!(self.onbuild));
        }
        fields
    }
}

impl serde::Serialize for ImageConfig {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let mut tree = serde_json::to_value(&self.oci).map_err(S::Error::custom)?;
        let extensions = self.extensions();
        if !extensions.is_empty() {
            let runtime = tree
                .as_object_mut()
                .ok_or_else(|| S::Error::custom("an image config is a JSON object"))?
                .entry("config")
                .or_insert_with(|| serde_json::Value::Object(Default::default()));
            let runtime = runtime
                .as_object_mut()
                .ok_or_else(|| S::Error::custom("an image config's config is a JSON object"))?;
            runtime.extend(extensions);
        }
        tree.serialize(serializer)
    }
}

impl ImageState {
    /// The state a stage built on `base` starts in: its config and layers, and for a
    /// rootfs tarball (no history of its own) one entry saying where the layer came from.
    pub fn from_base(base: &crate::source::BaseImage, from_text: &str, epoch: i64) -> ImageState {
        let mut state = ImageState::from_base_config(base.config.as_ref());
        state.healthcheck = base.docker.healthcheck.clone();
        state.shell = base.docker.shell.clone();
        state.layers = base.layers.clone();
        if base.config.is_none() && !base.layers.is_empty() {
            state.history.push(HistoryEntry {
                created: Some(rfc3339(epoch)),
                created_by: format!("FROM {from_text}"),
                comment: Some(HISTORY_COMMENT.into()),
                empty_layer: false,
            });
        }
        state
    }

    /// Starts from a base image's configuration (what `FROM` inherits in a Dockerfile).
    pub fn from_base_config(config: Option<&ImageConfiguration>) -> ImageState {
        let mut state = ImageState::default();
        let Some(config) = config else {
            return state;
        };
        if let Some(c) = config.config() {
            for entry in c.env().iter().flatten() {
                let (k, v) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
                state.set_env(k, v);
            }
            state.workdir = c.working_dir().clone().filter(|w| !w.is_empty());
            state.user = c.user().clone().filter(|u| !u.is_empty());
            state.entrypoint = c.entrypoint().clone();
            state.cmd = c.cmd().clone();
            state.labels = c.labels().clone().unwrap_or_default().into_iter().collect();
            state.exposed_ports = c.exposed_ports().iter().flatten().cloned().collect();
            state.volumes = c.volumes().iter().flatten().cloned().collect();
            state.stop_signal = c.stop_signal().clone();
        }
        state.author = config.author().clone().filter(|a| !a.is_empty());
        state.history = config
            .history()
            .iter()
            .flatten()
            .map(|h| HistoryEntry {
                created: h.created().clone(),
                created_by: h.created_by().clone().unwrap_or_default(),
                comment: h.comment().clone(),
                empty_layer: h.empty_layer().unwrap_or(false),
            })
            .collect();
        state
    }

    /// Sets a variable, replacing an earlier value in place (Docker keeps ENV order).
    pub fn set_env(&mut self, key: &str, value: &str) {
        match self.env.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.to_string(),
            None => self.env.push((key.to_string(), value.to_string())),
        }
    }

    /// A layer made by this build.
    pub fn push_layer(&mut self, layer: Layer, created_by: String, epoch: i64) {
        self.layers.push(layer);
        self.history.push(HistoryEntry {
            created: Some(rfc3339(epoch)),
            created_by,
            comment: Some(HISTORY_COMMENT.into()),
            empty_layer: false,
        });
    }

    /// A step that changed only the configuration, or nothing at all.
    pub fn push_empty(&mut self, created_by: String, epoch: i64) {
        self.history.push(HistoryEntry {
            created: Some(rfc3339(epoch)),
            created_by,
            comment: Some(HISTORY_COMMENT.into()),
            empty_layer: true,
        });
    }

    /// The recipe's `config:` section, over what the base had.
    pub fn apply_config(&mut self, spec: &ConfigSpec) {
        if let Some(entrypoint) = &spec.entrypoint {
            self.entrypoint = Some(entrypoint.clone());
            // As in a Dockerfile: a new ENTRYPOINT resets the inherited CMD.
            self.cmd = None;
        }
        if let Some(cmd) = &spec.cmd {
            self.cmd = Some(cmd.clone());
        }
        for (k, v) in &spec.labels {
            self.labels.insert(k.clone(), v.clone());
        }
        self.exposed_ports
            .extend(spec.exposed_ports.iter().map(|p| {
                if p.contains('/') {
                    p.clone()
                } else {
                    format!("{p}/tcp")
                }
            }));
        self.volumes.extend(spec.volumes.iter().cloned());
        if let Some(sig) = &spec.stop_signal {
            self.stop_signal = Some(sig.clone());
        }
        if let Some(user) = &spec.user {
            self.user = Some(user.clone());
        }
        if let Some(healthcheck) = &spec.healthcheck {
            self.healthcheck = Some(healthcheck.clone());
        }
        if let Some(shell) = &spec.shell {
            self.shell = Some(shell.clone());
        }
        if let Some(author) = &spec.author {
            self.author = Some(author.clone());
        }
        self.onbuild.extend(spec.onbuild.iter().cloned());
        self.annotations
            .extend(spec.manifest_annotations.iter().cloned());
    }

    /// The OCI image configuration for `platform`; `created` is the build's epoch.
    pub fn config(&self, platform: &Platform, epoch: i64) -> Result<ImageConfig, ImageError> {
        let invalid = |e: oci_spec::OciSpecError| ImageError::Invalid {
            what: "image config".into(),
            message: e.to_string(),
        };
        let mut runtime = ConfigBuilder::default();
        if !self.env.is_empty() {
            runtime = runtime.env(
                self.env
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>(),
            );
        }
        if let Some(v) = &self.entrypoint {
            runtime = runtime.entrypoint(v.clone());
        }
        if let Some(v) = &self.cmd {
            runtime = runtime.cmd(v.clone());
        }
        if let Some(v) = &self.workdir {
            runtime = runtime.working_dir(v.clone());
        }
        if let Some(v) = &self.user {
            runtime = runtime.user(v.clone());
        }
        if !self.labels.is_empty() {
            runtime = runtime.labels(
                self.labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<std::collections::HashMap<_, _>>(),
            );
        }
        if !self.exposed_ports.is_empty() {
            runtime = runtime.exposed_ports(self.exposed_ports.iter().cloned().collect::<Vec<_>>());
        }
        if !self.volumes.is_empty() {
            runtime = runtime.volumes(self.volumes.iter().cloned().collect::<Vec<_>>());
        }
        if let Some(v) = &self.stop_signal {
            runtime = runtime.stop_signal(v.clone());
        }
        let history = self
            .history
            .iter()
            .map(|h| {
                let mut b = HistoryBuilder::default().created_by(h.created_by.clone());
                if let Some(c) = &h.created {
                    b = b.created(c.clone());
                }
                if let Some(c) = &h.comment {
                    b = b.comment(c.clone());
                }
                if h.empty_layer {
                    b = b.empty_layer(true);
                }
                b.build()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid)?;
        let rootfs = RootFsBuilder::default()
            .typ("layers")
            .diff_ids(
                self.layers
                    .iter()
                    .map(|l| l.diff_id.to_string())
                    .collect::<Vec<_>>(),
            )
            .build()
            .map_err(invalid)?;
        let mut config = ImageConfigurationBuilder::default()
            .created(rfc3339(epoch))
            .architecture(Arch::from(platform.oci_arch()))
            .os(Os::from(platform.os()))
            .config(runtime.build().map_err(invalid)?)
            .rootfs(rootfs)
            .history(history);
        if let Some(variant) = platform.oci_variant() {
            config = config.variant(variant);
        }
        if let Some(author) = &self.author {
            config = config.author(author.clone());
        }
        Ok(ImageConfig {
            oci: config.build().map_err(invalid)?,
            healthcheck: self.healthcheck.clone(),
            shell: self.shell.clone(),
            onbuild: self.onbuild.clone(),
        })
    }

    /// The image manifest for this state, given its stored config.
    pub fn manifest(&self, config: &Descriptor) -> Result<ImageManifest, ImageError> {
        let layers = self
            .layers
            .iter()
            .map(|l| descriptor(MediaType::from(l.media_type.as_str()), &l.digest, l.size))
            .collect::<Result<Vec<_>, _>>()?;
        let mut manifest = ImageManifestBuilder::default()
            .schema_version(SCHEMA_VERSION)
            .media_type(MediaType::ImageManifest)
            .config(config.clone())
            .layers(layers);
        if !self.annotations.is_empty() {
            // A HashMap in oci-spec; canonical_json sorts the keys when it is written.
            manifest = manifest.annotations(
                self.annotations
                    .clone()
                    .into_iter()
                    .collect::<std::collections::HashMap<_, _>>(),
            );
        }
        manifest.build().map_err(|e| ImageError::Invalid {
            what: "image manifest".into(),
            message: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::image::canonical_json;

    fn layer(n: u8) -> Layer {
        Layer {
            digest: Digest::of(&[n]),
            size: 10 + u64::from(n),
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            diff_id: Digest::of(&[n, n]),
        }
    }

    #[test]
    fn config_records_platform_layers_history_and_runtime_settings() {
        let mut s = ImageState::default();
        s.set_env("PATH", "/bin");
        s.set_env("A", "1");
        s.set_env("PATH", "/usr/bin:/bin");
        s.push_layer(layer(1), "FROM rootfs:base.tar.gz".into(), 0);
        s.push_empty("ENV A=1".into(), 0);
        s.push_layer(layer(2), "RUN /bin/sh -c true".into(), 0);
        s.apply_config(&ConfigSpec {
            entrypoint: Some(vec!["/bin/sh".into()]),
            cmd: Some(vec!["-c".into(), "cat /arch".into()]),
            labels: vec![("b".into(), "2".into()), ("a".into(), "1".into())],
            exposed_ports: vec!["8080".into(), "53/udp".into()],
            stop_signal: Some("SIGTERM".into()),
            volumes: vec![],
            user: None,
            ..Default::default()
        });
        let arm: Platform = "arm/v6".parse().unwrap();
        let json = String::from_utf8(
            canonical_json(&s.config(&arm, 1_700_000_000).unwrap(), "c").unwrap(),
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["architecture"], "arm");
        assert_eq!(v["variant"], "v6");
        assert_eq!(v["os"], "linux");
        assert_eq!(v["created"], "2023-11-14T22:13:20Z");
        assert_eq!(
            v["config"]["Env"],
            serde_json::json!(["PATH=/usr/bin:/bin", "A=1"])
        );
        assert_eq!(v["config"]["Cmd"], serde_json::json!(["-c", "cat /arch"]));
        assert_eq!(
            v["config"]["ExposedPorts"],
            serde_json::json!({"53/udp": {}, "8080/tcp": {}})
        );
        assert_eq!(v["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
        assert_eq!(v["history"].as_array().unwrap().len(), 3);
        assert_eq!(v["history"][1]["empty_layer"], true);
        assert!(v["history"][0].get("empty_layer").is_none());
        let arm64: Platform = "arm64".parse().unwrap();
        let v64: serde_json::Value = serde_json::to_value(s.config(&arm64, 0).unwrap()).unwrap();
        assert!(v64.get("variant").is_none());
    }

    #[test]
    fn a_new_entrypoint_resets_the_inherited_cmd() {
        let mut s = ImageState {
            cmd: Some(vec!["/bin/bash".into()]),
            ..Default::default()
        };
        s.apply_config(&ConfigSpec {
            entrypoint: Some(vec!["/app".into()]),
            cmd: None,
            labels: vec![],
            exposed_ports: vec![],
            stop_signal: None,
            volumes: vec![],
            user: None,
            ..Default::default()
        });
        assert_eq!(s.cmd, None);
    }

    fn config_text(s: &ImageState) -> String {
        let amd64: Platform = "amd64".parse().unwrap();
        String::from_utf8(canonical_json(&s.config(&amd64, 0).unwrap(), "c").unwrap()).unwrap()
    }

    #[test]
    fn without_docker_extensions_the_config_is_the_oci_config() {
        let mut s = ImageState::default();
        s.set_env("A", "1");
        s.push_layer(layer(1), "RUN x".into(), 0);
        let amd64: Platform = "amd64".parse().unwrap();
        let config = s.config(&amd64, 0).unwrap();
        assert_eq!(
            canonical_json(&config, "c").unwrap(),
            canonical_json(&config.oci, "c").unwrap()
        );
        assert!(!config_text(&s).contains("Healthcheck"));
        assert!(!config_text(&s).contains("Shell"));
    }

    #[test]
    fn healthcheck_and_shell_are_written_as_docker_writes_them() {
        let mut s = ImageState::default();
        s.apply_config(&ConfigSpec {
            healthcheck: Some(Healthcheck {
                test: vec!["CMD".into(), "/ok".into()],
                interval: 30_000_000_000,
                timeout: 0,
                start_period: 5_000_000_000,
                start_interval: 0,
                retries: 0,
            }),
            shell: Some(vec!["/bin/bash".into(), "-c".into()]),
            manifest_annotations: vec![("b".into(), "2".into()), ("a".into(), "1".into())],
            ..Default::default()
        });
        let text = config_text(&s);
        assert!(
            text.contains(
                r#""config":{"Healthcheck":{"Interval":30000000000,"StartPeriod":5000000000,"Test":["CMD","/ok"]},"Shell":["/bin/bash","-c"]}"#
            ),
            "{text}"
        );
        let none = ImageState {
            healthcheck: Some(Healthcheck {
                test: vec!["NONE".into()],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(
            config_text(&none).contains(r#""config":{"Healthcheck":{"Test":["NONE"]}}"#),
            "{}",
            config_text(&none)
        );
        let config = descriptor(MediaType::ImageConfig, &Digest::of(b"c"), 1).unwrap();
        let manifest =
            String::from_utf8(canonical_json(&s.manifest(&config).unwrap(), "m").unwrap()).unwrap();
        assert!(
            manifest.contains(r#""annotations":{"a":"1","b":"2"}"#),
            "{manifest}"
        );
        let plain = ImageState::default().manifest(&config).unwrap();
        assert!(plain.annotations().is_none());
    }
}
