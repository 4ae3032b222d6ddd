"""Checks a cosign signature the way `cosign verify --key` does, independently of
xbake: Python's `cryptography` verifies the ECDSA P-256 signature over the
simple-signing payload fetched from the registry, and the payload must name the index
digest, whose bytes are fetched and hashed here. Then one byte of the payload, and one
of the index, is changed: each must be refused.

usage: check_signature.py HOST:PORT REPOSITORY sha256:DIGEST cosign.pub"""

import base64
import hashlib
import json
import sys
import urllib.request

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def get(url, accept=None):
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req) as r:
        return r.read()


def check(key, payload, signature, index, digest):
    """Raises unless the signature covers the payload and the payload this index."""
    key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
    claims = json.loads(payload)
    if claims["critical"]["type"] != "cosign container image signature":
        raise ValueError("not a cosign payload")
    signed = claims["critical"]["image"]["docker-manifest-digest"]
    actual = "sha256:" + hashlib.sha256(index).hexdigest()
    if signed != actual:
        raise ValueError(f"the payload signs {signed}, the index is {actual}")
    if actual != digest:
        raise ValueError(f"the index fetched is {actual}, not {digest}")


def refused(what, key, payload, signature, index, digest):
    try:
        check(key, payload, signature, index, digest)
    except (InvalidSignature, ValueError):
        print(f"{what}: refused")
        return
    print(f"{what}: ACCEPTED")
    sys.exit(1)


def main():
    addr, repo, digest, pub = sys.argv[1:5]
    base = f"http://{addr}/v2/{repo}"
    key = serialization.load_pem_public_key(open(pub, "rb").read())
    tag = digest.replace(":", "-") + ".sig"
    manifest = json.loads(get(f"{base}/manifests/{tag}", OCI_MANIFEST))
    index = get(f"{base}/manifests/{digest}", OCI_INDEX)
    layer = manifest["layers"][0]
    assert layer["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json", layer
    payload = get(f"{base}/blobs/{layer['digest']}")
    assert "sha256:" + hashlib.sha256(payload).hexdigest() == layer["digest"]
    signature = base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"])
    check(key, payload, signature, index, digest)
    print("signature verifies")
    changed = bytearray(payload)
    changed[len(changed) // 2] ^= 1
    refused("a changed payload byte", key, bytes(changed), signature, index, digest)
    changed = bytearray(index)
    changed[len(changed) // 2] ^= 1
    refused("a changed index byte", key, payload, signature, bytes(changed), digest)


if __name__ == "__main__":
    main()
