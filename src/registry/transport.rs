//! HTTP to one registry, with its authentication dance (distribution spec,
//! "Authentication"; docker's token spec): every request goes out anonymously or with what
//! worked before; on `401` the `WWW-Authenticate` challenge says how to authenticate —
//! `Basic` (send the credentials) or `Bearer` (get a token for the request's scopes from the
//! named token server) — and the request is retried once. Tokens are cached per scope.
//!
//! Credentials and tokens only ever go to the registry's own origin (and the token server
//! it names); ureq is told not to carry `Authorization` across a redirect to another host,
//! since registries redirect blob downloads to storage services with signed URLs.

use super::auth::Credentials;
use super::challenge::{Challenge, parse_challenges};
use super::endpoint::same_origin;
use super::error::RegistryError;
use super::request_log::{Counted, RequestCounters};
use super::token::{TokenServer, parse_token_response};
use std::collections::HashMap;
use std::io::Read;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use ureq::config::RedirectAuthHeaders;
use ureq::http::{Method, Request, Response, StatusCode, header};
use ureq::{Agent, Body, SendBody};

/// Error bodies and token answers are small; a hostile server must not make us buffer more.
const SMALL_BODY_LIMIT: u64 = 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// What a request carries.
pub(crate) enum Payload<'a> {
    None,
    /// Resent as is if authentication needs a second try.
    Bytes(&'a [u8]),
    /// Sent once with this `Content-Length`: a stream cannot be replayed after a 401, so
    /// callers authenticate with an earlier request (the upload's POST) first.
    Stream {
        reader: &'a mut dyn Read,
        size: u64,
    },
}

/// One request to the registry.
pub(crate) struct Call<'a> {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(header::HeaderName, String)>,
    /// Token scopes the request needs (`repository:a/b:pull`).
    pub scopes: &'a [String],
    /// Names the image or blob in error messages.
    pub reference: &'a str,
    /// Blob downloads follow redirects; uploads must not (a redirected PUT would lose its
    /// body).
    pub follow_redirects: bool,
}

/// What the registry said earlier about how to authenticate.
#[derive(Default)]
struct AuthState {
    /// It asked for Basic: send the credentials on every request from now on.
    basic: bool,
    /// It asked for a Bearer token from this server: get one for a new scope up front,
    /// without waiting for another 401.
    token_server: Option<TokenServer>,
    tokens: HashMap<Vec<String>, String>,
}

pub(crate) struct Transport {
    registry: String,
    base: String,
    agent: Agent,
    credentials: Option<Credentials>,
    auth: Mutex<AuthState>,
    pub(crate) counters: RequestCounters,
}

/// How xbake talks HTTP (registries, `ADD https://…`): statuses are answers to
/// interpret (401 → authenticate, 404 → unknown), not errors; ten redirects at most; a
/// connect timeout; the proxy from the environment, except for loopback hosts.
pub(crate) fn http_agent_config(
    loopback: bool,
) -> ureq::config::ConfigBuilder<ureq::typestate::AgentScope> {
    let proxy = if loopback {
        None
    } else {
        ureq::Proxy::try_from_env()
    };
    Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(10)
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .user_agent(format!("xbake/{}", env!("CARGO_PKG_VERSION")))
        .proxy(proxy)
}

