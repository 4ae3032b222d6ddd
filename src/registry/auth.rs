//! Registry credentials in Docker's `config.json` format, which podman, buildah and skopeo
//! (`containers-auth.json(5)`) share:
//! `{"auths": {"host[:port]": {"auth": base64("user:password")}}}`.
//!
//! Lookup order is containers-auth.json(5)'s: `$REGISTRY_AUTH_FILE`, then
//! `$XDG_RUNTIME_DIR/containers/auth.json`, then Docker's `~/.docker/config.json`; the
//! first file with an entry for the registry wins. `login`/`logout` write the first of
//! those that applies. Credential helpers (`credsStore`, `credHelpers`) are not run.

use super::error::RegistryError;
use super::reference::DOCKER_HUB;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials {
            username: username.into(),
            password: password.into(),
        }
    }

    /// The `Authorization: Basic` value (RFC 7617).
    pub fn basic_header(&self) -> String {
        format!("Basic {}", BASE64.encode(self.user_colon_password()))
    }

    fn user_colon_password(&self) -> String {
        format!("{}:{}", self.username, self.password)
    }
}

/// Never print a password, even in a debug dump of an error or a client.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Where auth files may be, from the environment; a value of its own so tests never touch
/// the real home.
#[derive(Clone, Debug, Default)]
pub struct AuthFiles {
    /// `$REGISTRY_AUTH_FILE`: a file.
    pub registry_auth_file: Option<PathBuf>,
    /// `$XDG_RUNTIME_DIR`: the file is `containers/auth.json` below it.
    pub xdg_runtime_dir: Option<PathBuf>,
    /// `$HOME`: the file is `.docker/config.json` below it.
    pub home: Option<PathBuf>,
}

impl AuthFiles {
    pub fn from_env() -> AuthFiles {
        let var = |name| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        AuthFiles {
            registry_auth_file: var("REGISTRY_AUTH_FILE"),
            xdg_runtime_dir: var("XDG_RUNTIME_DIR"),
            home: var("HOME"),
        }
    }

    /// The candidate files, in lookup order.
    pub fn lookup_order(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        if let Some(file) = &self.registry_auth_file {
            files.push(file.clone());
        }
        if let Some(dir) = &self.xdg_runtime_dir {
            files.push(dir.join("containers/auth.json"));
        }
        if let Some(home) = &self.home {
            files.push(home.join(".docker/config.json"));
        }
        files
    }

    /// The file `login` and `logout` change: the first candidate whose variable is set,
    /// whether or not the file exists yet.
    pub fn write_target(&self) -> Option<PathBuf> {
        self.lookup_order().into_iter().next()
    }

    /// Credentials for `registry` (`host[:port]`, `docker.io` for Docker Hub) from the
    /// first file that has them. Missing files are skipped; a malformed one is an error.
    pub fn credentials(&self, registry: &str) -> Result<Option<Credentials>, RegistryError> {
        let registry = normalize_key(registry);
        for path in self.lookup_order() {
            let Some(file) = read_auth_file(&path)? else {
                continue;
            };
            if let Some(credentials) = find_entry(&file, &registry, &path)? {
                return Ok(Some(credentials));
            }
        }
        Ok(None)
    }

    /// Stores credentials for `registry`, keeping every other entry and key of the file.
    /// Returns the file written.
    pub fn login(
        &self,
        registry: &str,
        username: &str,
        password: &str,
    ) -> Result<PathBuf, RegistryError> {
        let registry = normalize_key(registry);
        let path = self.write_target().ok_or(RegistryError::NoAuthFile)?;
        let mut file = read_auth_file(&path)?.unwrap_or_else(|| Value::Object(Map::new()));
        let auths = auths_mut(&mut file, &path)?;
        // Reuse an existing key for this registry (Docker writes `https://index.docker.io/v1/`
        // for Docker Hub), so the docker CLI still finds the entry; otherwise use the name.
        let key = auths
            .keys()
            .find(|key| normalize_key(key) == registry)
            .cloned()
            .unwrap_or(registry);
        let credentials = Credentials::new(username, password);
        let entry = serde_json::json!({ "auth": BASE64.encode(credentials.user_colon_password()) });
        auths.insert(key, entry);
        write_auth_file(&path, &file)?;
        Ok(path)
    }

