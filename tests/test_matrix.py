"""`graphbuild matrix` and `graphbuild pick` on a copy of the example workspace, with the real
Docker engine and registry: the four statuses, cached cells, the HTML grid in a real headless
browser, JUnit reports, and pick's choices and refusals."""

from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from docker_env import copy_example

if TYPE_CHECKING:
    from conftest import Result, TestWorkspace

pytestmark = [pytest.mark.docker]

PROD, DEV, ML, RESEARCH = "//envs:prod", "//envs:dev", "//envs:ml", "//envs:research"
TEXTSTATS, FEATURIZE = "//libs/textstats:textstats", "//libs/featurize:featurize"
JOBCONFIG, CLASSIFY = "//libs/jobconfig:jobconfig", "//libs/classify:classify"
LEGACYCONF, TYPEDROWS = "//libs/legacyconf:legacyconf", "//libs/typedrows:typedrows"
RESEARCH_TOOLS = "//envs:research_tools"


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory, registry: str) -> Iterator[tuple[TestWorkspace, Result]]:
    """The example workspace and its first (cold) matrix, shared by the tests of this module."""
    top = tmp_path_factory.mktemp("matrix")
    copy_example(top / "example")
    from conftest import TestWorkspace

    ws = TestWorkspace(top / "example", top / "cache")
    first = ws.gb("matrix", "--json", "--html", "out/matrix.html", "--junit-dir", "out/junit")
    assert first.exit_code == 0, first.stderr[-3000:] + first.stdout[-2000:]
    yield ws, first


def cells(result: Result) -> dict[tuple[str, str], dict]:
    return {(c["library"], c["environment"]): c for c in result.json["cells"]}


def test_the_matrix_of_the_example_has_all_four_statuses_each_where_it_belongs(example):
    _, first = example
    found = cells(first)
    assert first.json["environments"] == [DEV, ML, PROD, RESEARCH]
    assert len(found) == 4 * 7
    statuses = {c["status"] for c in found.values()}
    assert statuses == {"pass", "fail", "incompatible", "not applicable"}

    # listed libraries run their environment's own test node
    for env in (DEV, ML, PROD, RESEARCH):
        for lib in (TEXTSTATS, FEATURIZE):
            cell = found[(lib, env)]
            assert (cell["status"], cell["probe"]) == ("pass", False), cell
            assert cell["node"] == f"{env}#test.{lib.rsplit(':', 1)[1]}"
    # a library that needs only the core runs everywhere: listed in prod, probed elsewhere
    assert found[(JOBCONFIG, PROD)]["probe"] is False
    for env in (DEV, ML, RESEARCH):
        cell = found[(JOBCONFIG, env)]
        assert (cell["status"], cell["probe"], cell["node"]) == ("pass", True, f"{env}#probe.jobconfig.test")
    # the ml library: incompatible without scikit-learn (decided from the lock), passes in both ml stacks
    for env in (DEV, PROD):
        cell = found[(CLASSIFY, env)]
        assert (cell["status"], cell["reason"], cell["node"]) == (
            "incompatible", "missing package scikit-learn", None)
    assert found[(CLASSIFY, ML)]["status"] == "pass"
    assert (found[(CLASSIFY, RESEARCH)]["status"], found[(CLASSIFY, RESEARCH)]["probe"]) == ("pass", True)
    # tomli 2 in the research fork breaks legacyconf: a real failure, naming its tests
    failed = found[(LEGACYCONF, RESEARCH)]
    assert (failed["status"], failed["probe"]) == ("fail", True)
    assert sorted(t.rsplit("::", 1)[1] for t in failed["failing"]) == ["test_default_queue", "test_reads_the_job_table"]
    assert "test_reads_the_job_table" in failed["reason"]
    assert found[(LEGACYCONF, PROD)]["status"] == "pass"
    for env in (DEV, ML):
        assert (found[(LEGACYCONF, env)]["status"], found[(LEGACYCONF, env)]["reason"]) == (
            "incompatible", "missing package tomli")
    # a version conflict, read from the lock with PEP 440 semantics
    assert found[(RESEARCH_TOOLS, PROD)]["reason"] == "needs tomli>=2.0, the environment pins 1.2.3"
    assert found[(RESEARCH_TOOLS, RESEARCH)]["status"] == "pass"
    # requires-python excludes Python 3.11: not applicable, nothing built for it
    for env in (DEV, ML, PROD, RESEARCH):
        cell = found[(TYPEDROWS, env)]
        assert (cell["status"], cell["node"]) == ("not applicable", None)
        assert cell["reason"] == "requires Python >=3.12, the environment has 3.11"
    summary = first.json["summary"]
    assert summary["naive_test_runs"] == 28
    assert summary["test_runs_executed"] + summary["test_runs_reused"] == 17
    # probes whose library and closure equal a listed one's reuse its result (jobconfig in ml and research)
    assert summary["test_runs_reused"] >= 1


