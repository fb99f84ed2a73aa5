"""CLI habits of tools users know: global options anywhere, help VERB, --version, completion."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from graphbuild import __version__
from graphbuild.cli.main import main


def _pkg(ws):
    ws.write("pkg/BUILD.envs", '''
        genrule(name = "one", outs = ["one.txt"], cmd = "echo 1 > $OUT")
        genrule(name = "two", outs = ["two.txt"], srcs = [":one"], cmd = "cat $SRCS > $OUT")
    ''')


def test_global_options_before_the_verb(ws, capsys, tmp_path, monkeypatch):
    _pkg(ws)
    monkeypatch.chdir(tmp_path)  # not in the workspace: only -C finds it
    assert main(["--cache-dir", str(ws.cache), "-C", str(ws.root), "--json", "build", "//pkg:two"]) == 0
    first = capsys.readouterr()
    assert '"status": "ran"' in first.out
    # after the verb overrides before it; -j before, --json after
    assert main(["-j", "1", "-C", "/nonexistent", "build", "//pkg:two", "-C", str(ws.root),
                 "--cache-dir", str(ws.cache), "--json"]) == 0
    assert '"status": "ran"' not in capsys.readouterr().out  # same cache: all cached
    assert (ws.root / "graphbuild-out/pkg/two.txt").read_text() == "1\n"


def test_help_verb_and_version(ws):
    build_help = ws.gb("help", "build")
    assert build_help.exit_code == 0
    assert build_help.stdout.startswith("usage: graphbuild build")
    assert "--relock" in build_help.stdout
    assert ws.gb("help", "cache", "gc").stdout.startswith("usage: graphbuild cache gc")
    wrong = ws.gb("help", "biuld")
    assert wrong.exit_code == 2
    assert "error: no verb 'biuld'\n  hint: did you mean 'build'?" in wrong.stderr
    version = subprocess.run([sys.executable, "-m", "graphbuild", "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout == f"graphbuild {__version__}\n"


def test_completion_labels_are_the_workspace_targets(ws):
    _pkg(ws)
    ws.write("other/deep/BUILD.envs", 'filegroup(name = "files", srcs = [])\n')
    listed = ws.gb("completion", "--labels")
    assert listed.exit_code == 0
    assert listed.stdout.split() == ["//other/deep/...", "//other/deep:files", "//pkg/...", "//pkg:one", "//pkg:two"]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completion_completes_verbs_options_and_labels(ws, tmp_path):
    _pkg(ws)
    script = ws.gb("completion", "bash").stdout
    assert script.startswith("# AUTOMATICALLY GENERATED")
    (tmp_path / "gb.bash").write_text(script)
    shim = tmp_path / "bin/graphbuild"  # what the script calls for labels
    shim.parent.mkdir()
    shim.write_text(f"#!/bin/sh\nexec {sys.executable} -m graphbuild \"$@\"\n")
    shim.chmod(0o755)

    def complete(*words: str) -> list[str]:
        line = (f"source {tmp_path}/gb.bash; COMP_WORDS=(graphbuild " + " ".join(words)
                + f"); COMP_CWORD={len(words)}; _shtab_graphbuild; " + "printf '%s\\n' \"${COMPREPLY[@]}\"")
        out = subprocess.run(["bash", "-c", line], cwd=ws.root, capture_output=True, text=True,
                             env={**os.environ, "PATH": f"{shim.parent}:{os.environ['PATH']}"})
        assert not out.stderr, out.stderr
        return out.stdout.split()

    assert complete("bui") == ["build"]
    assert "--relock" in complete("build", "--rel")
    assert complete("test", "//pkg:t") == ["//pkg:two"]
    assert set(complete("cache", "")) == {"gc", "keygen"}


def test_zsh_and_fish_scripts_complete_labels(ws):
    for shell in ("zsh", "fish"):
        script = ws.gb("completion", shell)
        assert script.exit_code == 0
        assert "graphbuild completion --labels" in script.stdout
    assert ws.gb("completion").exit_code == 2
