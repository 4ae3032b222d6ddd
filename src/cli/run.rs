//! `xbake run`.

use super::{Failure, UsageError, default_cache_dir, reexec_in_namespace};
use crate::build::mounts::{parse_mount_flag, parse_volume_flag};
use crate::build::progress::{Progress, ProgressMode};
use crate::build::run_image::{RunRequest, image_platforms, run_image};
use crate::emulation;
use crate::platform::Platform;
use crate::recipe::BaseRef;
use crate::recipe::Network;
use crate::sandbox::StepExit;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The image: `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`, `docker-archive:FILE`, or a
    /// registry reference (`debian:bookworm`, `host:5000/app@sha256:…`).
    image: String,
    /// Set an environment variable for the command (repeatable): `KEY=VALUE`.
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Bind a host folder or file (repeatable), docker's `-v HOST:CONTAINER[:ro]`: the
    /// command's writes go to the host unless `:ro`.
    #[arg(short = 'v', long = "volume", value_name = "HOST:CONTAINER[:ro]")]
    volumes: Vec<String>,
    /// Run as this user instead of the image's (`name`, `uid`, `uid:gid`, `name:group`).
    #[arg(short = 'u', long = "user", value_name = "USER")]
    user: Option<String>,
    /// `false`: plain HTTP, no certificate check, for a registry image.
    #[arg(long = "tls-verify", value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    tls_verify: bool,
    /// Which platform of the image to run (default: this machine's if the image has it,
    /// else its only platform).
    #[arg(long = "platform", visible_alias = "arch")]
    platform: Option<String>,
    /// private (default): online through slirp4netns or pasta, without the host's
    /// loopback; host: the host's network; none: loopback only.
    #[arg(
        long = "network",
        value_name = "private|host|none",
        default_value = "private"
    )]
    network: Network,
    /// Keep stdin open for the command (otherwise it reads /dev/null).
    #[arg(short = 'i', long = "interactive")]
    interactive: bool,
    /// `seccomp=unconfined`: no seccomp filter (default: Docker's default profile).
    #[arg(long = "security-opt", value_name = "OPT", value_parser = super::security_opt)]
    security_opt: Option<crate::sandbox::SeccompMode>,
    /// Cache and scratch folder (default: $XDG_CACHE_HOME/xbake).
    #[arg(long = "cache-dir", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    #[command(flatten)]
    limits: super::limits::LimitArgs,
    /// A mount for the command, in a Dockerfile's `RUN --mount` syntax (repeatable):
    /// `type=bind,source=PATH,target=DIR[,rw]` (read-only unless rw, and then writes are
    /// thrown away), `type=cache,target=DIR[,id=ID,sharing=shared|private|locked]`,
    /// `type=tmpfs,target=DIR[,size=64M]`, `type=secret,id=ID[,target=FILE]`.
    #[arg(long = "mount", value_name = "type=…,target=…")]
    mounts: Vec<String>,
    /// A secret for `type=secret` mounts: `id=ID,src=FILE` or `id=ID,env=VAR`.
    #[arg(long = "secret", value_name = "id=ID,src=FILE|env=VAR")]
    secrets: Vec<String>,
    /// Replaces the image's CMD.
    #[arg(last = true)]
    args: Vec<String>,
}

pub fn run(args: RunArgs) -> Result<u8, Failure> {
    let here = std::env::current_dir()?;
    let image = BaseRef::parse(&args.image, &here)
        .map_err(|e| UsageError(format!("{}: {e}", args.image)))?;
    if matches!(
        image,
        BaseRef::Scratch | BaseRef::Rootfs(_) | BaseRef::Stage(_)
    ) {
        return Err(UsageError(format!(
            "{}: xbake run takes an image (oci:DIR[:TAG], oci-archive:, docker-archive: or \
             a registry reference)",
            args.image
        ))
        .into());
    }
    // A layout says which platforms it has; other images are asked for this machine's
    // unless --platform says otherwise (a missing one is an error listing theirs).
    let offered = match &image {
        BaseRef::OciLayout { dir, tag } => image_platforms(dir, tag.as_deref())?,
        _ => vec![Platform::host()],
    };
    let platform = match &args.platform {
        Some(p) => p.parse::<Platform>()?,
        None if offered.contains(&Platform::host()) => Platform::host(),
        None if offered.len() == 1 => offered[0],
        None => {
            let names: Vec<String> = offered.iter().map(|p| p.to_string()).collect();
            return Err(UsageError(format!(
                "{} holds several platforms ({}); choose one with --platform",
                args.image,
                names.join(", ")
            ))
            .into());
        }
    };
    emulation::required_emulators(
        &[platform],
        &Platform::host(),
        &emulation::qemu::search_path(),
    )?;
    let mut mounts = args
        .mounts
        .iter()
        .map(|m| parse_mount_flag(m, &here).map_err(|e| UsageError(format!("--mount {m:?}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    for v in &args.volumes {
        mounts.push(parse_volume_flag(v, &here).map_err(|e| UsageError(format!("-v {v:?}: {e}")))?);
    }
    let env = args
        .env
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(UsageError(format!("-e {kv:?}: expected KEY=VALUE"))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let secret_sources = super::build::parse_secrets(&args.secrets)?;
    if args.network == Network::Private {
        crate::sandbox::network::preflight()?;
    }
    if let Some(code) = reexec_in_namespace()? {
        return Ok(code);
    }
    let secrets = crate::build::secrets::Secrets::read(&secret_sources)?;
    let exit = run_image(&RunRequest {
        image,
        reference: args.image.clone(),
        env,
        user: args.user.clone(),
        platform,
        args: args.args,
        network: args.network.into(),
        stdin: args.interactive,
        seccomp: args.security_opt.unwrap_or_default(),
        cache_dir: args.cache_dir.unwrap_or_else(default_cache_dir),
        force_host_binfmt: super::force_host_binfmt()?,
        progress: Progress::new(ProgressMode::Plain),
        registry: super::registry_options(args.tls_verify),
        limits: args.limits.limits(),
        mounts,
        secrets,
    })?;
    Ok(match exit {
        StepExit::Code(c) => u8::try_from(c).unwrap_or(1),
        StepExit::Signal(s) => u8::try_from(128 + s).unwrap_or(1),
    })
}
