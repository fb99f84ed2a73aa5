"""What a person (or a CI log) sees while a build runs: the live view on a terminal (driven
through a real pseudo-terminal: tmux), the line view elsewhere, -v, -q, colours."""

from __future__ import annotations

import io
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from graphbuild.reporting.console import progress_interval, wants_color, wants_live_view

ESC = "\x1b"
#: SGR sequences that set a colour (foreground or background, 8/256/true colour)
COLOUR = re.compile(r"\x1b\[(?:[0-9;]*;)?(?:3[0-9]|4[0-9]|9[0-7]|10[0-7])(?:;[0-9;]*)?m")


def slow_build(ws, flag: Path, *, cached: int = 0) -> None:
    """//pkg:top needs //pkg:slow, which waits until `flag` exists (the test decides when a
    node is "long", not a clock); `cached` quick nodes feed it too."""
    quick = "".join(f'genrule(name = "q{i}", srcs = ["q.txt"], outs = ["q{i}.out"], cmd = "cat $SRCS > $OUT")\n'
                    for i in range(cached))
    deps = ", ".join(f'":q{i}"' for i in range(cached))
    ws.write("pkg/q.txt", "q\n")
    ws.write("pkg/s.txt", "s\n")
    ws.write("pkg/BUILD.envs", quick + f"""
genrule(name = "slow", srcs = ["s.txt", {deps}], outs = ["slow.out"],
        cmd = "echo waiting; while [ ! -e {flag} ]; do sleep 0.05; done; cat $SRCS > $OUT")
genrule(name = "top", srcs = [":slow"], outs = ["top.out"], cmd = "cat $SRCS > $OUT")
""")


