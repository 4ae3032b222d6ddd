//! The command line: one file per subcommand, each thin (parse, call the library,
//! print). Errors are rendered once, here, with their causes, and mapped to the exit
//! codes documented in README.

mod attest;
mod build;
mod cache;
mod diff;
mod docs;
mod doctor;
mod inspect;
mod key;
mod limits;
mod login;
mod manifest;
mod run;
mod signature;
mod verify;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Exit codes (README, "Exit codes").
pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_STEP_FAILED: u8 = 3;

#[derive(Parser, Debug)]
#[command(
    name = "xbake",
    version,
    about = "Build multi-architecture OCI images from a recipe: rootless, daemonless, reproducible"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Build a recipe for one or more platforms and write an OCI image (index).
    // Boxed: its flags make it several times the size of the other commands' arguments.
    Build(Box<build::BuildArgs>),
    /// Run a command in a built image (any platform, emulated when foreign).
    Run(run::RunArgs),
    /// Rebuild a recipe without the cache and compare with a published image.
    Verify(verify::VerifyArgs),
    /// Compare two images, platform by platform, down to the files of each layer.
    Diff(diff::DiffArgs),
    /// Inspect or shrink the step cache.
    Cache(cache::CacheArgs),
    /// Show an image's platforms (or its exact bytes) from a layout, archive or registry.
    Inspect(inspect::InspectArgs),
    /// Make or show multi-platform image indexes (manifest lists).
    Manifest(manifest::ManifestArgs),
    /// Make a cosign-compatible signing key pair, or show a private key's public key.
    Key(key::KeyArgs),
    /// Check an image's cosign signatures with a public key.
    VerifySignature(signature::VerifySignatureArgs),
    /// Save credentials for a registry.
    Login(login::LoginArgs),
    /// Remove saved credentials for a registry.
    Logout(login::LogoutArgs),
    /// What this machine can build, and the remedy for each thing it cannot.
    Doctor(doctor::DoctorArgs),
    /// Read the provenance and SBOMs attached to an image.
    Attest(attest::AttestArgs),
    /// Write a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completions(docs::CompletionsArgs),
    /// Write the man page (roff) to stdout, or every command's page to a folder.
    Man(docs::ManArgs),
}

/// Writes `text` to stdout; a reader that went away (`| head`) is no failure.
pub(crate) fn print_out(text: &str) -> Result<(), Failure> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// A failure with the exit code it maps to.
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        let error = e.into();
        Failure {
            code: exit_code_for(&error),
            error,
        }
    }
}

fn exit_code_for(error: &anyhow::Error) -> u8 {
    use crate::build::BuildError;
    if let Some(b) = error.downcast_ref::<BuildError>() {
        return match b {
            BuildError::StepFailed { .. } => EXIT_STEP_FAILED,
            BuildError::Recipe(_) => EXIT_USAGE,
            _ => EXIT_FAILURE,
        };
    }
    if error.downcast_ref::<crate::recipe::RecipeError>().is_some()
        || error
            .downcast_ref::<crate::platform::PlatformError>()
            .is_some()
        || error.downcast_ref::<UsageError>().is_some()
        || error
            .downcast_ref::<crate::context::ContextError>()
            .is_some()
    {
        return EXIT_USAGE;
    }
    EXIT_FAILURE
}

/// `--security-opt` of `build` and `run`: only `seccomp=unconfined` so far.
fn security_opt(value: &str) -> Result<crate::sandbox::SeccompMode, String> {
    match value {
        "seccomp=unconfined" => Ok(crate::sandbox::SeccompMode::Unconfined),
        _ => Err(
            "the accepted value is seccomp=unconfined (run steps without the \
             seccomp filter)"
                .into(),
        ),
    }
}

/// A bad combination of flags that clap cannot express.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// `XBAKE_BINFMT`: unset, empty or `auto` (a private binfmt_misc instance where the
/// kernel allows one, else the host's entries), or `host` (the host's entries always).
/// Anything else is refused, so a typo does not silently pick the default.
pub(crate) fn force_host_binfmt() -> Result<bool, UsageError> {
    binfmt_choice(std::env::var_os("XBAKE_BINFMT").as_deref())
}

fn binfmt_choice(value: Option<&std::ffi::OsStr>) -> Result<bool, UsageError> {
    match value.map(|v| v.to_str()) {
        None | Some(Some("" | "auto")) => Ok(false),
        Some(Some("host")) => Ok(true),
        Some(other) => Err(UsageError(format!(
            "XBAKE_BINFMT={}: expected host (the host's binfmt_misc entries) or auto \
             (a private instance where the kernel allows one; the default)",
            other.map_or_else(|| "(not UTF-8)".to_string(), |v| format!("{v:?}"))
        ))),
    }
}

pub fn main() -> ExitCode {
    if let Err(e) = crate::sandbox::hidden_entry() {
        render(&e.into());
        return ExitCode::from(EXIT_FAILURE);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { 0 });
        }
    };
    let result = match cli.command {
        Command::Build(args) => build::run(*args),
        Command::Run(args) => run::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Diff(args) => diff::run(args),
        Command::Cache(args) => cache::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Manifest(args) => manifest::run(args),
        Command::Key(args) => key::run(args),
        Command::VerifySignature(args) => signature::run(args),
        Command::Login(args) => login::login(args),
        Command::Logout(args) => login::logout(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Attest(args) => attest::run(args),
        Command::Completions(args) => docs::completions(args),
        Command::Man(args) => docs::man(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            render(&failure.error);
            ExitCode::from(failure.code)
        }
    }
}

