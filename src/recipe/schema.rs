//! The recipe's YAML shape as serde reads it: field names are the v1 contract, unknown
//! keys are rejected, and every value checked after parsing is `Spanned` so its
//! problems can point at it. Nothing here judges values; `validate` does.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRecipe {
    /// Named stages the final image (the top level) can build on or copy from.
    #[serde(default)]
    pub stages: OrderedMap<RawStage>,
    pub from: Spanned<String>,
    pub platforms: Option<Spanned<OneOrMany>>,
    #[serde(default)]
    pub args: OrderedMap<Option<String>>,
    #[serde(default)]
    pub env: OrderedMap<String>,
    pub workdir: Option<Spanned<String>>,
    pub source_date_epoch: Option<Spanned<i64>>,
    /// `normalize: false`: no normalisation rules after run steps (src/normalize/).
    pub normalize: Option<Spanned<bool>>,
    /// `Option` so that a `steps:` with nothing under it (a null) means no steps.
    pub steps: Option<Vec<Spanned<RawStep>>>,
    pub config: Option<RawConfig>,
}

/// A named stage: the top level's fields that make a filesystem, plus where it runs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStage {
    pub from: Spanned<String>,
    /// `build` (the build machine), `target` (the default) or a fixed platform.
    pub platform: Option<Spanned<String>>,
    #[serde(default)]
    pub args: OrderedMap<Option<String>>,
    #[serde(default)]
    pub env: OrderedMap<String>,
    pub workdir: Option<Spanned<String>>,
    pub normalize: Option<Spanned<bool>>,
    pub steps: Option<Vec<Spanned<RawStep>>>,
}

/// One entry of a run step's `mounts:`; which keys apply depends on `type`, which
/// `validate` checks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMount {
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    pub target: Option<Spanned<String>>,
    pub id: Option<Spanned<String>>,
    pub sharing: Option<Spanned<String>>,
    pub mode: Option<Spanned<String>>,
    pub uid: Option<Spanned<u32>>,
    pub gid: Option<Spanned<u32>>,
    pub required: Option<Spanned<bool>>,
    pub from: Option<Spanned<String>>,
    pub source: Option<Spanned<String>>,
    #[serde(alias = "rw")]
    pub readwrite: Option<Spanned<bool>>,
    pub size: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub entrypoint: Option<Spanned<Command>>,
    pub cmd: Option<Spanned<Command>>,
    #[serde(default)]
    pub labels: OrderedMap<String>,
    pub exposed_ports: Option<Vec<Spanned<String>>>,
    pub stop_signal: Option<Spanned<String>>,
    pub volumes: Option<Vec<Spanned<String>>>,
    pub healthcheck: Option<Spanned<RawHealthcheck>>,
    /// Docker's SHELL: an exec-form list (a string is refused by `validate`).
    pub shell: Option<Spanned<Command>>,
    pub annotations: Option<RawAnnotations>,
}

/// `config: healthcheck:`, Docker's HEALTHCHECK; durations as Go writes them (`30s`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealthcheck {
    pub test: Spanned<Command>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub start_period: Option<Spanned<String>>,
    pub start_interval: Option<Spanned<String>>,
    pub retries: Option<Spanned<i64>>,
}

/// `config: annotations:`, by where they go.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAnnotations {
    /// On every platform's image manifest.
    #[serde(default)]
    pub manifest: OrderedMap<String>,
    /// On the image index.
    #[serde(default)]
    pub index: OrderedMap<String>,
}

/// A step as written: its keys in order, each with where it is, so `validate` can say
/// which key is unknown, doubled or on the wrong kind of step. (serde's derive would
/// report an unknown key well but not which of two kinds came second.)
#[derive(Debug)]
pub(super) struct RawStep {
    pub entries: Vec<(Spanned<String>, StepValue)>,
}

#[derive(Debug)]
pub(super) enum StepValue {
    Run(Spanned<Command>),
    Network(Spanned<String>),
    Normalize(Spanned<bool>),
    Copy(Spanned<OneOrMany>),
    /// A copy step's source stage or image.
    From(Spanned<String>),
    /// A run step's mounts.
    Mounts(Vec<Spanned<RawMount>>),
    To(Spanned<String>),
    Mode(Spanned<String>),
    Owner(Spanned<String>),
    Env(OrderedMap<String>),
    Workdir(Spanned<String>),
    User(Spanned<String>),
    /// An unknown key; its value was skipped.
    Unknown,
}

