//! `xbake login` / `xbake logout`: credentials in the same auth files docker and podman
//! use ($REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json,
//! ~/.docker/config.json).

use super::{Failure, UsageError, registry_options};
use crate::registry::{self, Client, Credentials, Reference};
use clap::Args;
use std::io::BufRead;

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// The registry: `host[:port]` (docker.io for Docker Hub).
    registry: String,
    #[arg(short = 'u', long = "username")]
    username: String,
    /// The password (prefer --password-stdin: arguments are visible to other users).
    #[arg(short = 'p', long = "password", conflicts_with = "password_stdin")]
    password: Option<String>,
    /// Read the password from standard input.
    #[arg(long = "password-stdin")]
    password_stdin: bool,
    /// `false`: plain HTTP, no certificate check.
    #[arg(long = "tls-verify", value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    tls_verify: bool,
}

#[derive(Args, Debug)]
pub struct LogoutArgs {
    /// The registry: `host[:port]`.
    registry: String,
}

pub fn login(args: LoginArgs) -> Result<u8, Failure> {
    let password = match (args.password, args.password_stdin) {
        (Some(p), _) => p,
        (None, true) => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => {
            return Err(
                UsageError("give the password with --password-stdin (or -p)".into()).into(),
            );
        }
    };
    // Check the credentials against the registry before saving them, as docker does.
    let probe: Reference = format!("{}/xbake-login-check:latest", args.registry)
        .parse()
        .map_err(|e| UsageError(format!("{}: {e}", args.registry)))?;
    let creds = Credentials::new(args.username.clone(), password.clone());
    Client::new(&probe, &registry_options(args.tls_verify), Some(creds))?.ping()?;
    let file = registry::auth::login(&probe.registry, &args.username, &password)?;
    eprintln!(
        "login succeeded; credentials for {} saved in {}",
        probe.registry,
        file.display()
    );
    Ok(0)
}

pub fn logout(args: LogoutArgs) -> Result<u8, Failure> {
    let probe: Reference = format!("{}/x:latest", args.registry)
        .parse()
        .map_err(|e| UsageError(format!("{}: {e}", args.registry)))?;
    if registry::auth::logout(&probe.registry)? {
        eprintln!("removed the credentials for {}", probe.registry);
        Ok(0)
    } else {
        eprintln!("no credentials stored for {}", probe.registry);
        Ok(1)
    }
}
