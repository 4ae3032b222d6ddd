//! The SLSA Provenance v1 predicate (https://slsa.dev/provenance/v1) of one platform:
//! what an auditor needs to rebuild it — the recipe and context by digest, every base
//! by digest, the build's parameters, and the emulator that ran its steps — and what
//! `xbake verify REF` reads back. Pure: the build gathers the facts, this lays them
//! out. Deterministic: no wall-clock time unless asked for (`timestamps=true`).

use crate::digest::Digest;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The build type: how to read `externalParameters` (this file).
pub const BUILD_TYPE: &str = "urn:xbake:build-type:v1";
/// The builder: xbake itself; its version goes beside it.
pub const BUILDER_ID: &str = "urn:xbake:builder";

/// A base a stage started from or read, as the recipe named it and as it resolved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseFact {
    /// As written in the recipe (`busybox:1.36`, `rootfs:bases/x.tar.gz`).
    pub reference: String,
    /// The platform it was resolved for (`linux/arm64`).
    pub platform: String,
    /// The manifest it resolved to (images; None for a root filesystem tarball).
    pub manifest: Option<Digest>,
    /// Its layers, bottom first (a rootfs tarball: the tarball's digest).
    pub layers: Vec<Digest>,
}

/// A file of the build context a copy step read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputFact {
    /// Relative to the context folder.
    pub path: String,
    pub sha256: Digest,
    pub mode: u32,
    pub symlink: bool,
}

/// The emulator that ran the platform's steps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmulatorFact {
    pub path: String,
    pub version: String,
    pub sha256: Digest,
}

/// Parameters that change the image's bytes, as `verify` must give them again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parameters {
    /// The recipe or Dockerfile, relative to the context folder.
    pub recipe: String,
    pub recipe_sha256: Digest,
    /// `dockerfile` or `recipe`.
    pub frontend: String,
    /// `--target`.
    pub target: Option<String>,
    /// Every platform of the build, in the order asked for.
    pub platforms: Vec<String>,
    /// `--build-arg`, as given (the recipe's defaults are in the recipe).
    pub build_args: Vec<(String, String)>,
    /// The ids of `--secret`s the build was given; never their values.
    pub secrets: Vec<String>,
    pub source_date_epoch: i64,
    /// `--label`, `--annotation` (`TYPE[PLATFORM]:KEY=VALUE`), `--compression`,
    /// `--no-normalize`.
    pub labels: Vec<(String, String)>,
    pub annotations: Vec<String>,
    pub compression: String,
    pub normalize: bool,
}

/// Everything one platform's provenance says.
pub struct Facts<'a> {
    pub platform: String,
    pub parameters: &'a Parameters,
    /// sha256 over the sorted copy inputs (path, mode, content): the context as the
    /// build read it.
    pub inputs: &'a [InputFact],
    pub bases: &'a [BaseFact],
    pub emulator: Option<&'a EmulatorFact>,
    pub xbake_version: &'a str,
    /// mode=max: the output stage's steps, `N: TEXT`.
    pub steps: Option<&'a [String]>,
    /// timestamps=true: start and finish (RFC 3339).
    pub times: Option<(String, String)>,
}

/// The copy inputs by path, each once (stages read the same file more than once).
fn by_path(inputs: &[InputFact]) -> Vec<&InputFact> {
    let mut sorted: Vec<&InputFact> = inputs.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    sorted.dedup_by(|a, b| a.path == b.path);
    sorted
}

/// sha256 of the copy inputs, sorted by path: one digest for "the context as read".
pub fn context_digest(inputs: &[InputFact]) -> Digest {
    let mut text = String::new();
    for i in by_path(inputs) {
        text.push_str(&format!(
            "{:o} {} {} {}\n",
            i.mode,
            if i.symlink { "symlink" } else { "file" },
            i.sha256,
            i.path
        ));
    }
    Digest::of(text.as_bytes())
}