    /// Removes every entry for `registry` from the file `login` writes. Returns whether
    /// there was one.
    pub fn logout(&self, registry: &str) -> Result<bool, RegistryError> {
        let registry = normalize_key(registry);
        let path = self.write_target().ok_or(RegistryError::NoAuthFile)?;
        let Some(mut file) = read_auth_file(&path)? else {
            return Ok(false);
        };
        let auths = auths_mut(&mut file, &path)?;
        let before = auths.len();
        auths.retain(|key, _| normalize_key(key) != registry);
        if auths.len() == before {
            return Ok(false);
        }
        write_auth_file(&path, &file)?;
        Ok(true)
    }
}

/// Credentials for `registry` from the files the environment names.
pub fn credentials_for(registry: &str) -> Result<Option<Credentials>, RegistryError> {
    AuthFiles::from_env().credentials(registry)
}

/// `xbake login`: see [`AuthFiles::login`].
pub fn login(registry: &str, username: &str, password: &str) -> Result<PathBuf, RegistryError> {
    AuthFiles::from_env().login(registry, username, password)
}

/// `xbake logout`: see [`AuthFiles::logout`].
pub fn logout(registry: &str) -> Result<bool, RegistryError> {
    AuthFiles::from_env().logout(registry)
}

/// The registry an `auths` key is for: `https://index.docker.io/v1/` → `docker.io`,
/// `http://host:5000/v2/` → `host:5000`, `quay.io/org/repo` (a podman per-repository
/// entry) → `quay.io`.
pub fn normalize_key(key: &str) -> String {
    let without_scheme = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = without_scheme
        .split('/')
        .next()
        .unwrap_or(without_scheme)
        .to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_string()
        }
        _ => host,
    }
}

fn read_auth_file(path: &Path) -> Result<Option<Value>, RegistryError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(RegistryError::AuthFileIo {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| RegistryError::AuthFile {
        path: path.to_path_buf(),
        message: format!("invalid JSON: {e}"),
    })?;
    if !value.is_object() {
        return Err(RegistryError::AuthFile {
            path: path.to_path_buf(),
            message: "expected a JSON object".into(),
        });
    }
    Ok(Some(value))
}

/// The `auths` object of `file`, created if missing.
fn auths_mut<'a>(
    file: &'a mut Value,
    path: &Path,
) -> Result<&'a mut Map<String, Value>, RegistryError> {
    let malformed = || RegistryError::AuthFile {
        path: path.to_path_buf(),
        message: "\"auths\" is not a JSON object".into(),
    };
    let object = file.as_object_mut().ok_or_else(malformed)?;
    object
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(malformed)
}

/// The entry for `registry`: an exact key first, then any key that normalises to it.
/// An entry without usable credentials (e.g. one kept by a credential helper) is skipped.
fn find_entry(
    file: &Value,
    registry: &str,
    path: &Path,
) -> Result<Option<Credentials>, RegistryError> {
    let Some(auths) = file.get("auths") else {
        return Ok(None);
    };
    let auths = auths.as_object().ok_or_else(|| RegistryError::AuthFile {
        path: path.to_path_buf(),
        message: "\"auths\" is not a JSON object".into(),
    })?;
    let exact = auths.get(registry).map(|entry| (registry, entry));
    let normalized = auths
        .iter()
        .filter(|(key, _)| normalize_key(key) == registry)
        .map(|(key, entry)| (key.as_str(), entry));
    for (key, entry) in exact.into_iter().chain(normalized) {
        if let Some(credentials) = decode_entry(entry, key, path)? {
            return Ok(Some(credentials));
        }
    }
    Ok(None)
}

