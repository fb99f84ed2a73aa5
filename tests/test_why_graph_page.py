"""`why --graph` as a person sees it: the SVG and the HTML page drawn by a real browser
(headless Chromium), checked for the legend, the colours of the nodes (pixels sampled where
the SVG puts each node) and the absence of contradictory text.

The run drawn has everything that used to go wrong: a lock node rewritten by `--relock`, a
node whose inputs are a long mapping (an image's runtime, an `env`), a node new in the run,
and a cache hit."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from graphbuild.reporting.why_graph import COLORS, MEANING

SVG = "{http://www.w3.org/2000/svg}"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/setup.sh installs it)")

#: A rule with a lock, as environments and base images have: `want` is pinned in a file of the
#: workspace that only `graphbuild lock` (or --relock) writes, and the build reads.
PIN_PLUGIN = '''
from graphbuild.api import Attrs, DefaultInfo, Field, Source, StaleLock, executor, rule
from graphbuild.rules import run_command, staged_sources


@executor("pin.lock", version=1, cacheable=False)
def write_pin(ctx):
    ctx.write_source(ctx.inputs["lock_name"], (ctx.inputs["want"] + "\\n").encode())


class PinAttrs(Attrs):
    want: str = Field(description="what the lock pins")
    srcs: list[Source] = Field(default=[], description="files the output is made from")


@rule(attrs=PinAttrs, version=1)
def pinned(ctx, attrs):
    name = f"pin.{ctx.label.name}.txt"
    ctx.action("lock", executor=write_pin, phase="lock", inputs={"want": attrs.want, "lock_name": name})
    if ctx.locking:
        return [DefaultInfo()]
    pin = ctx.read_text(name).strip() if (ctx.workspace_root / ctx.package / name).is_file() else None
    if pin != attrs.want:
        raise StaleLock(f"the lock {name} is out of date", location=ctx.attr_location("want"),
                        hint="graphbuild lock (or --relock)")
    use = ctx.action("use", executor=run_command, outputs=["pinned.txt"],
                     inputs={"cmd": "cat $SRCS > $OUT; echo $PIN >> $OUT", "env": {"PIN": pin},
                             **staged_sources(ctx, attrs.srcs, "srcs")})
    return [DefaultInfo(files=(use.output("pinned.txt"),))]
'''

BUILD = """
genrule(name = "la", srcs = ["a.txt"], outs = ["la.txt"], cmd = "cat $SRCS > $OUT")
genrule(name = "lb", srcs = ["b.txt"], outs = ["lb.txt"], cmd = "cat $SRCS > $OUT",
        env = {{"RUNTIME": "{runtime}", "SHORT": "{short}"}})
pinned(name = "app", want = "{want}", srcs = [":la", ":lb"])
"""
# a value much longer than a note: cut anywhere, it would show half a JSON string
RUNTIME = '{"cmd": ["python", "-m", "service"], "env": {"MODE": "%s"}, "user": "1000", "workdir": "/srv/app"}'


@pytest.fixture
def relocked(ws):
    """Two runs of `build --relock`: the second after a change of b.txt, of two env entries
    (one a long JSON text) and of the pinned value (so the lock node runs again)."""
    ws.write("graphbuild.toml", '[plugins]\nrules = ["tools/pin.py"]\n')
    ws.write("tools/pin.py", PIN_PLUGIN)
    ws.write("pkg/a.txt", "a\n")
    ws.write("pkg/b.txt", "b\n")
    ws.write("pkg/BUILD.envs", BUILD.format(runtime=RUNTIME.replace('"', '\\"') % "one", short="1", want="v1"))
    first = ws.gb("build", "//pkg:app", "--relock", "--json")
    assert first.exit_code == 0, first.stderr
    ws.first_page = ws.root / "first.html"
    assert ws.gb("why", "//pkg:app", "--graph", str(ws.first_page)).exit_code == 0
    ws.write("pkg/b.txt", "b changed\n")
    ws.write("pkg/BUILD.envs", BUILD.format(runtime=RUNTIME.replace('"', '\\"') % "two", short="2", want="v2"))
    second = ws.gb("build", "//pkg:app", "--relock", "--json")
    assert second.exit_code == 0, second.stderr
    assert second.statuses() == {"//pkg:app#lock": "ran", "//pkg:la#gen": "cached", "//pkg:lb#gen": "ran",
                                 "//pkg:app#use": "ran"}
    return ws


def nodes_of(root: ET.Element) -> dict[str, ET.Element]:
    return {g.findtext(f"{SVG}title"): g for g in root.iter(f"{SVG}g") if g.get("class") == "node"}


def texts(element: ET.Element) -> list[str]:
    return [t.text or "" for t in element.iter(f"{SVG}text")]


def screenshot(tmp_path: Path, page: Path, width: int, height: int) -> Path:
    png = tmp_path / (page.name + ".png")
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--force-device-scale-factor=1", f"--user-data-dir={tmp_path / 'chromium'}",
                    f"--window-size={width},{height}", f"--screenshot={png}", page.as_uri()],
                   check=True, capture_output=True, timeout=120)
    return png


def rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))


def close(pixel, colour: str) -> bool:
    return all(abs(a - b) <= 3 for a, b in zip(pixel[:3], rgb(colour), strict=True))


def colour_counts(picture) -> dict[str, int]:
    """status -> how many pixels of the picture have its colour."""
    histogram = picture.getcolors(maxcolors=1 << 24)
    return {status: sum(n for n, pixel in histogram if close(pixel, colour)) for status, colour in COLORS.items()}


def box(group: ET.Element) -> tuple[float, float, float, float]:
    """The bounding box (graph coordinates) of a node's shape."""
    shape = next(el for el in group.iter() if el.tag in (f"{SVG}path", f"{SVG}polygon"))
    numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", shape.get("d") or shape.get("points"))]
    xs, ys = numbers[0::2], numbers[1::2]
    return min(xs), min(ys), max(xs), max(ys)