fn sha256(d: &Digest) -> Value {
    json!({"sha256": d.hex()})
}

/// The predicate.
pub fn predicate(facts: &Facts) -> Value {
    let p = facts.parameters;
    let mut deps: Vec<Value> = Vec::new();
    for base in facts.bases {
        let digest = base.manifest.as_ref().or(base.layers.first());
        let mut dep = json!({
            "uri": base_uri(&base.reference, &base.platform),
            "annotations": {
                "xbake.kind": "base",
                "xbake.reference": base.reference,
                "xbake.platform": base.platform,
            },
        });
        if let Some(d) = digest {
            dep["digest"] = sha256(d);
        } else {
            // scratch: nothing to fetch; a descriptor needs a name then.
            dep["name"] = json!(base.reference);
        }
        if !base.layers.is_empty() {
            dep["annotations"]["xbake.layers"] = json!(
                base.layers
                    .iter()
                    .map(|l| l.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            );
        }
        deps.push(dep);
    }
    let inputs = by_path(facts.inputs);
    for i in &inputs {
        deps.push(json!({
            "uri": format!("file:{}", i.path),
            "digest": sha256(&i.sha256),
            "annotations": {
                "xbake.kind": "copy-input",
                "xbake.mode": format!("{:o}", i.mode),
                "xbake.symlink": i.symlink.to_string(),
            },
        }));
    }
    if let Some(e) = facts.emulator {
        deps.push(json!({
            "uri": format!("file://{}", e.path),
            "digest": sha256(&e.sha256),
            "annotations": {"xbake.kind": "emulator", "xbake.version": e.version},
        }));
    }
    let args: serde_json::Map<String, Value> = p
        .build_args
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let labels: serde_json::Map<String, Value> = p
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let mut external = json!({
        "recipe": {"path": p.recipe, "digest": sha256(&p.recipe_sha256), "frontend": p.frontend},
        "context": {"digest": sha256(&context_digest(facts.inputs)), "files": inputs.len()},
        "target": p.target,
        "platform": facts.platform,
        "platforms": p.platforms,
        "args": args,
        "secrets": p.secrets,
        "sourceDateEpoch": p.source_date_epoch,
        "labels": labels,
        "annotations": p.annotations,
        "compression": p.compression,
        "normalize": p.normalize,
    });
    if let Some(steps) = facts.steps {
        external["steps"] = json!(steps);
    }
    let mut metadata = json!({});
    if let Some((started, finished)) = &facts.times {
        metadata = json!({"startedOn": started, "finishedOn": finished});
    }
    json!({
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": external,
            "resolvedDependencies": deps,
        },
        "runDetails": {
            "builder": {"id": BUILDER_ID, "version": {"xbake": facts.xbake_version}},
            "metadata": metadata,
        },
    })
}

/// A base's URI: a purl for a registry image (`pkg:docker/NAME@TAG?platform=…`), else
/// the reference as written (`rootfs:…`, `oci:…`, `scratch`), which is already a URI.
fn base_uri(reference: &str, platform: &str) -> String {
    let is_local = ["rootfs:", "oci:", "oci-archive:", "docker-archive:"]
        .iter()
        .any(|p| reference.starts_with(p))
        || reference == "scratch";
    if is_local {
        return format!("xbake:{reference}");
    }
    let (name, version) = match reference.rsplit_once('@') {
        Some((name, digest)) => (name, digest),
        None => match reference.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => (name, tag),
            _ => (reference, "latest"),
        },
    };
    format!(
        "pkg:docker/{name}@{version}?platform={}",
        platform.replace('/', "%2F")
    )
}

/// What `verify` reads back from a provenance predicate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub parameters: Parameters,
    pub context_digest: Option<Digest>,
    pub inputs: Vec<InputFact>,
    pub bases: Vec<BaseFact>,
    pub emulator: Option<EmulatorFact>,
}