fn decode_entry(
    entry: &Value,
    key: &str,
    path: &Path,
) -> Result<Option<Credentials>, RegistryError> {
    let malformed = |what: &str| RegistryError::AuthFile {
        path: path.to_path_buf(),
        message: format!("entry {key:?}: {what}"),
    };
    let field = |name: &str| {
        entry
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    if let Some(auth) = field("auth") {
        let decoded = BASE64
            .decode(auth.trim())
            .map_err(|_| malformed("\"auth\" is not base64"))?;
        let text = String::from_utf8(decoded).map_err(|_| malformed("\"auth\" is not UTF-8"))?;
        let (username, password) = text
            .split_once(':')
            .ok_or_else(|| malformed("\"auth\" does not decode to user:password"))?;
        return Ok(Some(Credentials::new(username, password)));
    }
    match (field("username"), field("password")) {
        (Some(username), Some(password)) => Ok(Some(Credentials::new(username, password))),
        _ => Ok(None),
    }
}

/// Writes `file` to `path` atomically (a temporary file in the same folder, renamed into
/// place) with mode 0600, creating the folder (0700) if needed: the file holds passwords.
fn write_auth_file(path: &Path, file: &Value) -> Result<(), RegistryError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let io = |source| RegistryError::AuthFileIo {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io)?;
    let mut bytes = serde_json::to_vec_pretty(file).map_err(|e| RegistryError::AuthFile {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    bytes.push(b'\n');
    // tempfile creates the file 0600 already; set it anyway so the intent is explicit.
    let mut temp = tempfile::Builder::new()
        .prefix(".auth-")
        .tempfile_in(dir)
        .map_err(io)?;
    temp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(io)?;
    temp.write_all(&bytes).map_err(io)?;
    temp.as_file().sync_all().map_err(io)?;
    temp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    struct Env {
        _dir: tempfile::TempDir,
        root: PathBuf,
    }

    impl Env {
        fn new() -> Env {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().to_path_buf();
            Env { _dir: dir, root }
        }
        fn files(&self, registry_auth_file: bool, xdg: bool, home: bool) -> AuthFiles {
            AuthFiles {
                registry_auth_file: registry_auth_file.then(|| self.root.join("explicit.json")),
                xdg_runtime_dir: xdg.then(|| self.root.join("run")),
                home: home.then(|| self.root.join("home")),
            }
        }
        fn write(&self, rel: &str, text: &str) -> PathBuf {
            let path = self.root.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, text).unwrap();
            path
        }
    }

    fn auth(user: &str, pass: &str) -> String {
        BASE64.encode(format!("{user}:{pass}"))
    }

    #[test]
    fn lookup_order_and_first_file_with_the_registry_wins() {
        let env = Env::new();
        let all = env.files(true, true, true);
        assert_eq!(
            all.lookup_order(),
            vec![
                env.root.join("explicit.json"),
                env.root.join("run/containers/auth.json"),
                env.root.join("home/.docker/config.json"),
            ]
        );
        // No file at all: no credentials, no error.
        assert_eq!(all.credentials("r.io").unwrap(), None);

        env.write(
            "run/containers/auth.json",
            &format!(
                r#"{{"auths": {{"r.io": {{"auth": "{}"}}}}}}"#,
                auth("xdg", "p1")
            ),
        );
        env.write(
            "home/.docker/config.json",
            &format!(
                r#"{{"auths": {{"r.io": {{"auth": "{}"}}, "other.io": {{"auth": "{}"}}}}}}"#,
                auth("home", "p2"),
                auth("home-other", "p3")
            ),
        );
        // The explicit file exists but lacks r.io: the next file answers.
        env.write("explicit.json", r#"{"auths": {}}"#);
        assert_eq!(
            all.credentials("r.io").unwrap(),
            Some(Credentials::new("xdg", "p1"))
        );
        assert_eq!(
            all.credentials("other.io").unwrap(),
            Some(Credentials::new("home-other", "p3"))
        );
        assert_eq!(all.credentials("none.io").unwrap(), None);
    }

    #[test]
    fn malformed_file_is_an_error_naming_it() {
        let env = Env::new();
        let path = env.write("explicit.json", "{not json");
        let err = env
            .files(true, false, false)
            .credentials("r.io")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&path.display().to_string()) && err.contains("invalid JSON"),
            "{err}"
        );

        env.write("explicit.json", r#"{"auths": {"r.io": {"auth": "!!!"}}}"#);
        let err = env
            .files(true, false, false)
            .credentials("r.io")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not base64") && err.contains("r.io"), "{err}");

        env.write("explicit.json", r#"{"auths": []}"#);
        let err = env
            .files(true, false, false)
            .credentials("r.io")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a JSON object"), "{err}");
    }

    #[test]
    fn username_password_fields_and_docker_hub_keys() {
        let env = Env::new();
        env.write(
            "explicit.json",
            &format!(
                r#"{{"auths": {{
                    "https://index.docker.io/v1/": {{"auth": "{}"}},
                    "http://h.io:5000/v2/": {{"username": "u", "password": "p:with:colons"}},
                    "quay.io/org/repo": {{"auth": "{}"}},
                    "helper.io": {{}}
                }}, "credsStore": "desktop"}}"#,
                auth("hub", "secret"),
                auth("quay", "q")
            ),
        );
        let files = env.files(true, false, false);
        assert_eq!(
            files.credentials("docker.io").unwrap(),
            Some(Credentials::new("hub", "secret"))
        );
        assert_eq!(
            files.credentials("h.io:5000").unwrap(),
            Some(Credentials::new("u", "p:with:colons"))
        );
        assert_eq!(
            files.credentials("quay.io").unwrap(),
            Some(Credentials::new("quay", "q"))
        );
        assert_eq!(files.credentials("helper.io").unwrap(), None);
    }

    #[test]
    fn passwords_may_contain_colons_and_never_print() {
        let env = Env::new();
        env.write(
            "explicit.json",
            &format!(
                r#"{{"auths": {{"r.io": {{"auth": "{}"}}}}}}"#,
                auth("u", "a:b")
            ),
        );
        let c = env
            .files(true, false, false)
            .credentials("r.io")
            .unwrap()
            .unwrap();
        assert_eq!(c.password, "a:b");
        assert!(!format!("{c:?}").contains("a:b"));
        assert_eq!(c.basic_header(), format!("Basic {}", auth("u", "a:b")));
    }

    #[test]
    fn normalize_key_forms() {
        assert_eq!(normalize_key("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalize_key("registry-1.docker.io"), "docker.io");
        assert_eq!(normalize_key("docker.io"), "docker.io");
        assert_eq!(normalize_key("http://h:5000/v2/"), "h:5000");
        assert_eq!(normalize_key("Quay.IO/org"), "quay.io");
        assert_eq!(normalize_key("[::1]:5000"), "[::1]:5000");
    }

    #[test]
    fn write_target_is_the_first_variable_set() {
        let env = Env::new();
        assert_eq!(
            env.files(true, true, true).write_target(),
            Some(env.root.join("explicit.json"))
        );
        assert_eq!(
            env.files(false, true, true).write_target(),
            Some(env.root.join("run/containers/auth.json"))
        );
        assert_eq!(
            env.files(false, false, true).write_target(),
            Some(env.root.join("home/.docker/config.json"))
        );
        assert_eq!(env.files(false, false, false).write_target(), None);
        let err = env
            .files(false, false, false)
            .login("r.io", "u", "p")
            .unwrap_err();
        assert!(matches!(err, RegistryError::NoAuthFile));
    }

    #[test]
    fn login_creates_private_file_and_logout_removes_only_that_registry() {
        let env = Env::new();
        let files = env.files(false, true, true);
        let path = files.login("r.io:5000", "me", "pw").unwrap();
        assert_eq!(path, env.root.join("run/containers/auth.json"));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        assert_eq!(
            files.credentials("r.io:5000").unwrap(),
            Some(Credentials::new("me", "pw"))
        );
        // Nothing else was written: the home file does not exist.
        assert!(!env.root.join("home/.docker/config.json").exists());

        files.login("other.io", "o", "q").unwrap();
        files.login("r.io:5000", "me", "new").unwrap();
        assert_eq!(
            files.credentials("r.io:5000").unwrap(),
            Some(Credentials::new("me", "new"))
        );
        assert!(files.logout("r.io:5000").unwrap());
        assert!(!files.logout("r.io:5000").unwrap());
        assert_eq!(files.credentials("r.io:5000").unwrap(), None);
        assert_eq!(
            files.credentials("other.io").unwrap(),
            Some(Credentials::new("o", "q"))
        );
        // No temporary files left behind.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("auth.json")]);
    }

    #[test]
    fn login_preserves_other_keys_and_reuses_docker_hub_key() {
        let env = Env::new();
        let path = env.write(
            "home/.docker/config.json",
            &format!(
                r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{}"}}, "keep.io": {{"auth": "{}"}}}},
                    "credsStore": "pass", "proxies": {{"default": {{"httpProxy": "x"}}}}}}"#,
                auth("old", "old"),
                auth("k", "k")
            ),
        );
        let files = env.files(false, false, true);
        files.login("docker.io", "new", "pw").unwrap();
        let written: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(written["credsStore"], "pass");
        assert_eq!(written["proxies"]["default"]["httpProxy"], "x");
        let auths = written["auths"].as_object().unwrap();
        assert_eq!(auths.len(), 2, "{auths:?}");
        assert_eq!(
            auths["https://index.docker.io/v1/"]["auth"],
            auth("new", "pw")
        );
        assert_eq!(auths["keep.io"]["auth"], auth("k", "k"));

        assert!(files.logout("docker.io").unwrap());
        let written: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(written["auths"].as_object().unwrap().len(), 1);
        assert_eq!(written["credsStore"], "pass");
    }

    #[test]
    fn logout_without_a_file_is_not_an_error() {
        let env = Env::new();
        assert!(!env.files(true, false, false).logout("r.io").unwrap());
        assert!(!env.root.join("explicit.json").exists());
    }
}
