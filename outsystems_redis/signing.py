"""Signatures of the programs the servers fetch from the stack's bucket (outsystems_redis/render/fetched.py).

A server runs a fetched program only if its signature verifies against the public key its user data
carries (TOOLS_PUBLIC_KEY_PATH): an object someone else put in the bucket, or a bucket someone pointed
the servers at, is refused and the last good copy keeps running. ECDSA P-256 with SHA-256, because
Ubuntu 20.04's OpenSSL 1.1.1 verifies it with `openssl dgst` (Ed25519 would need OpenSSL 3's
`pkeyutl -rawin`); signed deterministically (RFC 6979), so the same program always has the same
signature and a preview shows no change. The key is derived from a secret seed that only the Pulumi
state holds.

Replay: whoever may write `tools/` (the `toolWriters`) cannot sign, but could serve again a program the
deployer signed before. So each program is also signed with the release of the fetched programs (RELEASE,
`tools/<program>.signed`), and a server takes no release older than the one its user data was rendered
with, or than the newest that one of its copies (of any program) verifies for. The plain `.sig` stays for
servers created before (their launcher knows no releases). Pure, no pulumi.
"""

from __future__ import annotations

import base64
import hashlib
import re

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

SIGNATURE_SUFFIX = ".sig"  # tools/<program>.sig beside tools/<program>: base64 of the DER signature
# tools/<program>.signed: the release on its first line, base64 of the DER signature of the release, the key and the
# program's bytes on its second, then those bytes. What this version's launcher fetches: one object, so a program
# and its signature never come from two uploads.
SIGNED_SUFFIX = ".signed"
# The release of the fetched programs (render/fetched.py). Raise it by one with every change to any of them:
# tests/unit/test_tools_release.py holds each release's digest, so that no release number names two programs.
RELEASE = 2
TOOLS_PUBLIC_KEY_PATH = "/etc/redis/tools.pub"  # in the user data; the launcher's default
SEED_MIN_LENGTH = 32
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_ALGORITHM = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)


def _private_key(seed: str) -> ec.EllipticCurvePrivateKey:
    if len(seed) < SEED_MIN_LENGTH:
        raise ValueError(f"tools signing seed: at least {SEED_MIN_LENGTH} characters")
    digest = hashlib.sha256(f"outsystems-redis tools signing key\n{seed}".encode()).digest()
    return ec.derive_private_key(int.from_bytes(digest, "big") % (_P256_ORDER - 1) + 1, ec.SECP256R1())


def public_key_pem(seed: str) -> str:
    """The PEM public key the servers verify with (not secret)."""
    return _private_key(seed).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _message(key: str, text: str) -> bytes:
    # The object's key, then its bytes: a signed program put under another tool's name does not verify.
    return f"{key}\n{text}".encode()


def signature(seed: str, key: str, text: str) -> str:
    """The signature object's text for the program `text` at bucket key `key`: base64 of the DER signature."""
    return base64.b64encode(_private_key(seed).sign(_message(key, text), _ALGORITHM)).decode() + "\n"


def _release_message(key: str, text: str, release: int) -> bytes:
    # Begins unlike any object key, so that no plain signature verifies as a release signature.
    return f"outsystems-redis tools release {release}\n{key}\n{text}".encode()


def release_signature(seed: str, key: str, text: str, release: int = RELEASE) -> str:
    """The first two lines of tools/<program>.signed for the program `text` at bucket key `key`: its release and
    its signature."""
    if release < 1:
        raise ValueError(f"release {release}: a positive number")
    signed = _private_key(seed).sign(_release_message(key, text, release), _ALGORITHM)
    return f"{release}\n{base64.b64encode(signed).decode()}\n"


def signed_program(seed: str, key: str, text: str, release: int = RELEASE) -> str:
    """The text of tools/<program>.signed: the release, the signature, then the program."""
    return release_signature(seed, key, text, release) + text


def _verifies(public_pem: str, message: bytes, signed: str) -> bool:
    public = serialization.load_pem_public_key(public_pem.encode())
    try:
        public.verify(base64.b64decode(signed), message, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


def verifies(public_pem: str, key: str, text: str, signed: str) -> bool:
    """What an older launcher's `openssl dgst -sha256 -verify` decides about a plain .sig, in Python (for the
    tests)."""
    return _verifies(public_pem, _message(key, text), signed)


def release_verifies(public_pem: str, key: str, text: str, signed: str) -> int | None:
    """The release that the first two lines of a .signed object (`signed`) were signed for, with the program
    `text`, when they verify (for the tests); else None."""
    lines = signed.split("\n")
    # As the launcher reads it: a release without a leading zero on the first line, the signature on the second.
    if len(lines) < 2 or not re.fullmatch(r"[1-9][0-9]{0,8}", lines[0]):
        return None
    release = int(lines[0])
    return release if _verifies(public_pem, _release_message(key, text, release), lines[1]) else None