def wait_for(probe: Callable[[], str | None], what: str, deadline: float = 60.0) -> str:
    """Poll until `probe` returns text (a generous bound against a hang, not a speed check)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        found = probe()
        if found is not None:
            return found
        time.sleep(0.1)
    raise AssertionError(f"never saw {what}")


# -- the live view, on a real terminal -------------------------------------------------------

needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


class Terminal:
    """A tmux server of our own (its own socket): one window, 120x30, running one command."""

    def __init__(self, socket: str):
        self.socket = socket

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], check=True, capture_output=True,
                              text=True).stdout

    def start(self, ws, *args: str, env: dict[str, str]) -> None:
        argv = [sys.executable, "-m", "graphbuild", *args, "--cache-dir", str(ws.cache), "-C", str(ws.root)]
        keep = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "DOCKER_HOST") if k in os.environ}
        # tmux starts commands with its server's environment: name everything explicitly
        command = ("env -i " + " ".join(shlex.quote(f"{k}={v}") for k, v in {**keep, "TERM": "xterm-256color",
                                                                            **env}.items())
                   + " " + shlex.join(argv) + "; echo EXITED $?; sleep 600")
        self.tmux("new-session", "-d", "-s", "gb", "-x", "120", "-y", "30", command)

    def screen(self, *, escapes: bool = False) -> str:
        return self.tmux("capture-pane", "-p", *(["-e"] if escapes else []), "-t", "gb")

    def wait(self, shows: Callable[[str], object], what: str, *, escapes: bool = False) -> str:
        """The screen, once `shows(screen)` is true."""
        def probe() -> str | None:
            screen = self.screen(escapes=escapes)
            return screen if shows(screen) else None
        return wait_for(probe, what)


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    term = Terminal(f"graphbuild-test-{os.getpid()}-{time.monotonic_ns()}")
    try:
        yield term
    finally:
        subprocess.run(["tmux", "-L", term.socket, "kill-server"], capture_output=True)


@needs_tmux
def test_live_view_on_a_terminal_shows_the_running_node_its_elapsed_time_and_the_bar(ws, terminal, tmp_path):
    flag = tmp_path / "go"
    slow_build(ws, flag, cached=2)
    assert ws.gb("build", "//pkg:q0", "//pkg:q1").exit_code == 0  # two nodes will be cache hits
    terminal.start(ws, "build", "//pkg:top", env={})
    screen = terminal.wait(lambda s: re.search(r"//pkg:slow#gen +\d+\.\d s", s), "the running node, its time")
    assert re.search(r"━+.* 2/4 nodes +1 running", screen), screen  # the bar: two cache hits done of four
    assert "//pkg:top#gen" not in screen  # not started: not shown as running
    assert "EXITED" not in screen
    # the elapsed time moves while the node runs
    first = float(re.search(r"//pkg:slow#gen +(\d+\.\d) s", screen).group(1))
    terminal.wait(lambda s: (m := re.search(r"//pkg:slow#gen +(\d+\.\d) s", s)) and float(m.group(1)) > first,
                  "the elapsed time grow")
    coloured = terminal.screen(escapes=True)
    assert COLOUR.search(coloured), "a terminal without NO_COLOR is coloured"

    flag.touch()
    final = terminal.wait(lambda s: "EXITED" in s, "the end of the build")
    assert "EXITED 0" in final
    assert "4 nodes: 2 ran, 2 cached, 0 failed" in final  # the summary
    assert re.search(r"ran +//pkg:slow#gen \(\d+\.\d\d s\)", final)  # the nodes that did work stay on screen
    assert "━" not in final and not re.search(r"\d+ running", final)  # the live part is gone
    assert "[1/4] cached" not in final  # local cache hits only moved the bar


@needs_tmux
@pytest.mark.parametrize("env, flag", [({"NO_COLOR": "1"}, None), ({}, "--color=never")])
def test_no_color_and_color_never_keep_colour_codes_off_a_terminal(ws, terminal, tmp_path, env, flag):
    go = tmp_path / "go"
    slow_build(ws, go)
    terminal.start(ws, "build", "//pkg:top", *([flag] if flag else []), env=env)
    screen = terminal.wait(lambda s: "//pkg:slow#gen" in s, "the running node", escapes=True)
    assert not COLOUR.search(screen), repr(screen)
    go.touch()
    final = terminal.wait(lambda s: "EXITED" in s, "the end", escapes=True)
    assert "EXITED 0" in final and not COLOUR.search(final), repr(final)


@needs_tmux
def test_under_ci_a_terminal_gets_the_line_view_with_elapsed_time_on_repeated_running_lines(ws, terminal, tmp_path):
    flag = tmp_path / "go"
    slow_build(ws, flag)
    terminal.start(ws, "build", "//pkg:top", env={"CI": "true", "GRAPHBUILD_PROGRESS_INTERVAL": "0.3"})
    screen = terminal.wait(lambda s: len(re.findall(r"running +//pkg:slow#gen \(\d+ s\)", s)) >= 2,
                           "the running line repeated with its elapsed time")
    lines = screen.splitlines()
    assert lines[0] == "[0/2] running  //pkg:slow#gen"
    assert "━" not in screen and "nodes" not in screen  # no live view, no bar
    flag.touch()
    final = terminal.wait(lambda s: "EXITED" in s, "the end")
    assert re.search(r"\[1/2\] ran +//pkg:slow#gen", final) and "2 nodes: 2 ran" in final


# -- the line view (a pipe, a file) ----------------------------------------------------------

def test_line_view_repeats_running_lines_and_writes_each_line_before_the_next_event(ws, tmp_path, monkeypatch):
    """A run killed mid-node has printed every line about what happened before (cache hits
    included) and the node it was running: nothing is held back in a buffer."""
    flag = tmp_path / "go"
    slow_build(ws, flag, cached=30)
    assert ws.gb("build", *(f"//pkg:q{i}" for i in range(30))).exit_code == 0
    monkeypatch.setenv("GRAPHBUILD_PROGRESS_INTERVAL", "0.3")
    proc = ws.gb_process("build", "//pkg:top")
    seen: list[str] = []
    try:
        while True:
            line = proc.stderr.readline()
            assert line, "".join(seen)
            seen.append(line)
            if re.search(r"running +//pkg:slow#gen \(\d+ s\)", line):
                break
        proc.send_signal(signal.SIGKILL)
    finally:
        flag.touch()
        proc.wait()
    rest = proc.stderr.read()
    text = "".join(seen) + rest
    assert len(re.findall(r"cached +//pkg:q\d+#gen", text)) == 30, text
    assert "[30/32] running  //pkg:slow#gen\n" in text
    assert "EXITED" not in text and "nodes:" not in text  # it was killed: no summary


def test_plain_output_has_colour_only_when_asked(ws):
    ws.write("pkg/BUILD.envs", 'genrule(name = "a", srcs = [], outs = ["a.out"], cmd = "echo a > $OUT")\n')
    plain = ws.gb("build", "//pkg:a")
    assert plain.exit_code == 0 and ESC not in plain.stderr
    assert ESC not in ws.gb("build", "//pkg:a", "--color=never").stderr
    ws.write("pkg/BUILD.envs", 'genrule(name = "a", srcs = [], outs = ["a.out"], cmd = "echo b > $OUT")\n')
    forced = ws.gb("build", "//pkg:a", "--color=always")  # ran: green
    assert COLOUR.search(forced.stderr), forced.stderr
    bad = ws.gb("build", "//pkg:a", "--color=sometimes")
    assert bad.exit_code == 2 and "Traceback" not in bad.stderr and "always" in bad.stderr


FAILING = """
genrule(name = "good", srcs = [], outs = ["good.out"], cmd = "echo good work; echo ok > $OUT")
genrule(name = "bad", srcs = [], outs = ["bad.out"], cmd = "echo first; echo what went wrong; exit 3")
"""


def test_quiet_prints_only_the_failure_and_the_summary(ws):
    ws.write("pkg/BUILD.envs", FAILING)
    result = ws.gb("build", "//pkg:good", "//pkg:bad", "-q")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert not [line for line in lines if "running" in line or "//pkg:good" in line], result.stderr
    assert any(re.search(r"failed +//pkg:bad#gen: command exited with 3", line) for line in lines)
    assert "    | what went wrong" in lines  # the failure's log tail
    assert lines[-1].startswith("2 nodes: 1 ran, 0 cached, 1 failed")
    assert lines[-2].startswith("FAILED //pkg:bad#gen")
    quiet_ok = ws.gb("build", "//pkg:good", "-q")
    assert quiet_ok.stderr.splitlines() == [quiet_ok.stderr.splitlines()[-1]]  # the summary alone
    assert quiet_ok.stderr.startswith("1 nodes: 0 ran, 1 cached")


def test_verbose_shows_each_command_and_the_log_tail_of_nodes_that_ran(ws):
    ws.write("pkg/BUILD.envs", FAILING)
    normal = ws.gb("build", "//pkg:good")
    assert "$ " not in normal.stderr and "good work" not in normal.stderr
    ws.write("pkg/BUILD.envs", FAILING.replace("good work", "good work again"))
    verbose = ws.gb("build", "//pkg:good", "-v")
    assert verbose.exit_code == 0
    assert "//pkg:good#gen: $ bash -euo pipefail -c echo good work again; echo ok > $OUT" in verbose.stderr
    assert "    | good work again" in verbose.stderr
    lines = verbose.stderr.splitlines()
    # the command comes after its node's start, the log under its node's result
    assert lines.index("    | good work again") == 1 + next(i for i, line in enumerate(lines) if " ran " in line)


# -- how the view and colours are chosen -----------------------------------------------------

class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_and_view_choice():
    tty, pipe = _Tty(), io.StringIO()
    assert wants_color("auto", tty, {}) and not wants_color("auto", pipe, {})
    assert not wants_color("auto", tty, {"NO_COLOR": "1"}) and wants_color("auto", tty, {"NO_COLOR": ""})
    assert not wants_color("auto", tty, {"TERM": "dumb"})
    assert wants_color("always", pipe, {"NO_COLOR": "1"})  # an explicit flag wins over the environment
    assert not wants_color("never", tty, {})
    assert wants_live_view(tty, quiet=False, environ={})
    assert not wants_live_view(tty, quiet=True, environ={})
    assert not wants_live_view(tty, quiet=False, environ={"CI": "true"})
    assert wants_live_view(tty, quiet=False, environ={"CI": "false"})
    assert not wants_live_view(pipe, quiet=False, environ={})
    assert progress_interval({}) == 10 and progress_interval({"GRAPHBUILD_PROGRESS_INTERVAL": "2.5"}) == 2.5
    assert progress_interval({"GRAPHBUILD_PROGRESS_INTERVAL": "soon"}) == 10


def test_rich_is_not_imported_by_help_or_a_build_off_a_terminal(ws):
    ws.write("pkg/BUILD.envs", 'genrule(name = "a", srcs = [], outs = ["a.out"], cmd = "echo a > $OUT")\n')
    probe = ("import sys, contextlib, io\nfrom graphbuild.cli.main import main\n"
             "with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):\n"
             f"    code = main(['build', '//pkg:a', '--cache-dir', {str(ws.cache)!r}, '-C', {str(ws.root)!r}])\n"
             "print(code, 'rich' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["0", "False"]
