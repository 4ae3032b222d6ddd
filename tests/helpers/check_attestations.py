"""Validates in-toto statements (one JSON file each, given as arguments) with the
independent implementations the issue names: PyPI's in-toto-attestation (the Statement
v1 and SLSA Provenance v1 protobuf schemas, parsed strictly: an unknown or mistyped
field fails) and spdx-tools (SPDX 2.3 parsing and full validation). Prints one line
per file; exits 1 on the first invalid one."""

import json
import sys
import tempfile

from google.protobuf import json_format
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.resource_descriptor import ResourceDescriptor
from in_toto_attestation.v1.statement import Statement
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document


def check_provenance(predicate):
    prov = json_format.ParseDict(predicate, provenance_pb2.Provenance())
    bd = prov.build_definition
    if not bd.build_type:
        raise ValueError("buildDefinition.buildType is empty")
    if len(bd.external_parameters) == 0:
        raise ValueError("buildDefinition.externalParameters is empty")
    if not prov.run_details.builder.id:
        raise ValueError("runDetails.builder.id is empty")
    for dep in bd.resolved_dependencies:
        ResourceDescriptor.copy_from_pb(dep).validate()
    return f"{len(bd.resolved_dependencies)} resolved dependencies"


def check_spdx(predicate):
    with tempfile.NamedTemporaryFile("w", suffix=".spdx.json") as f:
        json.dump(predicate, f)
        f.flush()
        doc = parse_file(f.name)
    problems = validate_full_spdx_document(doc, "SPDX-2.3")
    if problems:
        raise ValueError("; ".join(p.validation_message for p in problems[:5]))
    return f"{len(doc.packages)} packages"


def main():
    for path in sys.argv[1:]:
        with open(path) as f:
            raw = json.load(f)
        pb = json_format.ParseDict(raw, statement_pb2.Statement())
        Statement.copy_from_pb(pb).validate()
        kind = raw["predicateType"]
        if kind == "https://slsa.dev/provenance/v1":
            what = check_provenance(raw["predicate"])
        elif kind == "https://spdx.dev/Document":
            what = check_spdx(raw["predicate"])
        else:
            raise ValueError(f"unexpected predicate type {kind}")
        print(f"valid: {path}: {kind}: {what}")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - any failure is the test's failure
        print(f"invalid: {type(e).__name__}: {e}")
        sys.exit(1)
