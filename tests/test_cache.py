"""The local cache as a user sees it: shared by concurrent builds, corruption detected and
repaired, garbage collection by last use, `clean`, and where the cache lives by default."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from graphbuild.cache.layout import default_cache_dir
from graphbuild.cli.main import main


def _chain(ws):
    ws.write("pkg/BUILD.envs", """
        genrule(name = "base", outs = ["base.txt"], cmd = "echo base-content > $OUT")
        genrule(name = "top", srcs = [":base"], outs = ["top.txt"], cmd = "tr a-z A-Z < $SRCS > $OUT")
    """)
    first = ws.gb("build", "//pkg:top", "//pkg:base", "--json")
    assert first.exit_code == 0, first.stderr
    return {n["id"]: n for n in first.json["nodes"]}


def _blob(ws, sha: str) -> Path:
    return ws.cache / "blobs" / "sha256" / sha


def _corrupt(path: Path, data: bytes) -> None:
    os.chmod(path, 0o644)  # blobs are stored read-only
    path.write_bytes(data)


def _blob_count(ws) -> int:
    return sum(1 for p in (ws.cache / "blobs").rglob("*") if p.is_file())


# -- concurrency -------------------------------------------------------------------------------


def test_two_builds_at_once_share_the_cache(ws):
    names = [f"t{i}" for i in range(14)]
    ws.write("pkg/BUILD.envs", "\n".join(
        f'genrule(name = "{n}", outs = ["{n}.txt"], cmd = "sleep 0.1; echo {n} > $OUT")' for n in names
    ) + '\ngenrule(name = "sum", srcs = [":t4", ":t5", ":t6"], outs = ["sum.txt"], cmd = "cat $SRCS > $OUT")\n')
    first = [f"//pkg:{n}" for n in names[:10]] + ["//pkg:sum"]
    second = [f"//pkg:{n}" for n in names[4:]] + ["//pkg:sum"]
    procs = [ws.gb_process("build", *first, "-j", "3"), ws.gb_process("build", *second, "-j", "3")]
    outputs = [proc.communicate(timeout=60) for proc in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    third = ws.gb("build", "//pkg:all", "--json")
    assert third.exit_code == 0, third.stderr
    assert len(third.statuses()) == 15
    assert set(third.statuses().values()) == {"cached"}
    assert (ws.root / "graphbuild-out/pkg/sum.txt").read_text() == "t4\nt5\nt6\n"
    assert (ws.root / "graphbuild-out/pkg/t13.txt").read_text() == "t13\n"


def test_two_builds_at_once_write_the_same_files_of_graphbuild_out(ws):
    # Both processes copy the same cached outputs into graphbuild-out/ at the same moment.
    names = [f"f{i}" for i in range(150)]
    ws.write("pkg/BUILD.envs", "\n".join(
        f'genrule(name = "{n}", outs = ["{n}.txt"], cmd = "head -c 50000 /dev/zero > $OUT; echo {n} >> $OUT")'
        for n in names
    ) + "\n")
    assert ws.gb("build", "//...", "--json").exit_code == 0
    for _ in range(3):
        shutil.rmtree(ws.root / "graphbuild-out")
        procs = [ws.gb_process("build", "//...", "-q") for _ in range(2)]
        for proc in procs:
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
    out = ws.root / "graphbuild-out/pkg"
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.txt" for n in names)  # no temporary files left
    assert (out / "f149.txt").read_bytes() == b"\0" * 50000 + b"f149\n"


# -- corruption ----------------------------------------------------------------------------------


def test_a_corrupt_output_blob_is_reported_and_rebuilt_before_reaching_graphbuild_out(ws):
    nodes = _chain(ws)
    sha = nodes["//pkg:base#gen"]["outputs"]["base.txt"]
    assert sha == hashlib.sha256(b"base-content\n").hexdigest()
    _corrupt(_blob(ws, sha), b"evil-content\n")  # same size: only reading the bytes can tell
    (ws.root / "graphbuild-out/pkg/base.txt").unlink()

    again = ws.gb("build", "//pkg:base", "--json")
    assert again.exit_code == 0, again.stderr
    assert "corrupt" in again.stderr
    assert "//pkg:base#gen" in again.stderr
    assert again.statuses() == {"//pkg:base#gen": "ran"}
    assert (ws.root / "graphbuild-out/pkg/base.txt").read_text() == "base-content\n"
    assert hashlib.sha256(_blob(ws, sha).read_bytes()).hexdigest() == sha

    fine = ws.gb("build", "//pkg:base", "--json")
    assert fine.statuses() == {"//pkg:base#gen": "cached"}
    assert "corrupt" not in fine.stderr


def test_a_corrupt_input_blob_is_rebuilt_when_a_dependent_needs_it(ws):
    nodes = _chain(ws)
    sha = nodes["//pkg:base#gen"]["outputs"]["base.txt"]
    _corrupt(_blob(ws, sha), b"evil-content\n")
    # top must rerun (its command changed) and read base's output from the cache
    ws.write("pkg/BUILD.envs", (ws.root / "pkg/BUILD.envs").read_text().replace("tr a-z A-Z", "tr a-z A-Z "))
    again = ws.gb("build", "//pkg:top", "--json")
    assert again.exit_code == 0, again.stderr
    assert "corrupt" in again.stderr
    assert again.statuses() == {"//pkg:base#gen": "ran", "//pkg:top#gen": "ran"}
    assert (ws.root / "graphbuild-out/pkg/top.txt").read_text() == "BASE-CONTENT\n"
    assert hashlib.sha256(_blob(ws, sha).read_bytes()).hexdigest() == sha


def test_a_truncated_blob_is_replaced_by_the_rebuild(ws):
    nodes = _chain(ws)
    sha = nodes["//pkg:base#gen"]["outputs"]["base.txt"]
    _corrupt(_blob(ws, sha), b"bas")
    (ws.root / "graphbuild-out/pkg/base.txt").unlink()
    again = ws.gb("build", "//pkg:base")
    assert again.exit_code == 0, again.stderr
    assert "corrupt" in again.stderr
    assert again.stderr.count("running  //pkg:base#gen") == 1  # one rebuild repairs the store
    assert (ws.root / "graphbuild-out/pkg/base.txt").read_text() == "base-content\n"
    assert _blob(ws, sha).read_bytes() == b"base-content\n"
    assert ws.gb("build", "//pkg:base", "--json").statuses() == {"//pkg:base#gen": "cached"}


# -- gc and clean --------------------------------------------------------------------------------


def test_gc_to_zero_empties_the_blobs_and_everything_reruns(ws):
    _chain(ws)
    assert _blob_count(ws) > 0
    gc = ws.gb("cache", "gc", "--max-size", "0", "--json")
    assert gc.exit_code == 0, gc.stderr
    assert gc.json["command"] == "cache gc"
    assert gc.json["evicted_results"] == 2
    assert gc.json["kept_results"] == 0
    assert gc.json["kept_bytes"] == 0
    assert _blob_count(ws) == 0
    again = ws.gb("build", "//pkg:top", "--json")
    assert again.ran() == {"//pkg:base#gen", "//pkg:top#gen"}


def test_gc_keeps_the_most_recently_used_results(ws):
    ws.write("a/BUILD.envs", """
        genrule(name = "a1", outs = ["a1.txt"], cmd = "head -c 3000 /dev/zero > $OUT")
        genrule(name = "a2", srcs = [":a1"], outs = ["a2.txt"], cmd = "cat $SRCS $SRCS > $OUT")
    """)
    ws.write("b/BUILD.envs", """
        genrule(name = "b1", outs = ["b1.txt"], cmd = "head -c 1000 /dev/urandom > $OUT")
        genrule(name = "b2", srcs = [":b1"], outs = ["b2.txt"], cmd = "cat $SRCS $SRCS > $OUT")
    """)
    assert ws.gb("build", "//a:a2", "--json").ran() == {"//a:a1#gen", "//a:a2#gen"}
    b = ws.gb("build", "//b:b2", "--json")
    assert b.ran() == {"//b:b1#gen", "//b:b2#gen"}
    b_size = sum(_blob(ws, sha).stat().st_size for n in b.json["nodes"] for sha in n["outputs"].values())
    assert b_size == 3000

    # B's outputs fit, with room for small logs; A's (9000 bytes) do not
    text = ws.gb("cache", "gc", "--max-size", str(b_size + 500))
    assert text.exit_code == 0, text.stderr
    assert "evicted 2 results" in text.stdout
    assert ws.gb("build", "//b:b2", "--json").statuses() == {"//b:b1#gen": "cached", "//b:b2#gen": "cached"}
    assert ws.gb("build", "//a:a2", "--json").ran() == {"//a:a1#gen", "//a:a2#gen"}

    # now A is the most recently used: a limit that fits A only evicts B
    ws.gb("cache", "gc", "--max-size", "9K")
    assert ws.gb("build", "//a:a2", "--json").statuses() == {"//a:a1#gen": "cached", "//a:a2#gen": "cached"}
    assert ws.gb("build", "//b:b2", "--json").ran() == {"//b:b1#gen", "//b:b2#gen"}


def test_gc_rejects_a_bad_size(ws):
    _chain(ws)
    bad = ws.gb("cache", "gc", "--max-size", "lots", "--json")
    assert bad.exit_code == 2
    assert "invalid size" in bad.json["error"]["message"]


def test_clean_deletes_the_cache_and_graphbuild_out(ws):
    _chain(ws)
    assert (ws.root / "graphbuild-out/pkg/top.txt").is_file()
    cleaned = ws.gb("clean", "--json")
    assert cleaned.exit_code == 0, cleaned.stderr
    assert cleaned.json == {"command": "clean", "cache_dir": str(ws.cache), "exit_code": 0}
    assert list(ws.cache.iterdir()) == []
    assert not (ws.root / "graphbuild-out").exists()
    again = ws.gb("build", "//pkg:top", "--json")
    assert again.exit_code == 0, again.stderr
    assert again.ran() == {"//pkg:base#gen", "//pkg:top#gen"}
    assert (ws.root / "graphbuild-out/pkg/top.txt").read_text() == "BASE-CONTENT\n"
    text = ws.gb("clean")
    assert text.exit_code == 0
    assert "cleaned" in text.stdout


# -- where the cache is --------------------------------------------------------------------------


def test_without_cache_dir_the_environment_variable_is_used(ws, tmp_path, monkeypatch, capsys):
    ws.write("pkg/BUILD.envs", 'genrule(name = "x", outs = ["x.txt"], cmd = "echo x > $OUT")\n')
    env_cache = tmp_path / "from-env"
    monkeypatch.setenv("GRAPHBUILD_CACHE_DIR", str(env_cache))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert main(["build", "//pkg:x", "-C", str(ws.root), "--json"]) == 0
    capsys.readouterr()
    assert any((env_cache / "blobs").rglob("*"))
    assert not (tmp_path / "xdg").exists()
    assert not ws.cache.exists()
    assert main(["clean", "-C", str(ws.root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"command": "clean", "cache_dir": str(env_cache),
                                                        "exit_code": 0}


def test_default_cache_dir_follows_xdg_then_home(tmp_path, monkeypatch):
    monkeypatch.delenv("GRAPHBUILD_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "graphbuild"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")  # not absolute: ignored, as the spec says
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "graphbuild"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "graphbuild"
    monkeypatch.setenv("GRAPHBUILD_CACHE_DIR", str(tmp_path / "explicit"))
    assert default_cache_dir() == tmp_path / "explicit"