def test_no_image_is_built_for_incompatible_or_inapplicable_cells_and_probes_are_never_pushed(example):
    ws, _ = example
    result = ws.gb("matrix", DEV, PROD, "-v")
    assert result.exit_code == 0, result.stderr
    mentioned = set(re.findall(r"//[\w/.-]*:[\w.-]+#[\w.-]+", result.stderr))
    assert mentioned, result.stderr[-2000:]
    assert not [n for n in mentioned if "typedrows" in n or "probe.classify" in n], mentioned
    assert not [n for n in mentioned if n.endswith(("#push", "#load"))], mentioned


def test_a_second_matrix_with_nothing_changed_runs_no_test(example):
    ws, _ = example
    again = ws.gb("matrix", "--json")
    assert again.exit_code == 0, again.stderr
    summary = again.json["summary"]
    assert summary["test_runs_executed"] == 0
    assert summary["test_runs_reused"] == 17
    assert {c["test_run"] for c in again.json["cells"] if c["node"]} == {"reused"}
    assert cells(again)[(LEGACYCONF, RESEARCH)]["status"] == "fail"  # a cached failure is still a failure
    text = ws.gb("matrix")
    assert "test runs: 0 executed, 17 reused" in text.stdout
    assert re.search(r"//libs/legacyconf\s+incompatible\s+incompatible\s+pass\s+FAIL\*", text.stdout)


def test_a_library_change_reruns_only_that_librarys_cells(example):
    ws, _ = example
    path = ws.root / "libs/jobconfig/tests/test_jobconfig.py"
    original = path.read_text()
    try:
        path.write_text(original + "\n\ndef test_inputs():\n    assert jobconfig.load({'name': 'x'}).inputs == []\n")
        result = ws.gb("matrix", "--json")
        assert result.exit_code == 0, result.stderr
        executed = {c["node"] for c in result.json["cells"] if c["test_run"] == "executed"}
        # one run: the probes in ml and research have prod's closure for jobconfig (dev's too)
        assert executed and all("jobconfig" in node for node in executed), executed
        assert len(executed) <= 4
        # `why` explains a probe like any node: the test file that changed
        why = ws.gb("why", ML, "--node", f"{ML}#probe.jobconfig.test", "--json")
        assert why.exit_code == 0, why.stderr
        (entry,) = why.json["nodes"]
        assert any("test_jobconfig.py" in change["input"] for change in entry["changes"]), entry
    finally:
        path.write_text(original)


def test_the_html_grid_renders_in_headless_chromium_coloured_by_status(example, tmp_path):
    ws, _ = example
    page = ws.root / "out/matrix.html"
    assert page.is_file()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium is not installed (scripts/setup.sh installs it)")
    # the page as the browser computes it: each cell's background colour, read back from the DOM
    probe = tmp_path / "matrix-computed.html"
    probe.write_text(page.read_text().replace("</body>", (
        "<script>for (const td of document.querySelectorAll('td')) "
        "td.setAttribute('data-bg', getComputedStyle(td).backgroundColor);</script></body>")))
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    assert "<table" in dom
    colours = {"pass": "rgb(183, 228, 199)", "fail": "rgb(244, 166, 166)", "incompatible": "rgb(255, 216, 168)",
               "not applicable": "rgb(222, 226, 230)"}
    tds = re.findall(r'<td class="[^"]*" data-status="([^"]+)" title="([^"]*)"[^>]*data-bg="([^"]+)"', dom)
    assert len(tds) == 28, dom[:2000]
    for status, _, colour in tds:
        assert colour == colours[status], (status, colour)
    hovers = [title for status, title, _ in tds if status == "fail"]
    assert hovers and "test_reads_the_job_table" in hovers[0]
    assert any("missing package scikit-learn" in title for status, title, _ in tds if status == "incompatible")
    # and a picture of it: the fail colour is really painted
    shot = tmp_path / "matrix.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                    "--window-size=1400,900", page.as_uri()], capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 1000


def test_junit_reports_one_file_per_environment(example):
    ws, _ = example
    files = sorted(p.name for p in (ws.root / "out/junit").iterdir())
    assert files == ["matrix-envs_dev.xml", "matrix-envs_ml.xml", "matrix-envs_prod.xml", "matrix-envs_research.xml"]
    suite = ET.parse(ws.root / "out/junit/matrix-envs_research.xml").getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("7", "1", "1")
    failure = next(c for c in suite.iter("testcase") if c.get("name") == LEGACYCONF).find("failure")
    assert "test_reads_the_job_table" in failure.get("message")