/// Reads a predicate this module wrote; names the first field that is missing or wrong.
pub fn read(predicate: &Value) -> Result<Recorded, String> {
    let def = &predicate["buildDefinition"];
    if def["buildType"] != BUILD_TYPE {
        return Err(format!(
            "its build type is {}, not xbake's ({BUILD_TYPE})",
            def["buildType"]
        ));
    }
    let ext = &def["externalParameters"];
    let text = |v: &Value, what: &str| -> Result<String, String> {
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("externalParameters.{what} is missing"))
    };
    let digest = |v: &Value, what: &str| -> Result<Digest, String> {
        let hex = v["sha256"]
            .as_str()
            .ok_or_else(|| format!("{what} has no sha256 digest"))?;
        format!("sha256:{hex}")
            .parse::<Digest>()
            .map_err(|e| format!("{what}: {e}"))
    };
    let pairs = |v: &Value| -> Vec<(String, String)> {
        v.as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let parameters = Parameters {
        recipe: text(&ext["recipe"]["path"], "recipe.path")?,
        recipe_sha256: digest(&ext["recipe"]["digest"], "externalParameters.recipe")?,
        frontend: text(&ext["recipe"]["frontend"], "recipe.frontend")?,
        target: ext["target"].as_str().map(str::to_string),
        platforms: strings(&ext["platforms"]),
        build_args: pairs(&ext["args"]),
        secrets: strings(&ext["secrets"]),
        source_date_epoch: ext["sourceDateEpoch"]
            .as_i64()
            .ok_or("externalParameters.sourceDateEpoch is missing")?,
        labels: pairs(&ext["labels"]),
        annotations: strings(&ext["annotations"]),
        compression: text(&ext["compression"], "compression")?,
        normalize: ext["normalize"].as_bool().unwrap_or(true),
    };
    let mut recorded = Recorded {
        parameters,
        context_digest: digest(&ext["context"]["digest"], "externalParameters.context").ok(),
        inputs: Vec::new(),
        bases: Vec::new(),
        emulator: None,
    };
    for dep in def["resolvedDependencies"].as_array().into_iter().flatten() {
        let notes = &dep["annotations"];
        let note = |k: &str| notes[k].as_str().unwrap_or_default().to_string();
        match notes["xbake.kind"].as_str() {
            Some("base") => {
                let layers = note("xbake.layers")
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse::<Digest>().map_err(|e| format!("base layer: {e}")))
                    .collect::<Result<Vec<_>, _>>()?;
                let manifest = match dep.get("digest") {
                    Some(d) if layers.first().map(|l| l.hex()) != d["sha256"].as_str() => {
                        Some(digest(d, "a base")?)
                    }
                    _ => None,
                };
                recorded.bases.push(BaseFact {
                    reference: note("xbake.reference"),
                    platform: note("xbake.platform"),
                    manifest,
                    layers,
                });
            }
            Some("copy-input") => {
                let uri = dep["uri"].as_str().unwrap_or_default();
                recorded.inputs.push(InputFact {
                    path: uri.strip_prefix("file:").unwrap_or(uri).to_string(),
                    sha256: digest(&dep["digest"], uri)?,
                    mode: u32::from_str_radix(&note("xbake.mode"), 8).unwrap_or(0o644),
                    symlink: note("xbake.symlink") == "true",
                });
            }
            Some("emulator") => {
                let uri = dep["uri"].as_str().unwrap_or_default();
                recorded.emulator = Some(EmulatorFact {
                    path: uri.strip_prefix("file://").unwrap_or(uri).to_string(),
                    version: note("xbake.version"),
                    sha256: digest(&dep["digest"], uri)?,
                });
            }
            _ => {}
        }
    }
    Ok(recorded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts_fixture() -> (Parameters, Vec<InputFact>, Vec<BaseFact>, EmulatorFact) {
        let params = Parameters {
            recipe: "xbake.yaml".into(),
            recipe_sha256: Digest::of(b"recipe"),
            frontend: "recipe".into(),
            target: None,
            platforms: vec!["linux/arm64".into(), "linux/ppc64le".into()],
            build_args: vec![("VERSION".into(), "2".into())],
            secrets: vec!["token".into()],
            source_date_epoch: 1_700_000_000,
            labels: vec![("org.example".into(), "x".into())],
            annotations: vec![],
            compression: "gzip:6".into(),
            normalize: true,
        };
        let inputs = vec![
            InputFact {
                path: "src/b.txt".into(),
                sha256: Digest::of(b"b"),
                mode: 0o644,
                symlink: false,
            },
            InputFact {
                path: "src/a.sh".into(),
                sha256: Digest::of(b"a"),
                mode: 0o755,
                symlink: false,
            },
        ];
        let bases = vec![
            BaseFact {
                reference: "127.0.0.1:5000/busybox:1".into(),
                platform: "linux/arm64".into(),
                manifest: Some(Digest::of(b"m")),
                layers: vec![Digest::of(b"l1")],
            },
            BaseFact {
                reference: "rootfs:bases/busybox-arm64.tar.gz".into(),
                platform: "linux/arm64".into(),
                manifest: None,
                layers: vec![Digest::of(b"tar")],
            },
        ];
        let emulator = EmulatorFact {
            path: "/usr/bin/qemu-aarch64-static".into(),
            version: "qemu-aarch64 version 7.2.19".into(),
            sha256: Digest::of(b"qemu"),
        };
        (params, inputs, bases, emulator)
    }

    #[test]
    fn what_is_written_is_read_back() {
        let (params, inputs, bases, emulator) = facts_fixture();
        let facts = Facts {
            platform: "linux/arm64".into(),
            parameters: &params,
            inputs: &inputs,
            bases: &bases,
            emulator: Some(&emulator),
            xbake_version: "0.1.0",
            steps: None,
            times: None,
        };
        let p = predicate(&facts);
        assert_eq!(p["buildDefinition"]["buildType"], BUILD_TYPE);
        assert_eq!(p["runDetails"]["builder"]["version"]["xbake"], "0.1.0");
        assert_eq!(p["runDetails"]["metadata"], json!({}));
        let back = read(&p).unwrap();
        assert_eq!(back.parameters, params);
        assert_eq!(back.bases, bases);
        let mut sorted = inputs.clone();
        sorted.sort_by(|a, b| a.path.cmp(&b.path));
        assert_eq!(back.inputs, sorted);
        assert_eq!(back.emulator, Some(emulator));
        assert_eq!(back.context_digest, Some(context_digest(&inputs)));
        // Secrets appear by id only.
        assert_eq!(
            p["buildDefinition"]["externalParameters"]["secrets"],
            json!(["token"])
        );
    }

    #[test]
    fn the_context_digest_ignores_order_and_sees_one_byte() {
        let (_, inputs, _, _) = facts_fixture();
        let mut reversed = inputs.clone();
        reversed.reverse();
        assert_eq!(context_digest(&inputs), context_digest(&reversed));
        let mut changed = inputs.clone();
        changed[0].sha256 = Digest::of(b"c");
        assert_ne!(context_digest(&inputs), context_digest(&changed));
    }

    #[test]
    fn bases_are_named_by_purl_or_as_written() {
        assert_eq!(
            base_uri("127.0.0.1:5000/busybox:1", "linux/arm/v7"),
            "pkg:docker/127.0.0.1:5000/busybox@1?platform=linux%2Farm%2Fv7"
        );
        assert_eq!(
            base_uri("rootfs:bases/x.tar.gz", "linux/arm64"),
            "xbake:rootfs:bases/x.tar.gz"
        );
    }

    #[test]
    fn a_foreign_predicate_is_refused_by_name() {
        let err = read(&json!({"buildDefinition": {"buildType": "https://other"}})).unwrap_err();
        assert!(err.contains("https://other"), "{err}");
    }
}