impl Transport {
    /// `base` is `scheme://host[:port]`; `loopback` registries bypass any proxy.
    pub fn new(
        registry: &str,
        base: String,
        loopback: bool,
        credentials: Option<Credentials>,
    ) -> Transport {
        let agent: Agent = http_agent_config(loopback)
            .redirect_auth_headers(RedirectAuthHeaders::SameHost)
            .build()
            .into();
        Transport {
            registry: registry.to_string(),
            base,
            agent,
            credentials,
            auth: Mutex::new(AuthState::default()),
            counters: RequestCounters::default(),
        }
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    pub fn count(&self, what: Counted) {
        self.counters.count(what);
    }

    /// Sends `call`, authenticating as the registry asks. Any status comes back as a
    /// response, a final 401 included; callers turn statuses into errors.
    pub fn send(&self, call: &Call, mut payload: Payload) -> Result<Response<Body>, RegistryError> {
        let mut authorization = self.known_authorization(call)?;
        let mut retried = false;
        loop {
            let response = self.send_once(call, authorization.as_deref(), &mut payload)?;
            if response.status() != StatusCode::UNAUTHORIZED || retried {
                return Ok(response);
            }
            retried = true;
            let challenges = parse_challenges(
                response
                    .headers()
                    .get_all(header::WWW_AUTHENTICATE)
                    .iter()
                    .filter_map(|v| v.to_str().ok()),
            );
            match self.answer_challenges(&challenges, call, authorization.as_deref())? {
                Some(answer) => authorization = Some(answer),
                None => return Ok(response),
            }
            if matches!(payload, Payload::Stream { .. }) {
                // The streamed body is spent: report the 401. What the challenge taught
                // (a token, or Basic) is kept for the caller's next request.
                return Ok(response);
            }
        }
    }

    fn state(&self) -> MutexGuard<'_, AuthState> {
        // A panic elsewhere while holding the lock leaves a usable cache.
        self.auth.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The `Authorization` to send before any challenge: a cached token covering the
    /// call's scopes, a fresh one if the registry already told us its token server, or
    /// basic credentials if it asked for those.
    fn known_authorization(&self, call: &Call) -> Result<Option<String>, RegistryError> {
        let (token, server, basic) = {
            let state = self.state();
            let token = state
                .tokens
                .iter()
                .find(|(scopes, _)| scopes_cover(scopes, call.scopes))
                .map(|(_, token)| token.clone());
            (token, state.token_server.clone(), state.basic)
        };
        if let Some(token) = token {
            return Ok(Some(format!("Bearer {token}")));
        }
        if let Some(server) = server {
            let token = self.fetch_token(&server, call.scopes.to_vec(), call.reference)?;
            return Ok(Some(format!("Bearer {token}")));
        }
        if basic {
            return Ok(self.credentials.as_ref().map(Credentials::basic_header));
        }
        Ok(None)
    }

    /// What to retry with after a 401, or None when there is nothing new to try.
    fn answer_challenges(
        &self,
        challenges: &[Challenge],
        call: &Call,
        sent: Option<&str>,
    ) -> Result<Option<String>, RegistryError> {
        if let Some((server, challenge)) = challenges
            .iter()
            .find_map(|c| TokenServer::from_challenge(c).map(|s| (s, c)))
        {
            let mut scopes = call.scopes.to_vec();
            // The registry may name a scope we did not think of; ask for it too.
            if let Some(wanted) = challenge.param("scope") {
                for scope in wanted.split(' ').filter(|s| !s.is_empty()) {
                    if !scopes.iter().any(|s| s == scope) {
                        scopes.push(scope.to_string());
                    }
                }
            }
            self.state().token_server = Some(server.clone());
            let token = self.fetch_token(&server, scopes, call.reference)?;
            return Ok(Some(format!("Bearer {token}")));
        }
        // Basic: retry with the credentials, unless they were what was just refused.
        if challenges.iter().any(|c| c.scheme == "basic")
            && let Some(credentials) = &self.credentials
        {
            let header = credentials.basic_header();
            if sent != Some(header.as_str()) {
                self.state().basic = true;
                return Ok(Some(header));
            }
        }
        Ok(None)
    }

    fn fetch_token(
        &self,
        server: &TokenServer,
        scopes: Vec<String>,
        reference: &str,
    ) -> Result<String, RegistryError> {
        self.count(Counted::TokenFetch);
        let url = server.url(
            &scopes,
            self.credentials.as_ref().map(|c| c.username.as_str()),
        );
        let mut builder = Request::get(&url).header(header::ACCEPT, "application/json");
        if let Some(credentials) = &self.credentials {
            builder = builder.header(header::AUTHORIZATION, credentials.basic_header());
        }
        let request = builder
            .body(SendBody::none())
            .map_err(|e| self.invalid(reference, format!("token realm {url:?}: {e}")))?;
        let mut response = self
            .agent
            .run(request)
            .map_err(|e| self.transport_error(e, reference, &url))?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let detail = error_detail(&mut response);
            return Err(RegistryError::Unauthorized {
                registry: self.registry.clone(),
                reference: reference.to_string(),
                detail: format!(
                    " (its token server {} answered {}{detail})",
                    server.realm,
                    status.as_u16()
                ),
                user: self.credentials.as_ref().map(|c| c.username.clone()),
            });
        }
        if !status.is_success() {
            let detail = error_detail(&mut response);
            return Err(RegistryError::Status {
                registry: self.registry.clone(),
                reference: reference.to_string(),
                operation: format!("a token request to {}", server.realm),
                status: status.as_u16(),
                detail,
            });
        }
        let bytes = read_limited(&mut response, SMALL_BODY_LIMIT)
            .map_err(|e| self.transport_error(e, reference, &url))?;
        let token = parse_token_response(&bytes)
            .map_err(|message| self.invalid(reference, format!("{}: {message}", server.realm)))?;
        self.state().tokens.insert(scopes, token.clone());
        Ok(token)
    }