/// `error: headline` then one `caused by:` line per source, without repeating text a
/// cause already put into the headline.
fn render(error: &anyhow::Error) {
    let mut shown = error.to_string();
    eprintln!("error: {shown}");
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        if shown.contains(&text) {
            continue;
        }
        eprintln!("  caused by: {text}");
        shown = text;
    }
}

/// Pre-flight on the host, before any namespace: every plan expands, every emulator
/// exists, and a network helper and /dev/net/tun are there when a RUN step gets a
/// private network, so mistakes fail fast with the clearest message. Then into the
/// build's user namespace: `Some(code)` is the namespaced run's exit code (the caller
/// returns it), `None` means "we are inside now, carry on". Inside, the checks run
/// again (they are cheap), and the /dev/net/tun one then opens it as the build's
/// namespace root, the identity the helper will have.
fn preflight(
    recipe: &crate::recipe::Recipe,
    platforms: &[crate::platform::Platform],
    build_args: &[(String, String)],
    network: Option<crate::sandbox::NetworkMode>,
    allow: &[Entitlement],
) -> Result<Option<u8>, Failure> {
    let host = crate::platform::Platform::host();
    // From the recipe as written: planning needs the bases' environments, which only
    // the build (inside the namespace) reads.
    let _ = build_args;
    let networks = recipe.run_networks();
    check_entitlements(&networks, network, allow)?;
    let private_network = networks.iter().any(|(_, _, own)| {
        crate::build::step_network(*own, network) == crate::sandbox::NetworkMode::Private
    });
    let mut platforms = platforms.to_vec();
    platforms.extend(recipe.fixed_platforms());
    crate::emulation::required_emulators(
        &platforms,
        &host,
        &crate::emulation::qemu::search_path(),
    )?;
    if private_network {
        crate::sandbox::network::preflight()?;
    }
    reexec_in_namespace()
}

/// `--allow ENTITLEMENT`, BuildKit's spelling: what a recipe may ask for beyond the
/// sandbox, granted by the person running the build, never by the recipe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Entitlement {
    /// Steps with `network: host` get the host's network.
    #[value(name = "network.host")]
    NetworkHost,
}

/// A recipe is untrusted: a step's own `network: host` would hand it the host's
/// loopback services and abstract sockets, so it needs the caller's consent
/// (`--allow network.host`, or `--network host` for every step), as in BuildKit.
fn check_entitlements(
    networks: &[(
        crate::recipe::Location,
        usize,
        Option<crate::recipe::Network>,
    )],
    network: Option<crate::sandbox::NetworkMode>,
    allow: &[Entitlement],
) -> Result<(), UsageError> {
    if network == Some(crate::sandbox::NetworkMode::Host)
        || allow.contains(&Entitlement::NetworkHost)
    {
        return Ok(());
    }
    for (location, number, own) in networks {
        if *own == Some(crate::recipe::Network::Host) {
            return Err(UsageError(format!(
                "{location}: step {number} asks for the host's network (`network: host`), \
                 which would let it reach everything the host can, its 127.0.0.1 services \
                 included; allow it with --allow network.host, or build with --network host"
            )));
        }
    }
    Ok(())
}

/// Re-runs this command inside the build's user namespace when not already there;
/// `Some(code)` is the namespaced run's exit code.
fn reexec_in_namespace() -> Result<Option<u8>, Failure> {
    use crate::sandbox::userns;
    if userns::inside_build_namespace() {
        return Ok(None);
    }
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let status = userns::run_in_build_namespace(&args, &userns::current_plan()?)?;
    use std::os::unix::process::ExitStatusExt;
    let code = match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(sig)) => 128 + sig,
        (None, None) => i32::from(EXIT_FAILURE),
    };
    Ok(Some(u8::try_from(code).unwrap_or(EXIT_FAILURE)))
}

/// Registry access for a command: `--tls-verify=false` allows plain HTTP to every
/// registry named; `XBAKE_INSECURE_REGISTRIES` (comma-separated `host[:port]`) lists
/// registries that get plain HTTP always. Loopback registries always do (as Docker).
fn registry_options(tls_verify: bool) -> crate::registry::RegistryOptions {
    crate::registry::RegistryOptions {
        tls_verify,
        insecure_registries: std::env::var("XBAKE_INSECURE_REGISTRIES")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// `$XDG_CACHE_HOME/xbake`, else `~/.cache/xbake`.
fn default_cache_dir() -> std::path::PathBuf {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return std::path::PathBuf::from(x).join("xbake");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    std::path::PathBuf::from(home).join(".cache/xbake")
}

#[cfg(test)]
mod binfmt_choice_tests {
    use super::binfmt_choice;
    use std::ffi::OsStr;

    #[test]
    fn xbake_binfmt_takes_host_or_auto_and_refuses_the_rest() {
        assert!(!binfmt_choice(None).unwrap());
        assert!(!binfmt_choice(Some(OsStr::new(""))).unwrap());
        assert!(!binfmt_choice(Some(OsStr::new("auto"))).unwrap());
        assert!(binfmt_choice(Some(OsStr::new("host"))).unwrap());
        for typo in ["hots", "HOST", "private", "1"] {
            let err = binfmt_choice(Some(OsStr::new(typo)))
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("XBAKE_BINFMT={typo:?}")), "{err}");
            assert!(err.contains("expected host"), "{err}");
        }
    }
}
