//! `xbake key generate` and `xbake key public-key`: cosign's `generate-key-pair` and
//! `public-key`, writing and reading the same files (`cosign.key`, `cosign.pub`).
//!
//! The password comes as cosign takes it (cmd/cosign/cli/generate/generate_key_pair.go,
//! `readPasswordFn`): `COSIGN_PASSWORD` when set, empty included; else a prompt on the
//! terminal, twice when making a key. cosign reads a piped standard input as the
//! password; xbake refuses instead and names the variable, so a CI job that forgot it
//! fails rather than encrypting the key with whatever was piped in.

use super::{Failure, UsageError};
use crate::sign::{self, KeyPair};
use clap::{Args, Subcommand};
use p256::elliptic_curve::zeroize::Zeroizing;
use std::ffi::OsString;
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct KeyArgs {
    #[command(subcommand)]
    command: KeyCommand,
}

#[derive(Subcommand, Debug)]
enum KeyCommand {
    /// Make a cosign key pair: PREFIX.key (encrypted with $COSIGN_PASSWORD, or a password
    /// asked on the terminal) and PREFIX.pub.
    Generate {
        /// Where the files go: PREFIX.key and PREFIX.pub.
        #[arg(
            long = "output",
            visible_alias = "output-key-prefix",
            value_name = "PREFIX",
            default_value = "cosign"
        )]
        output: PathBuf,
        /// Replace existing PREFIX.key and PREFIX.pub.
        #[arg(long)]
        force: bool,
    },
    /// Print the public key of a private key (cosign.key, an unencrypted PKCS#8 or
    /// SEC1 P-256 key) in cosign.pub's format.
    PublicKey {
        /// The private key.
        #[arg(long = "key", value_name = "FILE", default_value = "cosign.key")]
        key: PathBuf,
    },
}

pub fn run(args: KeyArgs) -> Result<u8, Failure> {
    match args.command {
        KeyCommand::Generate { output, force } => generate(&output, force),
        KeyCommand::PublicKey { key } => public_key(&key),
    }
}

fn generate(prefix: &Path, force: bool) -> Result<u8, Failure> {
    let private = with_suffix(prefix, ".key");
    let public = with_suffix(prefix, ".pub");
    if !force {
        for path in [&private, &public] {
            if std::fs::symlink_metadata(path).is_ok() {
                return Err(UsageError(format!(
                    "{} exists; remove it, choose another --output, or pass --force to \
                     replace it",
                    path.display()
                ))
                .into());
            }
        }
    }
    let password = password(true)?;
    let pair = sign::generate_key_pair(&password)?;
    write_pair(&pair, &private, &public, force)?;
    eprintln!("Private key written to {}", private.display());
    eprintln!("Public key written to {}", public.display());
    Ok(0)
}

fn public_key(path: &Path) -> Result<u8, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    let load = |password: Option<&[u8]>| {
        sign::load_signing_key(&text, password)
            .map_err(|e| anyhow::Error::new(e).context(format!("loading {}", path.display())))
    };
    // An unencrypted key needs no password: ask only when the key says it is encrypted.
    let key = match sign::load_signing_key(&text, None) {
        Err(sign::SignError::PasswordRequired) => load(Some(&password(false)?))?,
        _ => load(None)?,
    };
    print!("{}", key.verifying_key().to_pem());
    Ok(0)
}

/// `prefix` with `suffix` appended to its last component (`out/cosign` → `out/cosign.key`).
fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(prefix.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}

/// The private key's password: `COSIGN_PASSWORD` when set (any bytes, empty too), else
/// asked on the terminal without echo (`confirm`: twice, and the two must match).
fn password(confirm: bool) -> Result<Zeroizing<Vec<u8>>, Failure> {
    if let Some(value) = std::env::var_os("COSIGN_PASSWORD") {
        use std::os::unix::ffi::OsStringExt;
        return Ok(Zeroizing::new(value.into_vec()));
    }
    if !std::io::stdin().is_terminal() {
        return Err(UsageError(
            "set COSIGN_PASSWORD to the private key's password (it may be empty: \
             COSIGN_PASSWORD=); standard input is not a terminal to ask on"
                .into(),
        )
        .into());
    }
    // cosign's prompts (pkg/cosign/common.go, `GetPassFromTerm`).
    let first = prompt("Enter password for private key: ")?;
    if confirm {
        let again = prompt("Enter password for private key again: ")?;
        if first != again {
            return Err(UsageError("passwords do not match".into()).into());
        }
    }
    Ok(first)
}

/// One line from the terminal on standard input with echo off, without its line end.
fn prompt(text: &str) -> Result<Zeroizing<Vec<u8>>, Failure> {
    use nix::sys::termios::{self, LocalFlags, SetArg};
    let stdin = std::io::stdin();
    let original = termios::tcgetattr(&stdin)
        .map_err(|e| anyhow::anyhow!("reading the terminal's settings: {e}"))?;
    let mut quiet = original.clone();
    // As golang.org/x/term's ReadPassword: no echo, line at a time, signals still work.
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet
        .local_flags
        .insert(LocalFlags::ICANON | LocalFlags::ISIG);
    termios::tcsetattr(&stdin, SetArg::TCSANOW, &quiet)
        .map_err(|e| anyhow::anyhow!("turning the terminal's echo off: {e}"))?;
    // The prompt only once echo is off, so nothing typed right after it shows.
    eprint!("{text}");
    let _ = std::io::stderr().flush();
    let mut line = Zeroizing::new(Vec::new());
    let read = stdin.lock().read_until(b'\n', &mut line);
    // Echo back on before anything else, even when the read failed.
    let restored = termios::tcsetattr(&stdin, SetArg::TCSANOW, &original);
    eprintln!();
    read.map_err(|e| anyhow::anyhow!("reading the password: {e}"))?;
    restored.map_err(|e| anyhow::anyhow!("restoring the terminal's settings: {e}"))?;
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    Ok(line)
}

