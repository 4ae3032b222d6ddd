//! Supply-chain documents that travel with an image: SLSA provenance and SPDX SBOMs as
//! in-toto statements, attached the way BuildKit attaches them (attestation manifests in
//! the index) and, on request, as OCI 1.1 referrers. Nothing here changes an image
//! manifest: attestations are manifests of their own that point at one.

pub mod manifest;
pub mod provenance;
pub mod read;
pub mod sbom;
pub mod sources;
pub mod statement;

/// The predicate types BuildKit writes, so tools that read BuildKit's find ours.
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
pub const SPDX_DOCUMENT: &str = "https://spdx.dev/Document";
/// The media type of an in-toto statement layer.
pub const IN_TOTO_MEDIA_TYPE: &str = "application/vnd.in-toto+json";
/// The annotation on a statement layer naming its predicate type.
pub const PREDICATE_TYPE_ANNOTATION: &str = "in-toto.io/predicate-type";
/// BuildKit's annotations on an attestation manifest's index entry.
pub const REFERENCE_TYPE: &str = "vnd.docker.reference.type";
pub const REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";
pub const ATTESTATION_MANIFEST: &str = "attestation-manifest";

/// What `--provenance`, `--sbom` and `--attest-referrers` asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttestOptions {
    pub provenance: Option<ProvenanceMode>,
    pub sbom: bool,
    /// Also attach every statement as an OCI 1.1 referrer of its platform manifest.
    pub referrers: bool,
    /// The image name the statements' subjects carry; None: the `--push` reference.
    /// (`verify IMAGE` gives the published one, so the rebuild's index can match.)
    pub image_name: Option<String>,
}

impl AttestOptions {
    pub fn any(&self) -> bool {
        self.provenance.is_some() || self.sbom
    }
}

/// `--provenance mode=min|max[,timestamps=true]` (BuildKit's spelling).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProvenanceMode {
    /// max: also every step of the output stage as the plan ran it.
    pub max: bool,
    /// Wall-clock start and finish times: the attestation then differs on every build.
    pub timestamps: bool,
}

impl ProvenanceMode {
    /// `true`, `false` (None), or `mode=…,timestamps=…`.
    pub fn parse(text: &str) -> Result<Option<ProvenanceMode>, String> {
        match text {
            "true" | "1" | "" => return Ok(Some(ProvenanceMode::default())),
            "false" | "0" => return Ok(None),
            _ => {}
        }
        let mut mode = ProvenanceMode::default();
        for part in text.split(',') {
            match part.split_once('=') {
                Some(("mode", "min")) => mode.max = false,
                Some(("mode", "max")) => mode.max = true,
                Some(("timestamps", "true")) => mode.timestamps = true,
                Some(("timestamps", "false")) => mode.timestamps = false,
                Some(("version", "v1")) => {}
                _ => {
                    return Err(format!(
                        "unknown provenance option {part:?}; use true, false, \
                         mode=min|max, timestamps=true|false"
                    ));
                }
            }
        }
        Ok(Some(mode))
    }
}

#[cfg(test)]
mod tests {
    use super::ProvenanceMode;

    #[test]
    fn provenance_options_parse_as_buildx_spells_them() {
        assert_eq!(
            ProvenanceMode::parse("true"),
            Ok(Some(ProvenanceMode::default()))
        );
        assert_eq!(ProvenanceMode::parse("false"), Ok(None));
        assert_eq!(
            ProvenanceMode::parse("mode=max,timestamps=true"),
            Ok(Some(ProvenanceMode {
                max: true,
                timestamps: true
            }))
        );
        let err = ProvenanceMode::parse("mode=huge").unwrap_err();
        assert!(err.contains("\"mode=huge\""), "{err}");
    }
}