@needs_dot
@needs_chromium
def test_the_drawn_run_has_a_legend_the_right_colours_and_no_contradiction(relocked, tmp_path):
    from PIL import Image

    svg_path, page = relocked.root / "why.svg", relocked.root / "why.html"
    for dest in (svg_path, page):
        result = relocked.gb("why", "//pkg:app", "--graph", str(dest))
        assert result.exit_code == 0, result.stderr
    root = ET.parse(svg_path).getroot()
    nodes = nodes_of(root)
    assert set(nodes) == {"//pkg:app#lock", "//pkg:la#gen", "//pkg:lb#gen", "//pkg:app#use"}

    # -- the text: nothing contradicts the colours, no None, no value cut in the middle
    every = "\n".join(texts(root))
    assert "None" not in every and "No node ran" not in every
    lock = "\n".join(texts(nodes["//pkg:app#lock"]))
    assert "relocked" in lock and "outside world" not in lock and "want: v1 → v2" in lock
    lb = texts(nodes["//pkg:lb#gen"])
    assert "env[SHORT]: \"1\" → \"2\"" in lb  # a short change in full
    assert "env[RUNTIME] changed" in lb  # a long one named, not cut
    for line in every.splitlines():
        assert line.count('"') % 2 == 0, f"a note cut inside a quoted value: {line!r}"
        assert not re.search(r"[{\[][^}\]]*…", line), f"a note cut inside JSON: {line!r}"
    html_text = page.read_text()
    assert "None" not in re.sub(r"<[^>]+>", " ", html_text) and "No node ran" not in html_text
    assert "outside world" not in html_text
    assert len(re.findall(r'<td class="v">[^<]*/srv/app', html_text)) == 2  # the table: both values whole
    assert 'MODE\\&quot;: \\&quot;two\\&quot;}, \\&quot;user' in html_text
    first = relocked.first_page.read_text()  # every node new in that run: they ran, and the page says why
    assert "No node ran" not in first and "no earlier run of this node is recorded" in first

    # -- the arrows: from a cause to what it caused; the lock points at what read it
    edges = {g.findtext(f"{SVG}title") for g in root.iter(f"{SVG}g") if g.get("class") == "edge"}
    assert edges == {"//pkg:la#gen->//pkg:app#use", "//pkg:lb#gen->//pkg:app#use", "//pkg:app#lock->//pkg:app#use"}

    # -- the legend, in the SVG itself: a swatch of each colour with its meaning
    graph = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "graph")
    legend_text = " ".join(t.text or "" for t in graph.findall(f"{SVG}g/{SVG}text") + graph.findall(f"{SVG}text"))
    for status, colour in COLORS.items():
        assert MEANING[status] in legend_text
        assert colour in {el.get("fill") for el in graph.iter(f"{SVG}polygon")}, status
    assert "A → B: B read A's result" in legend_text

    # -- the pixels: the SVG drawn by a browser, each node sampled inside its box
    width, height = (math.ceil(float(root.get(side).removesuffix("pt")) * 4 / 3) for side in ("width", "height"))
    picture = Image.open(screenshot(tmp_path, svg_path, width, height)).convert("RGB")
    tx, ty = (float(n) for n in re.search(r"translate\(([-\d.]+) ([-\d.]+)\)", graph.get("transform")).groups())
    expected = {"//pkg:app#lock": "ran", "//pkg:la#gen": "cached", "//pkg:lb#gen": "ran", "//pkg:app#use": "ran"}
    for nid, status in expected.items():
        x0, y0, _, y1 = box(nodes[nid])
        point = ((x0 + 5 + tx) * 4 / 3, ((y0 + y1) / 2 + ty) * 4 / 3)  # inside the box, left of its centred text
        pixel = picture.getpixel((round(point[0]), round(point[1])))
        assert close(pixel, COLORS[status]), (nid, status, pixel)
    counts = colour_counts(picture)
    assert counts["failed"] > 200 and counts["skipped"] > 200  # no such node: only the legend has them
    assert counts["ran"] > 3 * counts["failed"] and counts["cached"] > counts["failed"]  # nodes, not just swatches

    # -- the page renders the drawing too (not a blank or broken page)
    shot = Image.open(screenshot(tmp_path, page, width + 60, height + 600)).convert("RGB")
    page_counts = colour_counts(shot)
    assert all(page_counts[s] > 200 for s in COLORS), page_counts