def test_matrix_of_chosen_environments_and_libraries(example):
    ws, _ = example
    result = ws.gb("matrix", "//envs:prod", "//envs:research", "--libraries", "//libs/legacyconf", "--json")
    assert result.exit_code == 0, result.stderr
    assert [(c["environment"], c["status"]) for c in result.json["cells"]] == [(PROD, "pass"), (RESEARCH, "fail")]


# -- pick ---------------------------------------------------------------------------------------


def test_pick_returns_the_core_environment_for_a_plain_workload(example):
    ws, _ = example
    result = ws.gb("pick", "--requires", "requests>=2.31", "numpy>=2", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.json["chosen"]["label"] == PROD
    assert result.json["chosen"]["image"].endswith("/graphbuild-examples/prod:latest")
    ranking = result.json["ranking"]
    assert ranking[0]["label"] == PROD and ranking[0]["layers_above_core"] == 0
    assert all(r["layers_above_core"] == 1 for r in ranking[1:])
    sizes = [r["installed_bytes"] for r in ranking[1:]]
    assert sizes == sorted(sizes)
    text = ws.gb("pick", "--requires", "requests>=2.31")
    assert text.exit_code == 0
    assert text.stdout.startswith(f"picked {PROD}: image ")


def test_pick_returns_the_ml_environment_for_a_script_importing_scikit_learn(example):
    ws, _ = example
    (ws.root / "job.py").write_text("import os\nimport numpy as np\nfrom sklearn.linear_model import Ridge\n\n"
                                    "def main():\n    import pandas  # not at the top: not required\n")
    result = ws.gb("pick", "--script", "job.py", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.json["imports"] == {"numpy": 2, "sklearn": 3}
    assert result.json["chosen"]["label"] == ML
    assert result.json["chosen"]["imports"] == {"numpy": "numpy", "sklearn": "scikit-learn"}
    rejected = {r["label"]: r["reasons"] for r in result.json["ranking"] if not r["qualifies"]}
    assert rejected == {PROD: ["missing package scikit-learn (for `import sklearn`, line 3)"],
                        DEV: ["missing package scikit-learn (for `import sklearn`, line 3)"]}


def test_pick_with_a_library_takes_its_test_results_from_the_matrix(example):
    ws, _ = example
    result = ws.gb("pick", "--library", "//libs/legacyconf", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.json["chosen"]["label"] == PROD
    reasons = {r["label"]: r["reasons"] for r in result.json["ranking"]}
    assert "fail here" in reasons[RESEARCH][0] and "test_reads_the_job_table" in reasons[RESEARCH][0]
    # combined: the ml library and tomli: only the research fork has both
    both = ws.gb("pick", "--library", "//libs/classify", "--requires", "tomli", "--json")
    assert both.exit_code == 0, both.stderr
    assert both.json["chosen"]["label"] == RESEARCH
    reasons = {r["label"]: r["reasons"] for r in both.json["ranking"]}
    assert reasons[ML] == ["missing package tomli"]
    assert reasons[PROD] == ["//libs/classify: missing package scikit-learn"]  # prod's tomli 1.2.3 is enough


def test_pick_exits_1_naming_the_missing_package_when_nothing_qualifies(example):
    ws, _ = example
    result = ws.gb("pick", "--requires", "pandas>=2.2", "--json")
    assert result.exit_code == 1
    assert result.json["chosen"] is None
    assert set(result.json["nearest"]) == {PROD, DEV, ML, RESEARCH}
    assert all(r["reasons"] == ["missing package pandas"] for r in result.json["ranking"])
    text = ws.gb("pick", "--requires", "pandas>=2.2", "numpy<2")
    assert text.exit_code == 1
    assert "no environment qualifies" in text.stdout
    assert "missing package pandas; needs numpy<2, the environment pins 2.2.6" in text.stdout


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "expected"), [
    (("matrix", "//envs:nope"), "nope"),
    (("matrix", "//envs:core"), "//envs:core is not an environment of the workspace"),
    (("matrix", "--libraries", "//envs:prod"), "//envs:prod is not a library of the workspace"),
    (("pick", "--requires", "numpy>>2"), "--requires 'numpy>>2' is not a PEP 508 requirement"),
    (("pick", "--script", "broken.py"), "broken.py:2: script broken.py is not valid Python"),
    (("pick", "--script", "missing.py"), "cannot read script missing.py"),
    (("pick",), "pick needs a workload"),
    (("pick", "--library", "//libs/nope"), "nope"),
])
def test_bad_input_is_a_clear_error_with_exit_2(example, args, expected):
    ws, _ = example
    (ws.root / "broken.py").write_text("import numpy\ndef f(:\n")
    result = ws.gb(*args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
