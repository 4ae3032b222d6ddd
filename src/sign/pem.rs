//! PEM as Go's `encoding/pem` reads and writes it: the first `-----BEGIN TYPE-----` block
//! (text before it is skipped), standard base64 in the body, and on writing 64-column
//! lines and a final newline, which is what `cosign generate-key-pair` puts in its files.
//! cosign's private-key type is its own, so the RustCrypto PEM readers (which know the
//! RFC 7468 labels) do not apply.

use super::SignError;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

/// One decoded block.
pub(super) struct Block {
    pub label: String,
    pub body: Vec<u8>,
}

/// The first PEM block of `text`.
pub(super) fn decode(text: &str) -> Result<Block, SignError> {
    let mut lines = text.lines().map(str::trim);
    let label = lines
        .by_ref()
        .find_map(|line| {
            line.strip_prefix("-----BEGIN ")
                .and_then(|rest| rest.strip_suffix("-----"))
        })
        .ok_or_else(|| SignError::Pem("no -----BEGIN …----- line".into()))?
        .to_string();
    let end = format!("-----END {label}-----");
    let mut body = String::new();
    let mut ended = false;
    for line in lines {
        if line == end {
            ended = true;
            break;
        }
        // RFC 1421 headers (`Proc-Type: 4,ENCRYPTED`) belong to OpenSSL's old encrypted
        // keys, which neither cosign nor xbake writes or reads.
        if line.contains(':') {
            return Err(SignError::Pem(format!(
                "the {label} block has headers ({line}); OpenSSL's legacy encrypted PEM is \
                 not supported"
            )));
        }
        body.push_str(line);
    }
    if !ended {
        return Err(SignError::Pem(format!(
            "the {label} block has no {end} line"
        )));
    }
    let body = BASE64
        .decode(body.as_bytes())
        .map_err(|e| SignError::Pem(format!("the {label} block is not base64: {e}")))?;
    Ok(Block { label, body })
}

/// `body` as a PEM block of type `label`, as Go's `pem.EncodeToMemory` writes it.
pub(super) fn encode(label: &str, body: &[u8]) -> String {
    let b64 = BASE64.encode(body);
    let mut out = format!("-----BEGIN {label}-----\n");
    // Base64 is ASCII, so every 64-byte chunk is whole characters.
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_round_trips_with_go_s_line_length() {
        let body: Vec<u8> = (0..=255u8).collect();
        let text = encode("PUBLIC KEY", &body);
        assert!(text.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert!(text.ends_with("\n-----END PUBLIC KEY-----\n"));
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1..lines.len() - 2].iter().all(|l| l.len() == 64));
        assert!(lines[lines.len() - 2].len() <= 64);
        let block = decode(&text).unwrap();
        assert_eq!(block.label, "PUBLIC KEY");
        assert_eq!(block.body, body);
    }

    #[test]
    fn text_around_the_block_and_crlf_are_tolerated() {
        let text = format!(
            "a comment\r\n{}trailing\n",
            encode("EC PRIVATE KEY", b"abc").replace('\n', "\r\n")
        );
        let block = decode(&text).unwrap();
        assert_eq!(
            (block.label.as_str(), block.body.as_slice()),
            ("EC PRIVATE KEY", &b"abc"[..])
        );
    }

    #[test]
    fn broken_blocks_are_refused() {
        for text in [
            "",
            "just text",
            "-----BEGIN PUBLIC KEY-----\nAAAA\n",
            "-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n",
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\nAAAA\n-----END RSA PRIVATE KEY-----\n",
        ] {
            assert!(matches!(decode(text), Err(SignError::Pem(_))), "{text:?}");
        }
    }
}