    fn send_once(
        &self,
        call: &Call,
        authorization: Option<&str>,
        payload: &mut Payload,
    ) -> Result<Response<Body>, RegistryError> {
        let mut builder = Request::builder()
            .method(call.method.clone())
            .uri(call.url.as_str());
        for (name, value) in &call.headers {
            builder = builder.header(name, value);
        }
        if let Some(authorization) = authorization.filter(|_| same_origin(&self.base, &call.url)) {
            builder = builder.header(header::AUTHORIZATION, authorization);
        }
        match payload {
            Payload::None => self.dispatch(call, builder, SendBody::none()),
            Payload::Bytes(bytes) => {
                // A copy of the slice, so that a retry sends the bytes from the start.
                let mut bytes: &[u8] = bytes;
                let builder = builder.header(header::CONTENT_LENGTH, bytes.len());
                self.dispatch(call, builder, SendBody::from_reader(&mut bytes))
            }
            Payload::Stream { reader, size } => {
                let builder = builder.header(header::CONTENT_LENGTH, *size);
                self.dispatch(call, builder, SendBody::from_reader(&mut **reader))
            }
        }
    }

    fn dispatch(
        &self,
        call: &Call,
        builder: ureq::http::request::Builder,
        body: SendBody,
    ) -> Result<Response<Body>, RegistryError> {
        let request = builder
            .body(body)
            .map_err(|e| self.invalid(call.reference, format!("URL {:?}: {e}", call.url)))?;
        let request = if call.follow_redirects {
            request
        } else {
            self.agent
                .configure_request(request)
                .max_redirects(0)
                .build()
        };
        self.agent
            .run(request)
            .map_err(|e| self.transport_error(e, call.reference, &call.url))
    }

    fn invalid(&self, reference: &str, message: String) -> RegistryError {
        RegistryError::InvalidResponse {
            registry: self.registry.clone(),
            reference: reference.to_string(),
            message,
        }
    }

    /// A failed exchange, with advice for the two usual causes: nothing listening, and
    /// TLS spoken to a plain-HTTP registry (or an unverifiable certificate).
    pub fn transport_error(&self, error: ureq::Error, reference: &str, url: &str) -> RegistryError {
        let refused = match &error {
            ureq::Error::Io(e) => e.kind() == std::io::ErrorKind::ConnectionRefused,
            ureq::Error::ConnectionFailed => true,
            _ => false,
        };
        if refused {
            return RegistryError::ConnectionRefused {
                reference: reference.to_string(),
                url: origin(url).to_string(),
            };
        }
        let tls = match &error {
            ureq::Error::Tls(message) => Some(message.to_string()),
            ureq::Error::Rustls(e) => Some(e.to_string()),
            // rustls reports handshake failures (a plain-HTTP server's answer, a bad
            // certificate) through the socket as InvalidData, wrapping its own error.
            ureq::Error::Io(e)
                if url.starts_with("https://") && e.kind() == std::io::ErrorKind::InvalidData =>
            {
                Some(e.to_string())
            }
            _ => None,
        };
        match tls {
            Some(message) => RegistryError::Tls {
                registry: self.registry.clone(),
                reference: reference.to_string(),
                message,
            },
            None => RegistryError::Transport {
                registry: self.registry.clone(),
                reference: reference.to_string(),
                source: error,
            },
        }
    }

    /// The error for an unexpected status; 404s say what was unknown.
    pub fn status_error(
        &self,
        response: &mut Response<Body>,
        operation: &str,
        subject: Subject,
        reference: &str,
    ) -> RegistryError {
        let status = response.status();
        let detail = error_detail(response);
        let registry = self.registry.clone();
        let reference = reference.to_string();
        match (status, subject) {
            (StatusCode::UNAUTHORIZED, _) => RegistryError::Unauthorized {
                registry,
                reference,
                detail,
                user: self.credentials.as_ref().map(|c| c.username.clone()),
            },
            (StatusCode::NOT_FOUND, Subject::Manifest) => RegistryError::ManifestUnknown {
                registry,
                reference,
                detail,
            },
            (StatusCode::NOT_FOUND, Subject::Blob) => RegistryError::BlobUnknown {
                registry,
                reference,
                detail,
            },
            _ => RegistryError::Status {
                registry,
                reference,
                operation: operation.to_string(),
                status: status.as_u16(),
                detail,
            },
        }
    }
}