/// Writes both files, each through a temporary file beside it renamed into place, so a
/// file is either absent, whole, or (with `force`) the old one. Without `force` a file
/// that appeared meanwhile is not replaced (`persist_noclobber`), and when the public key
/// cannot be written the private key is put back as it was (removed, or the old one).
fn write_pair(pair: &KeyPair, private: &Path, public: &Path, force: bool) -> Result<(), Failure> {
    let private_tmp = temporary(private, pair.private_pem.as_bytes(), 0o600)?;
    let public_tmp = temporary(public, pair.public_pem.as_bytes(), 0o644)?;
    // With `force`, the old private key is kept under a second name until the public
    // key is in place too, so a failure never leaves a new .key beside an old .pub.
    let backup = if force && private.exists() {
        let name = format!(
            ".{}.xbake-old",
            private
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        );
        let backup = parent(private).unwrap_or(Path::new(".")).join(name);
        let _ = std::fs::remove_file(&backup);
        std::fs::hard_link(private, &backup).ok().map(|_| backup)
    } else {
        None
    };
    place(private_tmp, private, force)?;
    if let Err(e) = place(public_tmp, public, force) {
        match &backup {
            Some(old) => {
                let _ = std::fs::rename(old, private);
            }
            None => {
                let _ = std::fs::remove_file(private);
            }
        }
        return Err(e);
    }
    if let Some(old) = backup {
        let _ = std::fs::remove_file(old);
    }
    if let Some(dir) = parent(private) {
        // The renames survive a crash only once the folder is on disk.
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

fn parent(path: &Path) -> Option<&Path> {
    match path.parent() {
        Some(p) if p.as_os_str().is_empty() => Some(Path::new(".")),
        other => other,
    }
}

fn temporary(path: &Path, bytes: &[u8], mode: u32) -> Result<tempfile::NamedTempFile, Failure> {
    use std::os::unix::fs::PermissionsExt;
    let dir = parent(path).unwrap_or(Path::new("."));
    let io = |e: std::io::Error| anyhow::anyhow!("writing {}: {e}", path.display());
    // tempfile creates it 0600, so the private key is never readable by others, not
    // even for a moment; the public key is opened up before it is renamed.
    let mut tmp = tempfile::Builder::new()
        .prefix(".xbake-key-")
        .tempfile_in(dir)
        .map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    Ok(tmp)
}

fn place(tmp: tempfile::NamedTempFile, path: &Path, force: bool) -> Result<(), Failure> {
    let placed = if force {
        tmp.persist(path)
    } else {
        tmp.persist_noclobber(path)
    };
    placed.map(drop).map_err(|e| {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            UsageError(format!(
                "{} appeared while the key was being made; pass --force to replace it",
                path.display()
            ))
            .into()
        } else {
            anyhow::anyhow!("writing {}: {}", path.display(), e.error).into()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_suffix_goes_on_the_last_component() {
        assert_eq!(
            with_suffix(Path::new("cosign"), ".key"),
            PathBuf::from("cosign.key")
        );
        assert_eq!(
            with_suffix(Path::new("out/my.keys/release"), ".pub"),
            PathBuf::from("out/my.keys/release.pub")
        );
    }

    fn pair() -> KeyPair {
        KeyPair {
            private_pem: "private\n".into(),
            public_pem: "public\n".into(),
        }
    }

    #[test]
    fn files_are_written_with_their_modes_and_not_replaced_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("k.key");
        let public = dir.path().join("k.pub");
        assert!(write_pair(&pair(), &private, &public, false).is_ok());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&private), 0o600);
        assert_eq!(mode(&public), 0o644);
        assert_eq!(std::fs::read_to_string(&private).unwrap(), "private\n");

        let other = KeyPair {
            private_pem: "other\n".into(),
            public_pem: "other pub\n".into(),
        };
        assert!(write_pair(&other, &private, &public, false).is_err());
        assert_eq!(std::fs::read_to_string(&private).unwrap(), "private\n");
        assert!(write_pair(&other, &private, &public, true).is_ok());
        assert_eq!(std::fs::read_to_string(&public).unwrap(), "other pub\n");
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn a_private_key_is_taken_back_when_its_public_key_cannot_be_placed() {
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("k.key");
        let public = dir.path().join("k.pub");
        // Someone else's k.pub appears after the check.
        std::fs::write(&public, "theirs\n").unwrap();
        assert!(write_pair(&pair(), &private, &public, false).is_err());
        assert!(!private.exists());
        assert_eq!(std::fs::read_to_string(&public).unwrap(), "theirs\n");
    }

    #[test]
    fn with_force_a_failed_public_key_puts_the_old_private_key_back() {
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("k.key");
        let public = dir.path().join("k.pub");
        std::fs::write(&private, "old private\n").unwrap();
        // A folder where the public key goes: no rename replaces it.
        std::fs::create_dir_all(public.join("in-the-way")).unwrap();
        assert!(write_pair(&pair(), &private, &public, true).is_err());
        assert_eq!(std::fs::read_to_string(&private).unwrap(), "old private\n");
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 2, "no backup or temporary file left: {left:?}");
    }
}
