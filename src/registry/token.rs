//! Bearer tokens (docker's token authentication spec,
//! https://distribution.github.io/distribution/spec/auth/token/): after a
//! `WWW-Authenticate: Bearer realm=…,service=…` challenge, GET
//! `realm?service=S&scope=A&scope=B` (with basic credentials when we have them) and use the
//! `token` (or OAuth2's `access_token`) of the JSON answer as `Authorization: Bearer`.

use super::challenge::Challenge;
use super::endpoint::with_query;

/// The token server a registry named in its challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TokenServer {
    pub realm: String,
    pub service: Option<String>,
}

impl TokenServer {
    /// From a `Bearer` challenge with an http(s) realm.
    pub fn from_challenge(challenge: &Challenge) -> Option<TokenServer> {
        if challenge.scheme != "bearer" {
            return None;
        }
        let realm = challenge.param("realm")?;
        if !(realm.starts_with("https://") || realm.starts_with("http://")) {
            return None;
        }
        Some(TokenServer {
            realm: realm.to_string(),
            service: challenge.param("service").map(str::to_string),
        })
    }

    /// The token request URL for `scopes` (each its own `scope` parameter, as the spec
    /// asks); `account` is the user name, which Docker sends too.
    pub fn url(&self, scopes: &[String], account: Option<&str>) -> String {
        let mut params: Vec<(&str, &str)> = Vec::new();
        if let Some(service) = &self.service {
            params.push(("service", service));
        }
        for scope in scopes {
            params.push(("scope", scope));
        }
        if let Some(account) = account {
            params.push(("account", account));
        }
        with_query(&self.realm, &params)
    }
}

/// The token in a token server's answer.
pub(crate) fn parse_token_response(bytes: &[u8]) -> Result<String, String> {
    #[derive(serde::Deserialize)]
    struct Answer {
        token: Option<String>,
        access_token: Option<String>,
    }
    let answer: Answer =
        serde_json::from_slice(bytes).map_err(|e| format!("token answer is not JSON: {e}"))?;
    answer
        .token
        .or(answer.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| "token answer has neither \"token\" nor \"access_token\"".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::challenge::parse_challenges;

    #[test]
    fn token_server_from_challenge_and_url() {
        let challenges = parse_challenges([
            r#"Bearer realm="https://auth.example/token?x=1",service="reg.example",scope="repository:a:pull""#,
        ]);
        let server = TokenServer::from_challenge(&challenges[0]).unwrap();
        assert_eq!(server.service.as_deref(), Some("reg.example"));
        let url = server.url(
            &["repository:a:pull,push".into(), "repository:b:pull".into()],
            Some("me"),
        );
        assert_eq!(
            url,
            "https://auth.example/token?x=1&service=reg.example&scope=repository%3Aa%3Apull%2Cpush&scope=repository%3Ab%3Apull&account=me"
        );
        let basic = parse_challenges(["Basic realm=x"]);
        assert_eq!(TokenServer::from_challenge(&basic[0]), None);
        let odd_realm = parse_challenges(["Bearer realm=file:///etc/passwd"]);
        assert_eq!(TokenServer::from_challenge(&odd_realm[0]), None);
    }

    #[test]
    fn token_answers() {
        assert_eq!(
            parse_token_response(br#"{"token":"t1","expires_in":300}"#).unwrap(),
            "t1"
        );
        assert_eq!(
            parse_token_response(br#"{"access_token":"t2"}"#).unwrap(),
            "t2"
        );
        assert_eq!(
            parse_token_response(br#"{"token":"t1","access_token":"t2"}"#).unwrap(),
            "t1"
        );
        assert!(parse_token_response(br#"{"token":""}"#).is_err());
        assert!(parse_token_response(b"<html>").is_err());
    }
}