impl<'de> Deserialize<'de> for RawStep {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StepVisitor;

        impl<'de> Visitor<'de> for StepVisitor {
            type Value = RawStep;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a step: a mapping with one of run, copy, env, workdir, user")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawStep, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    let value = match key.value.as_str() {
                        "run" => StepValue::Run(map.next_value()?),
                        "network" => StepValue::Network(map.next_value()?),
                        "normalize" => StepValue::Normalize(map.next_value()?),
                        "copy" => StepValue::Copy(map.next_value()?),
                        "from" => StepValue::From(map.next_value()?),
                        "mounts" => StepValue::Mounts(map.next_value()?),
                        "to" => StepValue::To(map.next_value()?),
                        "mode" => StepValue::Mode(map.next_value()?),
                        "owner" => StepValue::Owner(map.next_value()?),
                        "env" => StepValue::Env(map.next_value()?),
                        "workdir" => StepValue::Workdir(map.next_value()?),
                        "user" => StepValue::User(map.next_value()?),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            StepValue::Unknown
                        }
                    };
                    entries.push((key, value));
                }
                Ok(RawStep { entries })
            }
        }

        // `deserialize_any` so a step written as a bare string (`- echo hi`) is told
        // what a step looks like, rather than "expected mapping start".
        deserializer.deserialize_any(StepVisitor)
    }
}

/// A mapping read in document order (env values may use earlier ones, and the config
/// keeps env in recipe order). Duplicate keys are rejected by the parser.
#[derive(Debug)]
pub(super) struct OrderedMap<V>(pub Vec<(Spanned<String>, Spanned<V>)>);

impl<V> Default for OrderedMap<V> {
    fn default() -> Self {
        OrderedMap(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for OrderedMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<V>(PhantomData<V>);

        impl<'de, V: Deserialize<'de>> Visitor<'de> for MapVisitor<V> {
            type Value = OrderedMap<V>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of NAME: value")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key()? {
                    entries.push((key, map.next_value()?));
                }
                Ok(OrderedMap(entries))
            }

            /// `env:` with nothing under it is an empty mapping, not an error.
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(OrderedMap(Vec::new()))
            }
        }

        // `deserialize_any` so an empty `env:` (a null) reaches `visit_unit`.
        deserializer.deserialize_any(MapVisitor(PhantomData))
    }
}

/// `run:`, `entrypoint:`, `cmd:`: a string (shell form) or a list of strings (exec form).
#[derive(Debug)]
pub(super) enum Command {
    Shell(String),
    Exec(Vec<String>),
}

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CommandVisitor;

        impl<'de> Visitor<'de> for CommandVisitor {
            type Value = Command;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a shell command string or an exec-form list of strings")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Command, E> {
                Ok(Command::Shell(text.to_string()))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Command, A::Error> {
                let mut argv = Vec::new();
                while let Some(arg) = seq.next_element()? {
                    argv.push(arg);
                }
                Ok(Command::Exec(argv))
            }
        }

        // `deserialize_any` because the form is only known from the node; the catch is
        // that YAML then types plain scalars, so `run: 42` arrives as a number (and is
        // refused by the visitor's default, asking for a string).
        deserializer.deserialize_any(CommandVisitor)
    }
}

/// `copy:` and `platforms:`: one string or a list of strings.
#[derive(Debug)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<Spanned<String>>),
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OneOrManyVisitor;

        impl<'de> Visitor<'de> for OneOrManyVisitor {
            type Value = OneOrMany;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(text.to_string()))
            }

            // A lone integer is taken as its text: `platforms: 386` names i386, and the
            // parser options keep spellings with leading zeros or `_` as strings, so
            // printing the number gives back what was written.
            fn visit_u64<E: de::Error>(self, number: u64) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(number.to_string()))
            }

            fn visit_i64<E: de::Error>(self, number: i64) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(number.to_string()))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(OneOrMany::Many(items))
            }
        }

        deserializer.deserialize_any(OneOrManyVisitor)
    }
}
