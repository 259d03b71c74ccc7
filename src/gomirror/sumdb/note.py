"""note signs and opens Go signed notes (golang.org/x/mod/sumdb/note) with Ed25519 keys.

A signed note is ``text`` (ending in a newline), a blank line, then one line per
signature: ``— <name> <base64(4-byte big-endian key hash || signature)>``.
``open_note`` applies Go's exact rules and error texts: the whole message must be
UTF-8 without control characters other than newline, the split is at the last
blank line, unknown keys are collected as unverified signatures, a known key with
a bad signature is an error, and at least one signature must verify.

Keys use Go's text forms: a verifier key is ``<name>+<hash8hex>+<base64(0x01 || pub)>``
and a signer key is ``PRIVATE+KEY+<name>+<hash8hex>+<base64(0x01 || seed)>``; the
key hash is the first 4 bytes of ``sha256(name + "\\n" + 0x01 || pub)``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gomirror.errors import ConfigError, SumdbError

ALG_ED25519 = 1
MAX_SIGNATURES = 100
SIG_PREFIX = "— "  # an em dash (U+2014) and a space

# Go's unicode.IsSpace; Python's str.isspace also accepts U+001C..U+001F, Go does not.
_GO_SPACES = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_HEX8 = re.compile(r"[0-9a-fA-F]{8}")


class KeyFormatError(ConfigError):
    """A verifier or signer key string is malformed (Go's error text)."""


class MalformedNote(SumdbError):
    """The note text breaks the signed-note syntax."""

    def __init__(self) -> None:
        super().__init__("malformed note")


class UnknownVerifierError(SumdbError):
    """No verifier is known for a name and key hash."""


class AmbiguousVerifierError(SumdbError):
    """Several verifiers share a name and key hash and one of them was needed."""


class InvalidSignatureError(SumdbError):
    """A signature by a known key does not verify."""

    def __init__(self, name: str, key_hash: int) -> None:
        self.name = name
        self.key_hash = key_hash
        super().__init__(f"invalid signature for key {name}+{key_hash:08x}")


class UnverifiedNoteError(SumdbError):
    """The note is well formed but no signature is from a known key; ``note`` holds it."""

    def __init__(self, note: Note) -> None:
        self.note = note
        super().__init__("note has no verifiable signatures")


@dataclass(frozen=True, slots=True)
class Signature:
    """One signature line of a note."""

    name: str
    key_hash: int
    base64: str


@dataclass(frozen=True, slots=True)
class Note:
    """An opened note: its text and its verified and unverified signatures."""

    text: str
    sigs: tuple[Signature, ...] = ()
    unverified_sigs: tuple[Signature, ...] = ()


@dataclass(frozen=True, slots=True)
class Verifier:
    """A public key that checks signatures from one named signer."""

    name: str
    key_hash: int
    public_key: bytes = field(repr=False)

    def verify(self, msg: bytes, sig: bytes) -> bool:
        """Report whether sig is a valid Ed25519 signature of msg by this key."""
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(sig, msg)
        except InvalidSignature:
            return False
        return True

    def key_string(self) -> str:
        """Return the verifier key in Go's text form."""
        encoded = base64.b64encode(bytes([ALG_ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.key_hash:08x}+{encoded}"


@dataclass(frozen=True, slots=True)
class Signer:
    """A private key that signs notes under a name."""

    name: str
    key_hash: int
    seed: bytes = field(repr=False)

    def sign(self, msg: bytes) -> bytes:
        """Return the Ed25519 signature of msg."""
        return Ed25519PrivateKey.from_private_bytes(self.seed).sign(msg)

    def verifier(self) -> Verifier:
        """Return the matching verifier."""
        return Verifier(self.name, self.key_hash, _public_from_seed(self.seed))


def is_valid_name(name: str) -> bool:
    """Report whether name may name a key: non-empty, no space, no ``+``."""
    return name != "" and "+" not in name and not any(c in _GO_SPACES for c in name)


def key_hash(name: str, key: bytes) -> int:
    """Return the 32-bit key hash of name and the algorithm-prefixed key bytes."""
    digest = hashlib.sha256(name.encode() + b"\n" + key).digest()
    return int.from_bytes(digest[:4], "big")


def _b64decode(s: str) -> bytes | None:
    """Decode standard padded base64 the way Go's StdEncoding does, or None."""
    try:
        return base64.b64decode(s.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return None


def _public_from_seed(seed: bytes) -> bytes:
    pub = Ed25519PrivateKey.from_private_bytes(seed).public_key()
    return pub.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _parse_hash(hash16: str) -> int | None:
    return int(hash16, 16) if _HEX8.fullmatch(hash16) else None


def parse_verifier(vkey: str) -> Verifier:
    """Parse a verifier key ``name+hash8+base64``; raises KeyFormatError with Go's text."""
    name, _, rest = vkey.partition("+")
    hash16, _, key64 = rest.partition("+")
    hash_ = _parse_hash(hash16)
    key = _b64decode(key64)
    if hash_ is None or key is None or not is_valid_name(name) or len(key) == 0:
        raise KeyFormatError("malformed verifier id")
    if hash_ != key_hash(name, key):
        raise KeyFormatError("invalid verifier hash")
    if key[0] != ALG_ED25519:
        raise KeyFormatError("unknown verifier algorithm")
    if len(key) != 33:
        raise KeyFormatError("malformed verifier id")
    return Verifier(name, hash_, key[1:])


def parse_signer(skey: str) -> Signer:
    """Parse a signer key ``PRIVATE+KEY+name+hash8+base64``; raises KeyFormatError."""
    priv1, _, rest = skey.partition("+")
    priv2, _, rest = rest.partition("+")
    name, _, rest = rest.partition("+")
    hash16, _, key64 = rest.partition("+")
    hash_ = _parse_hash(hash16)
    key = _b64decode(key64)
    if (
        priv1 != "PRIVATE"
        or priv2 != "KEY"
        or hash_ is None
        or key is None
        or not is_valid_name(name)
        or len(key) == 0
    ):
        raise KeyFormatError("malformed verifier id")  # sic: Go reuses the verifier text
    if key[0] != ALG_ED25519:
        raise KeyFormatError("unknown verifier algorithm")
    if len(key) != 33:
        raise KeyFormatError("malformed verifier id")
    seed = key[1:]
    if hash_ != key_hash(name, bytes([ALG_ED25519]) + _public_from_seed(seed)):
        raise KeyFormatError("invalid verifier hash")
    return Signer(name, hash_, seed)


def generate_key(name: str) -> tuple[str, str]:
    """Return a fresh (signer key, verifier key) pair for name, as Go's GenerateKey does."""
    if not is_valid_name(name):
        raise KeyFormatError("invalid signer")
    priv = Ed25519PrivateKey.generate()
    seed = priv.private_bytes_raw()
    pub = bytes([ALG_ED25519]) + _public_from_seed(seed)
    h = key_hash(name, pub)
    seed64 = base64.b64encode(bytes([ALG_ED25519]) + seed).decode()
    pub64 = base64.b64encode(pub).decode()
    return f"PRIVATE+KEY+{name}+{h:08x}+{seed64}", f"{name}+{h:08x}+{pub64}"


def sign(text: bytes, signers: Iterable[Signer]) -> bytes:
    """Return text signed by every signer; text must end in a newline."""
    if not text.endswith(b"\n"):
        raise MalformedNote()
    lines: list[bytes] = []
    for s in signers:
        if not is_valid_name(s.name):
            raise SumdbError("invalid signer")
        raw = s.key_hash.to_bytes(4, "big") + s.sign(text)
        lines.append(f"{SIG_PREFIX}{s.name} {base64.b64encode(raw).decode()}\n".encode())
    return text + b"\n" + b"".join(lines)


def _check_chars(msg: bytes) -> str:
    try:
        decoded = msg.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedNote() from None
    if any(c < " " and c != "\n" for c in decoded):
        raise MalformedNote()
    return decoded


def _verifier_index(verifiers: Sequence[Verifier]) -> dict[tuple[str, int], list[Verifier]]:
    index: dict[tuple[str, int], list[Verifier]] = {}
    for v in verifiers:
        index.setdefault((v.name, v.key_hash), []).append(v)
    return index


def open_note(msg: bytes, verifiers: Sequence[Verifier]) -> Note:
    """Parse and verify a signed note against the known verifiers (Go's ``note.Open``).

    Raises MalformedNote, AmbiguousVerifierError, InvalidSignatureError or
    UnverifiedNoteError (which carries the parsed note); all are SumdbError.
    """
    decoded = _check_chars(msg)
    split = decoded.rfind("\n\n")
    if split < 0:
        raise MalformedNote()
    text, sig_block = decoded[: split + 1], decoded[split + 2 :]
    if not sig_block.endswith("\n"):
        raise MalformedNote()
    text_bytes = text.encode()
    known = _verifier_index(verifiers)
    sigs: list[Signature] = []
    unverified: list[Signature] = []
    seen: set[tuple[str, int]] = set()
    seen_unverified: set[str] = set()
    for count, line in enumerate(sig_block[:-1].split("\n"), start=1):
        if not line.startswith(SIG_PREFIX):
            raise MalformedNote()
        line = line[len(SIG_PREFIX) :]
        name, _, b64 = line.partition(" ")
        raw = _b64decode(b64)
        if raw is None or not is_valid_name(name) or b64 == "" or len(raw) < 5:
            raise MalformedNote()
        hash_ = int.from_bytes(raw[:4], "big")
        if count > MAX_SIGNATURES:
            raise MalformedNote()
        candidates = known.get((name, hash_))
        if candidates is None:
            if line not in seen_unverified:
                seen_unverified.add(line)
                unverified.append(Signature(name, hash_, b64))
            continue
        if len(candidates) > 1:
            raise AmbiguousVerifierError(f"ambiguous key {name}+{hash_:08x}")
        if (name, hash_) in seen:
            continue
        seen.add((name, hash_))
        if not candidates[0].verify(text_bytes, raw[4:]):
            raise InvalidSignatureError(name, hash_)
        sigs.append(Signature(name, hash_, b64))
    note = Note(text, tuple(sigs), tuple(unverified))
    if not sigs:
        raise UnverifiedNoteError(note)
    return note
