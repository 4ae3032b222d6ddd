//! `WWW-Authenticate` challenges (RFC 7235 §4.1), as a registry sends them with a 401
//! (distribution spec, "Authentication"; docker's token spec,
//! https://distribution.github.io/distribution/spec/auth/token/):
//!
//! `Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/debian:pull"`
//!
//! Values may be quoted strings holding commas (`scope="repository:a:pull,push"`) and
//! backslash escapes, and one header may carry several challenges (`Basic realm="x", Bearer realm="y"`).

use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// Lowercase: `basic`, `bearer`.
    pub scheme: String,
    /// Parameter names are lowercase (they are case-insensitive); values as sent.
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// The challenges in every `WWW-Authenticate` header value given, in order.
pub fn parse_challenges<'a>(headers: impl IntoIterator<Item = &'a str>) -> Vec<Challenge> {
    headers
        .into_iter()
        .flat_map(|header| Parser::new(header).challenges())
        .collect()
}

struct Parser<'a> {
    text: &'a [u8],
    pos: usize,
}

/// RFC 7230 §3.2.6 `tchar`.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Parser<'a> {
        Parser {
            text: text.as_bytes(),
            pos: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn skip_while(&mut self, f: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
    }

    fn skip_spaces(&mut self) {
        self.skip_while(|b| b == b' ' || b == b'\t');
    }

    fn token(&mut self) -> String {
        let start = self.pos;
        self.skip_while(is_token_char);
        String::from_utf8_lossy(&self.text[start..self.pos]).into_owned()
    }

    /// A quoted string after its opening quote, unescaping `\x`; an unterminated string
    /// ends at the end of the header.
    fn quoted(&mut self) -> String {
        let mut out = Vec::new();
        while let Some(b) = self.peek() {
            self.pos += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(escaped) = self.peek() {
                        out.push(escaped);
                        self.pos += 1;
                    }
                }
                _ => out.push(b),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    fn challenges(mut self) -> Vec<Challenge> {
        let mut found = Vec::new();
        loop {
            self.skip_while(|b| b == b' ' || b == b'\t' || b == b',');
            let scheme = self.token();
            if scheme.is_empty() {
                // Nothing more we understand (end, or garbage): stop.
                break;
            }
            let params = self.params();
            found.push(Challenge {
                scheme: scheme.to_ascii_lowercase(),
                params,
            });
        }
        found
    }

    /// `name=value` pairs up to the next challenge's scheme (a token not followed by `=`).
    fn params(&mut self) -> BTreeMap<String, String> {
        let mut params = BTreeMap::new();
        loop {
            self.skip_while(|b| b == b' ' || b == b'\t' || b == b',');
            let start = self.pos;
            let name = self.token();
            self.skip_spaces();
            if name.is_empty() || self.peek() != Some(b'=') {
                // The next challenge's scheme (or the end): give it back.
                self.pos = start;
                return params;
            }
            self.pos += 1;
            self.skip_spaces();
            let value = if self.peek() == Some(b'"') {
                self.pos += 1;
                self.quoted()
            } else {
                self.token()
            };
            params.insert(name.to_ascii_lowercase(), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(header: &str) -> Challenge {
        let mut all = parse_challenges([header]);
        assert_eq!(all.len(), 1, "{header}: {all:?}");
        all.remove(0)
    }

    #[test]
    fn docker_hub_bearer_challenge() {
        let c = one(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/debian:pull""#,
        );
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c.param("service"), Some("registry.docker.io"));
        assert_eq!(c.param("scope"), Some("repository:library/debian:pull"));
    }

    #[test]
    fn quoted_commas_escapes_spaces_and_case() {
        let c = one(
            r#"bearer  Realm = "http://127.0.0.1:1/token" , scope="repository:a/b:pull,push repository:c:pull", error="say \"no\"",service=plain"#,
        );
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.param("realm"), Some("http://127.0.0.1:1/token"));
        assert_eq!(
            c.param("scope"),
            Some("repository:a/b:pull,push repository:c:pull")
        );
        assert_eq!(c.param("error"), Some(r#"say "no""#));
        assert_eq!(c.param("service"), Some("plain"));
    }

    #[test]
    fn basic_and_several_challenges() {
        assert_eq!(one(r#"Basic realm="basic-realm""#).scheme, "basic");
        assert!(one("Basic").params.is_empty());
        let all = parse_challenges([r#"Basic realm="a, b", Bearer realm="https://x/t",service=s"#]);
        assert_eq!(all.len(), 2, "{all:?}");
        assert_eq!(all[0].scheme, "basic");
        assert_eq!(all[0].param("realm"), Some("a, b"));
        assert_eq!(all[1].scheme, "bearer");
        assert_eq!(all[1].param("service"), Some("s"));
        // Several header lines.
        let lines = parse_challenges(["Basic realm=x", "Bearer realm=y"]);
        assert_eq!(
            lines.iter().map(|c| c.scheme.as_str()).collect::<Vec<_>>(),
            ["basic", "bearer"]
        );
    }

    #[test]
    fn garbage_and_unterminated_values_do_not_panic() {
        assert!(parse_challenges([""]).is_empty());
        assert!(parse_challenges(["  ,, "]).is_empty());
        assert!(parse_challenges(["=\"x\""]).is_empty());
        let c = one(r#"Bearer realm="unterminated"#);
        assert_eq!(c.param("realm"), Some("unterminated"));
        let c = one(r#"Bearer realm="trailing backslash\"#);
        assert_eq!(c.param("realm"), Some("trailing backslash"));
        let c = one("Bearer realm=");
        assert_eq!(c.param("realm"), Some(""));
    }
}
