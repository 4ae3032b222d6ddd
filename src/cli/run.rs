//! `xbake run`.

use super::{Failure, UsageError, default_cache_dir, reexec_in_namespace};
use crate::build::mounts::parse_mount_flag;
use crate::build::progress::{Progress, ProgressMode};
use crate::build::run_image::{RunRequest, image_platforms, run_image};
use crate::emulation;
use crate::image::reference::LayoutRef;
use crate::platform::Platform;
use crate::recipe::Network;
use crate::sandbox::StepExit;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The image: `oci:DIR` or `oci:DIR:TAG`.
    image: String,
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
    let LayoutRef { dir, tag } = LayoutRef::parse(&args.image)
        .ok_or_else(|| {
            UsageError(format!(
                "unsupported image {:?}; use oci:DIR[:TAG]",
                args.image
            ))
        })?
        .map_err(UsageError)?;
    let offered = image_platforms(&dir, tag.as_deref())?;
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
    let here = std::env::current_dir()?;
    let mounts = args
        .mounts
        .iter()
        .map(|m| parse_mount_flag(m, &here).map_err(|e| UsageError(format!("--mount {m:?}: {e}"))))
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
        dir,
        tag,
        platform,
        args: args.args,
        network: args.network.into(),
        stdin: args.interactive,
        seccomp: args.security_opt.unwrap_or_default(),
        cache_dir: args.cache_dir.unwrap_or_else(default_cache_dir),
        force_host_binfmt: super::force_host_binfmt()?,
        progress: Progress::new(ProgressMode::Plain),
        registry: super::registry_options(true),
        limits: args.limits.limits(),
        mounts,
        secrets,
    })?;
    Ok(match exit {
        StepExit::Code(c) => u8::try_from(c).unwrap_or(1),
        StepExit::Signal(s) => u8::try_from(128 + s).unwrap_or(1),
    })
}