/// What a request was about, for naming a 404.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Subject {
    Manifest,
    Blob,
    /// Uploads and anything else: a 404 is reported as the bare status.
    Other,
}

/// Reads a whole body, refusing more than `limit` bytes.
pub(crate) fn read_limited(
    response: &mut Response<Body>,
    limit: u64,
) -> Result<Vec<u8>, ureq::Error> {
    response.body_mut().with_config().limit(limit).read_to_vec()
}

/// `scheme://host[:port]` of a URL.
fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find(['/', '?']) {
        Some(end) => &url[..after_scheme + end],
        None => url,
    }
}

/// Whether a token for `have` serves a request needing `want`: every wanted scope is
/// granted, `pull,push` covering `pull`.
fn scopes_cover(have: &[String], want: &[String]) -> bool {
    want.iter().all(|wanted| {
        let Some((resource, actions)) = wanted.rsplit_once(':') else {
            return have.contains(wanted);
        };
        have.iter().any(|granted| {
            granted
                .rsplit_once(':')
                .is_some_and(|(r, granted_actions)| {
                    r == resource
                        && actions
                            .split(',')
                            .all(|a| granted_actions.split(',').any(|g| g == a))
                })
        })
    })
}

/// The registry's own words about a failure, for error messages: the distribution spec's
/// error body (`{"errors": [{"code": "MANIFEST_UNKNOWN", "message": "…"}]}`), or the first
/// line of a plain-text body.
pub(crate) fn error_detail(response: &mut Response<Body>) -> String {
    let bytes = read_limited(response, SMALL_BODY_LIMIT).unwrap_or_default();
    describe_error_body(&bytes)
}

pub(crate) fn describe_error_body(bytes: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        code: Option<String>,
        message: Option<String>,
    }
    if let Ok(parsed) = serde_json::from_slice::<Errors>(bytes) {
        let parts: Vec<String> = parsed
            .errors
            .iter()
            .map(|e| match (&e.code, &e.message) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (Some(text), None) | (None, Some(text)) => text.clone(),
                (None, None) => String::new(),
            })
            .filter(|s| !s.is_empty())
            .collect();
        if !parts.is_empty() {
            return format!(" ({})", parts.join("; "));
        }
    }
    let text = String::from_utf8_lossy(bytes);
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    if line.is_empty() {
        return String::new();
    }
    let short: String = line.chars().filter(|c| !c.is_control()).take(200).collect();
    format!(" ({short})")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn push_tokens_serve_pulls_but_not_the_reverse() {
        let push = v(&["repository:a/b:pull,push"]);
        let pull = v(&["repository:a/b:pull"]);
        assert!(scopes_cover(&push, &pull));
        assert!(scopes_cover(&push, &push));
        assert!(!scopes_cover(&pull, &push));
        assert!(!scopes_cover(&push, &v(&["repository:a/c:pull"])));
        let mount = v(&["repository:a/b:pull,push", "repository:c:pull"]);
        assert!(scopes_cover(&mount, &pull));
        assert!(!scopes_cover(&push, &mount));
        assert!(scopes_cover(&mount, &mount));
    }

    #[test]
    fn registry_error_bodies_become_short_details() {
        assert_eq!(
            describe_error_body(
                br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}"#
            ),
            " (MANIFEST_UNKNOWN: manifest unknown)"
        );
        assert_eq!(
            describe_error_body(
                br#"{"errors":[{"code":"UNAUTHORIZED","message":"a"},{"code":"DENIED"}]}"#
            ),
            " (UNAUTHORIZED: a; DENIED)"
        );
        assert_eq!(describe_error_body(b"\n  Not Found\nmore"), " (Not Found)");
        assert_eq!(describe_error_body(b""), "");
        assert_eq!(describe_error_body(&[b'x'; 500]).len(), 203);
    }

    #[test]
    fn origin_of_urls() {
        assert_eq!(origin("http://h:1/v2/x"), "http://h:1");
        assert_eq!(origin("https://h?x"), "https://h");
        assert_eq!(origin("http://h"), "http://h");
    }
}
