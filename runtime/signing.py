"""Signed artifacts: an Ed25519 signature over the manifest, checked before any library is loaded.

The manifest records the size and sha256 of every file of the artifact (the library, the weights,
the accelerator's streams), so a signature over the manifest's exact bytes covers the whole
artifact. The hashes alone protect against corruption, not against someone who rewrites the
manifest too; and `lib.so` is native code that runs as soon as it is loaded. With trusted keys, an
artifact that is unsigned, signed by another key, or whose manifest changed after signing is
refused in `open_artifact`, before `Session` loads anything.

    manifest.sig   {"algorithm": "ed25519", "public_key": "<64 hex>", "signature": "<128 hex>"}
    KEY            the private key (PKCS#8 PEM, written 0600 by `gearshift keygen`)
    KEY.pub        the public key: 64 hex digits on one line (what --trusted-key takes)
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from gearshift.errors import ArtifactError, InputError

SIGNATURE = "manifest.sig"


def _crypto():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return serialization, ed25519


def generate_key(path: str | os.PathLike) -> tuple[Path, Path]:
    """A new Ed25519 key pair: `path` (private, mode 0600) and `path`.pub (public, hex)."""
    serialization, ed25519 = _crypto()
    path = Path(path)
    if path.exists():
        raise InputError(f"{path} exists; not overwriting a key")
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public = path.with_name(path.name + ".pub")
    public.write_text(_public_hex(key.public_key()) + "\n")
    return path, public


def _public_hex(public_key) -> str:
    serialization, _ = _crypto()
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def signer(private_key_path: str | os.PathLike):
    """A function manifest bytes -> the manifest.sig document, from a private key file."""
    serialization, ed25519 = _crypto()
    path = Path(private_key_path)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as err:
        raise InputError(f"{path}: cannot read the signing key ({err.strerror})") from None
    except (ValueError, TypeError) as err:
        raise InputError(f"{path}: not an unencrypted PEM private key ({err})") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise InputError(f"{path}: not an Ed25519 key (gearshift keygen writes one)")

    def sign(manifest: bytes) -> bytes:
        doc = {"algorithm": "ed25519", "public_key": _public_hex(key.public_key()), "signature": key.sign(manifest).hex()}
        return (json.dumps(doc, indent=1) + "\n").encode()

    return sign


def read_public_key(key: str | os.PathLike) -> str:
    """A trusted key as 64 hex digits: given as such, or as the path of a .pub file."""
    text = str(key).strip()
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text.lower()):
        path = Path(key)
        try:
            text = path.read_text().strip()
        except OSError as err:
            raise InputError(f"{key}: neither a 64-hex-digit Ed25519 public key nor a readable .pub file "
                             f"({err.strerror})") from None
    try:
        if len(bytes.fromhex(text)) != 32:
            raise ValueError
    except ValueError:
        raise InputError(f"{key}: an Ed25519 public key is 64 hex digits") from None
    return text.lower()


def verify(root: Path, manifest_bytes: bytes, trusted: Iterable[str]) -> str:
    """Check `root`'s manifest.sig against the manifest's bytes and the trusted public keys (hex);
    returns the signing key. ArtifactError when unsigned, untrusted or not matching."""
    from cryptography.exceptions import InvalidSignature

    _, ed25519 = _crypto()
    trusted = {read_public_key(k) for k in trusted}
    path = root / SIGNATURE
    if not path.is_file():
        raise ArtifactError(f"{root}: not signed (no {SIGNATURE}), and trusted keys were given: refused before loading")
    try:
        doc = json.loads(path.read_text())
        public, signature = doc["public_key"].lower(), bytes.fromhex(doc["signature"])
        if doc.get("algorithm") != "ed25519":
            raise ValueError(f"algorithm {doc.get('algorithm')!r}")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise ArtifactError(f"{path}: malformed signature file ({err})") from None
    if public not in trusted:
        raise ArtifactError(f"{root}: signed by key {public[:16]}..., which is not among the trusted keys: refused "
                            f"before loading")
    try:
        ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(public)).verify(signature, manifest_bytes)
    except (InvalidSignature, ValueError):
        raise ArtifactError(f"{root}: the manifest does not match its signature (modified after signing): refused "
                            f"before loading") from None
    return public
