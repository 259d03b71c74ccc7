"""test_note checks gomirror.sumdb.note against every `note` vector computed by Go's x/mod."""

from __future__ import annotations

from typing import Any

import pytest

from gomirror.errors import SumdbError
from gomirror.sumdb.note import (
    KeyFormatError,
    Note,
    Signature,
    UnverifiedNoteError,
    generate_key,
    key_hash,
    open_note,
    parse_signer,
    parse_verifier,
    sign,
)
from support.vectors import group

NOTE = group("note")


def _msg(m: Any) -> bytes:
    return bytes.fromhex(m["hex"]) if isinstance(m, dict) else m.encode()


def _sigs(lst: list[dict[str, str]]) -> tuple[Signature, ...]:
    return tuple(Signature(s["name"], int(s["key_hash"], 16), s["base64"]) for s in lst)


@pytest.mark.parametrize("case", NOTE["verifier_keys"], ids=lambda c: c["vkey"][:40])
def test_verifier_keys(case: dict[str, Any]) -> None:
    if case["error"]:
        with pytest.raises(KeyFormatError) as exc:
            parse_verifier(case["vkey"])
        assert str(exc.value) == case["error"]
        return
    v = parse_verifier(case["vkey"])
    assert v.name == case["name"]
    assert f"{v.key_hash:08x}" == case["key_hash"]
    assert v.public_key.hex() == case["ed25519_public_key_hex"]
    assert v.key_string() == case["vkey"]
    assert key_hash(v.name, bytes([1]) + v.public_key) == v.key_hash


@pytest.mark.parametrize("case", NOTE["signer_keys"], ids=lambda c: c["skey"][:40])
def test_signer_keys(case: dict[str, Any]) -> None:
    if case["error"]:
        with pytest.raises(KeyFormatError) as exc:
            parse_signer(case["skey"])
        assert str(exc.value) == case["error"]
        return
    s = parse_signer(case["skey"])
    assert s.name == case["name"]
    assert f"{s.key_hash:08x}" == case["key_hash"]


@pytest.mark.parametrize("name", ["sign", "sign_tree_test_sumdb"])
def test_sign_golden(name: str) -> None:
    case = NOTE[name]
    signed = sign(case["text"].encode(), [parse_signer(case["skey"])])
    assert signed == case["signed"].encode()


@pytest.mark.parametrize("case", NOTE["open"], ids=lambda c: c["desc"])
def test_open(case: dict[str, Any]) -> None:
    verifiers = [parse_verifier(k) for k in case["verifiers"] or []]
    msg = _msg(case["msg"])
    if case["error"] is not None:
        with pytest.raises(SumdbError) as exc:
            open_note(msg, verifiers)
        assert str(exc.value) == case["error"]
        if isinstance(exc.value, UnverifiedNoteError):
            assert exc.value.note.text == case["text"]
            assert exc.value.note.unverified_sigs == _sigs(case["unverified_sigs"])
        return
    note = open_note(msg, verifiers)
    assert note == Note(case["text"], _sigs(case["sigs"]), _sigs(case["unverified_sigs"]))


def test_generated_key_round_trip() -> None:
    skey, vkey = generate_key("example.com/db")
    signer, verifier = parse_signer(skey), parse_verifier(vkey)
    assert signer.verifier() == verifier
    signed = sign(b"hello\n", [signer])
    assert open_note(signed, [verifier]).text == "hello\n"
    with pytest.raises(SumdbError, match=r"invalid signature for key example\.com/db"):
        open_note(signed.replace(b"hello", b"jello"), [verifier])


def test_sign_requires_final_newline() -> None:
    with pytest.raises(SumdbError, match="malformed note"):
        sign(b"no newline", [parse_signer(NOTE["sign"]["skey"])])
