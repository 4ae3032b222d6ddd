//! The SPDX 2.3 JSON document (spdx.github.io/spdx-spec/v2.3, and its JSON schema):
//! the image as the root package the document describes, containing every package
//! found. Everything in it comes from the arguments: no clock, no random ids, packages
//! in one order whatever the input's, so the same packages give the same bytes.

use super::{Package, PackageKind};
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// The root package's SPDXID; every other one starts `SPDXRef-Package-`, so none can
/// equal it.
const ROOT_ID: &str = "SPDXRef-Image";

/// An SPDX 2.3 document for the image `subject_name` holding `packages`.
/// `namespace` is the document's unique URI (spec 6.5; e.g. one derived from the
/// image's digest), `created` its time as `YYYY-MM-DDThh:mm:ssZ` (spec 6.9; e.g.
/// SOURCE_DATE_EPOCH through `build::timefmt::rfc3339`), `creator_tool` as
/// `name-version`. Both are taken as given.
pub fn spdx_document(
    packages: &[Package],
    subject_name: &str,
    namespace: &str,
    created: &str,
    creator_tool: &str,
) -> Value {
    let mut sorted: Vec<&Package> = packages.iter().collect();
    sorted.sort();
    let ids = spdx_ids(&sorted);
    let mut entries = vec![json!({
        "SPDXID": ROOT_ID,
        "name": subject_name,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "supplier": "NOASSERTION",
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": "CONTAINER",
    })];
    let mut relationships = vec![relationship("SPDXRef-DOCUMENT", "DESCRIBES", ROOT_ID)];
    for (package, id) in sorted.iter().zip(&ids) {
        entries.push(json!({
            "SPDXID": id,
            "name": package.name,
            "versionInfo": package.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "supplier": supplier(package.supplier.as_deref()),
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "sourceInfo": source_info(package),
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": package.purl,
            }],
        }));
        relationships.push(relationship(ROOT_ID, "CONTAINS", id));
    }
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": subject_name,
        "documentNamespace": namespace,
        "creationInfo": {
            "created": created,
            "creators": [format!("Tool: {creator_tool}")],
        },
        "documentDescribes": [ROOT_ID],
        "packages": entries,
        "relationships": relationships,
    })
}

fn relationship(from: &str, kind: &str, to: &str) -> Value {
    json!({
        "spdxElementId": from,
        "relationshipType": kind,
        "relatedSpdxElement": to,
    })
}

/// One SPDXID per package (in `sorted` order): `SPDXRef-Package-deb-libc6-2.36-9-amd64`,
/// readable and stable as other packages come and go. Where two come out the same (the
/// same module in two binaries, names that differ only in characters an id cannot
/// hold), the later ones get `-2`, `-3`, … skipping any id another package has.
fn spdx_ids(sorted: &[&Package]) -> Vec<String> {
    let natural: Vec<String> = sorted.iter().map(|p| natural_id(p)).collect();
    let taken: BTreeSet<&str> = natural.iter().map(String::as_str).collect();
    let mut used = BTreeSet::new();
    natural
        .iter()
        .map(|id| {
            let mut candidate = id.clone();
            let mut n = 1;
            while used.contains(&candidate) || (n > 1 && taken.contains(candidate.as_str())) {
                n += 1;
                candidate = format!("{id}-{n}");
            }
            used.insert(candidate.clone());
            candidate
        })
        .collect()
}

fn natural_id(p: &Package) -> String {
    let kind = match p.kind {
        PackageKind::Deb => "deb",
        PackageKind::Apk => "apk",
        PackageKind::GoModule => "go-module",
        PackageKind::GoStdlib => "go-stdlib",
    };
    let mut id = format!(
        "SPDXRef-Package-{kind}-{}-{}",
        id_part(&p.name),
        id_part(&p.version)
    );
    if let Some(arch) = &p.arch {
        id.push('-');
        id.push_str(&id_part(arch));
    }
    id
}

/// An SPDXID holds letters, digits, `.` and `-` only (spec 7.2): anything else is `-`.
fn id_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// SPDX's `Person: name (email)` from a maintainer field's `name <email>` (spec 7.5).
/// Package managers do not say whether a maintainer is a person or a team, so it is
/// `Person`, as syft writes it.
fn supplier(maintainer: Option<&str>) -> String {
    let Some(maintainer) = maintainer.map(str::trim).filter(|m| !m.is_empty()) else {
        return "NOASSERTION".to_string();
    };
    let clean: String = maintainer.chars().filter(|c| !c.is_control()).collect();
    match clean.split_once('<') {
        Some((name, rest)) => {
            let email = rest.split('>').next().unwrap_or("").trim();
            match (name.trim(), email) {
                (name, "") => format!("Person: {name}"),
                ("", email) => format!("Person: {email}"),
                (name, email) => format!("Person: {name} ({email})"),
            }
        }
        None => format!("Person: {clean}"),
    }
}

fn source_info(p: &Package) -> String {
    match p.kind {
        PackageKind::Deb => format!(
            "acquired package info from the dpkg database {}",
            p.found_at
        ),
        PackageKind::Apk => format!("acquired package info from the apk database {}", p.found_at),
        PackageKind::GoModule | PackageKind::GoStdlib => {
            format!(
                "acquired package info from the Go build info of {}",
                p.found_at
            )
        }
    }
}