@needs_dot
def test_a_graph_into_a_missing_directory_is_a_clear_error(relocked):
    result = relocked.gb("why", "//pkg:app", "--graph", "no/such/dir/why.svg")
    assert result.exit_code == 2
    assert "Traceback" not in result.stderr
    assert "no/such/dir" in result.stderr and "does not exist" in result.stderr and "mkdir -p" in result.stderr
    assert not (relocked.root / "no").exists()
    as_json = relocked.gb("why", "//pkg:app", "--graph", "no/such/dir/why.svg", "--json")
    assert as_json.exit_code == 2 and as_json.json["error"]["message"].startswith("cannot write")


# -- end to end: an environment's image on the real engine, relocked ------------------------


@pytest.fixture
def services(registry: str) -> None:
    """The engine, the registry and the base tarball (conftest's `registry` starts them)."""


@needs_dot
@pytest.mark.docker
@pytest.mark.network
@pytest.mark.usefixtures("services")
def test_an_environment_relocked_with_a_new_image_env_is_drawn_without_contradiction(ws):
    from test_image_keys import A, library, one_env

    library(ws, "mylib", {"mylib/__init__.py": "VALUE = 1\n",
                          "tests/test_mylib.py": "def test_value():\n    assert True\n"})
    one_env(ws, "mylib", extra='\n    env = {"MODE": "one", "OTHER": "' + "x" * 80 + '"},')
    first = ws.gb("test", A, "--relock", "--json")
    assert first.exit_code == 0, first.stderr
    first_page = ws.root / "first.html"
    assert ws.gb("why", A, "--graph", str(first_page)).exit_code == 0
    text = first_page.read_text()
    assert "No node ran" not in text and "None" not in re.sub(r"<[^>]+>", " ", text)

    # a new requirement (the lock is stale: --relock runs the lock node) and a new image env
    ws.write("envs/BUILD.envs", (ws.root / "envs/BUILD.envs").read_text()
             .replace('"six==1.16.0"', '"six==1.16.0", "packaging==24.1"').replace('"one"', '"two"'))
    second = ws.gb("test", A, "--relock", "--json")
    assert second.exit_code == 0, second.stderr
    assert second.statuses()[f"{A}#lock"] == "ran" and second.statuses()[f"{A}#image"] == "ran"
    svg_path = ws.root / "why.svg"
    assert ws.gb("why", A, "--graph", str(svg_path)).exit_code == 0
    root = ET.parse(svg_path).getroot()
    nodes = nodes_of(root)
    every = "\n".join(texts(root))
    assert "None" not in every and "No node ran" not in every
    lock = "\n".join(texts(nodes[f"{A}#lock"]))
    assert "relocked" in lock and "outside world" not in lock
    image = texts(nodes[f"{A}#image"])
    assert any('[MODE]: "one" → "two"' in line for line in image), image  # the entry that changed, whole
    for line in every.splitlines():
        assert line.count('"') % 2 == 0, f"a note cut inside a quoted value: {line!r}"
        assert not re.search(r"[{\[][^}\]]*…", line), f"a note cut inside JSON: {line!r}"
    edges = [g.findtext(f"{SVG}title").split("->") for g in root.iter(f"{SVG}g") if g.get("class") == "edge"]
    assert all(nid in {end for edge in edges for end in edge} for nid in nodes), "a node drawn alone"
    assert [effect for cause, effect in edges if cause == f"{A}#lock"], "the lock points at what read it"
