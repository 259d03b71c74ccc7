"""test_support_corpus checks the txtar parser, the corpus builders/hashes and the port helpers.

Hashes are checked against vectors.json (values computed by Go's own code and the go command).
"""

from __future__ import annotations

import io
import itertools
import json
import socket
import threading
import zipfile
from pathlib import Path

import pytest

from support.corpus import (
    Corpus,
    build_zip,
    escape_path,
    escape_version,
    h1_files,
    h1_mod,
    h1_zip,
    is_pseudo_version,
    semver_compare,
    unescape_path,
    unescape_version,
)
from support.ports import (
    free_port,
    free_ports,
    port_is_open,
    wait_for_http,
    wait_for_port,
    wait_for_port_closed,
    wait_until,
)
from support.simulator import UpstreamSimulator
from support.txtar import Archive, parse
from support.txtar import format as txtar_format
from support.vectors import group


def test_txtar_parse_comment_files_and_missing_final_newline() -> None:
    comment, files = parse(b"the comment\n\n-- a.go --\npackage a\r\n-- b/c.txt --\nno newline")
    assert comment == b"the comment\n\n"
    assert files == [("a.go", b"package a\r\n"), ("b/c.txt", b"no newline\n")]


def test_txtar_marker_rules_and_round_trip() -> None:
    data = b"-- x --\n-- not a marker\n--  --\n-- y --\n\n-- z --\n"
    comment, files = parse(data)
    assert comment == b""
    assert files == [("x", b"-- not a marker\n--  --\n"), ("y", b"\n"), ("z", b"")]
    assert txtar_format(comment, files) == data
    assert parse(b"") == (b"", [])


def test_txtar_archive_dir_round_trip(tmp_path: Path) -> None:
    arc = Archive.parse("module m\n-- go.mod --\nmodule m\n-- sub/x.go --\npackage sub\n")
    assert arc.names() == ["go.mod", "sub/x.go"] and arc.get("sub/x.go") == b"package sub\n"
    assert arc.get("nope") is None
    root = arc.write_dir(tmp_path / "m")
    again = Archive.from_dir(root, comment="module m\n")
    assert again == arc and again.to_bytes() == arc.to_bytes()
    with pytest.raises(ValueError):
        Archive(files=[("../escape", b"")]).write_dir(tmp_path / "m")


def test_escaping_matches_vectors() -> None:
    vec = group("module")
    assert escape_path("github.com/BurntSushi/toml") == "github.com/!burnt!sushi/toml"
    assert escape_version("v1.5.3-PRE") == "v1.5.3-!p!r!e"
    assert unescape_path("rsc.io/!q!u!o!t!e") == "rsc.io/QUOTE"
    assert unescape_version("v1.0.0-!r!c1") == "v1.0.0-RC1"
    bad = [c["escaped"] for c in vec["unescape_path_bad"]]
    assert len(bad) >= 5
    for case in bad:
        assert unescape_path(case) is None, case
    for case in vec["escape_path"]:
        if isinstance(case, dict) and case.get("escaped") and not case.get("error"):
            assert escape_path(case["path"]) == case["escaped"], case


def test_semver_order_and_pseudo_versions() -> None:
    ordered = ["v1.0.0-alpha", "v1.0.0-alpha.1", "v1.0.0-beta", "v1.0.0", "v1.2.0", "v1.10.0"]
    for a, b in itertools.pairwise(ordered):
        assert semver_compare(a, b) == -1, (a, b)
    assert semver_compare("v1.2", "v1.2.0") == 0
    assert semver_compare("bad", "v0.0.1") == -1
    assert is_pseudo_version("v0.0.0-20170915032832-14c0d48ead0c")
    assert is_pseudo_version("v1.2.4-0.20191109021931-daa7c04131f5")
    assert not is_pseudo_version("v1.2.3")


def test_h1_helpers_match_dirhash_vectors() -> None:
    vec = group("dirhash")
    for case in vec["hash1"]:
        files = [(f["name"], f["data"]["text"].encode()) for f in case["files"]]
        assert h1_files(files) == case["h1"], case["desc"]
    with_dir = vec["hash_zip_with_directory_entry"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("prefix/dir/", b"")
        z.writestr("prefix/abc", b"data for abc")
    assert h1_zip(buf.getvalue()) == with_dir["h1"]
    assert h1_mod(b"") == vec["go_cmd_empty_gomod_hash_constant"]
    with pytest.raises(ValueError):
        h1_files([("a\nb", b"")])


def test_testdata_corpus_hashes_match_the_go_command() -> None:
    corpus = Corpus.from_go_testdata()
    assert len(corpus) > 200
    modules = group("gosum")["modules"]
    assert modules
    for m in modules:
        mv = corpus.get(m["module"], m["version"])
        assert mv is not None, m["module"]
        assert mv.h1 == m["testdata_h1"]
        assert mv.gomod_h1 == m["testdata_go_mod_h1"]
        assert mv.go_sum_lines() == m["go_sum_lines"]


def test_testdata_special_members() -> None:
    corpus = Corpus.from_go_testdata(only=["rsc.io/badzip", "rsc.io/QUOTE", "rsc.io/quote"])
    bad = corpus["rsc.io/badzip", "v1.0.0"]
    names = zipfile.ZipFile(io.BytesIO(bad.zip)).namelist()
    assert "rsc.io/badzip@v1.0.0.txt" in names  # "/name" members skip the prefix
    assert "rsc.io/badzip@v1.0.0/x.go" in names
    upper = corpus["rsc.io/QUOTE", "v1.5.3-PRE"]
    assert json.loads(upper.info)["Version"] == "v1.5.3-PRE"
    quote = corpus["rsc.io/quote", "v1.5.2"]
    assert corpus.resolve("rsc.io/quote", "c4d4236f") is quote  # hex prefix of "Short"
    text = corpus.list_text("rsc.io/quote")
    assert text is not None
    assert "v1.5.2\n" in text
    assert "v2.0.0" not in text  # major mismatch filtered like module.Check
    assert corpus.latest_version("rsc.io/quote") == "v1.5.2"
    assert corpus.list_text("rsc.io/nope") is None


def test_add_module_and_synthetic_builders() -> None:
    corpus = Corpus()
    mv = corpus.add_module("example.com/a", "v1.0.0", {"a.go": b"package a\n"})
    assert mv.mod == b"module example.com/a\n"
    zf = zipfile.ZipFile(io.BytesIO(mv.zip))
    assert sorted(zf.namelist()) == ["example.com/a@v1.0.0/a.go", "example.com/a@v1.0.0/go.mod"]
    assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in zf.infolist())
    assert json.loads(mv.info) == {"Version": "v1.0.0", "Time": "2019-01-01T00:00:00Z"}
    pseudo = corpus.add_module("example.com/a", "v0.0.0-20200102030405-abcdefabcdef")
    assert json.loads(pseudo.info)["Time"] == "2020-01-02T03:04:05Z"
    assert corpus.list_text("example.com/a") == "v1.0.0\n"
    big1 = corpus.synthetic_module("example.com/big", "v1.0.0", 300_000, 3, seed=7)
    big2 = Corpus().synthetic_module("example.com/big", "v1.0.0", 300_000, 3, seed=7)
    assert big1.zip == big2.zip and big1.h1 == big2.h1
    assert len(big1.zip) > 300_000  # random data does not compress
    small = Corpus().synthetic_module("example.com/big", "v1.0.0", 300_000, 3, incompressible=False)
    assert len(small.zip) < 30_000
    assert build_zip([("m@v1/x", b"x")]) == build_zip([("m@v1/x", b"x")])


def test_synthetic_graph_requires_later_modules() -> None:
    corpus = Corpus()
    paths = corpus.synthetic_graph(8, fanout=3, versions=("v1.0.0", "v1.1.0"), seed=3)
    assert len(paths) == 8 and len(corpus) == 16
    for i, path in enumerate(paths[:-1]):
        gomod = corpus[path, "v1.1.0"].mod
        assert gomod is not None
        assert f"\t{paths[i + 1]} v1.1.0\n".encode() in gomod
    assert b"require" not in (corpus[paths[-1], "v1.0.0"].mod or b"")


def test_write_tree_layout(tmp_path: Path) -> None:
    corpus = Corpus.from_go_testdata(only=["rsc.io/QUOTE"])
    corpus.add_module("example.com/notags", "v0.0.0-20200102030405-abcdefabcdef")
    root = corpus.write_tree(tmp_path / "proxy")
    vdir = root / "rsc.io" / "!q!u!o!t!e" / "@v"
    assert (vdir / "v1.5.3-!p!r!e.zip").read_bytes() == corpus["rsc.io/QUOTE", "v1.5.3-PRE"].zip
    assert (vdir / "list").read_text() == corpus.list_text("rsc.io/QUOTE")
    assert (root / "example.com" / "notags" / "@v" / "list").read_text() == ""
    latest = json.loads((root / "example.com" / "notags" / "@latest").read_bytes())
    assert latest["Version"] == "v0.0.0-20200102030405-abcdefabcdef"


def test_ports_free_and_wait() -> None:
    port = free_port()
    assert not port_is_open("127.0.0.1", port)
    with pytest.raises(TimeoutError):
        wait_for_port("127.0.0.1", port, timeout=0.05)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    ready = threading.Event()

    def listen_later() -> None:
        ready.wait(5)
        listener.listen()

    t = threading.Thread(target=listen_later)
    t.start()
    ready.set()
    try:
        assert wait_for_port("127.0.0.1", port, timeout=5) < 5
    finally:
        t.join()
        listener.close()
    assert wait_for_port_closed("127.0.0.1", port, timeout=5) < 5
    ports = free_ports(5)
    assert len(set(ports)) == 5
    assert wait_until(lambda: True) < 1
    with pytest.raises(TimeoutError, match="never"):
        wait_until(lambda: False, timeout=0.02, what="never")


def test_wait_for_http_sees_the_simulator() -> None:
    with UpstreamSimulator() as sim:
        assert wait_for_http(sim.url + "/anything", timeout=5) < 5
        assert sim.count("/anything") == 1
