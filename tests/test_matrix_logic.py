"""The pure parts of `matrix` and `pick`: lock checks (PEP 440/508), script imports, the module
index of a layer, the ranking, and the reports. The real thing is in test_matrix.py."""

from __future__ import annotations

import io
import json
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import pytest

from graphbuild.errors import SpecError
from graphbuild.rules.python import compat, imports, matrix, matrix_report, pick

HOLDINGS = compat.Holdings(python="3.11", platform="x86_64-manylinux_2_36",
                           packages={"numpy": "2.2.6", "pandas": "2.1.4", "tomli": "1.2.3", "rc": "3.0rc1"},
                           test_only=frozenset({"pytest"}), libraries={"textstats": "//libs/textstats:textstats"})


@pytest.mark.parametrize(("requirement", "problem"), [
    ("numpy>=2.0", None),
    ("NumPy>=2.0,<2.3", None),  # names are compared canonically
    ("pandas>=2.2", "needs pandas>=2.2, the environment pins 2.1.4"),
    ("scikit-learn", "missing package scikit-learn"),
    ("pytest>=8", "missing package pytest (only its test runner has it)"),
    ("rc>=3.0rc1", None),  # a pre-release the lock pinned is what the environment has
    ("rc>=3.0", "needs rc>=3.0, the environment pins 3.0rc1"),
    ("pywin32; sys_platform == 'win32'", None),  # the marker excludes it here: nothing to check
    ("tomli>=2; python_version < '3.11'", None),
    ("tomli>=2; python_version >= '3.11'", "needs tomli>=2, the environment pins 1.2.3"),
    ("missing; platform_machine == 'x86_64'", "missing package missing"),
    ("missing; platform_machine == 'aarch64'", None),
    ("textstats>=99", None),  # an in-repo library the environment lists: the matrix checks it
])
def test_a_requirement_is_checked_against_the_lock(requirement, problem):
    assert compat.check_requirement(requirement, HOLDINGS) == problem


def test_requires_python_decides_not_applicable():
    assert compat.applies(">=3.12", "3.11") == "requires Python >=3.12, the environment has 3.11"
    assert compat.applies(">=3.11.4", "3.11") is None  # some 3.11 release has it
    assert compat.applies("<3.11", "3.11") is not None
    assert compat.applies("", "3.11") is None
    need = compat.Need("//x:new", "new", ("numpy",), ">=3.12")
    assert compat.check(need, HOLDINGS).status == compat.NOT_APPLICABLE


def test_a_library_needing_an_in_repo_library_the_environment_lacks_adds_it():
    featurize = compat.Need("//libs/featurize:featurize", "featurize", ("numpy>=2.0", "textstats"))
    classify = compat.Need("//libs/classify:classify", "classify", ("numpy", "featurize"),
                           deps=("//libs/featurize:featurize",))
    space = {"featurize": featurize, "classify": classify}
    verdict = compat.check(classify, HOLDINGS, space)
    assert (verdict.status, verdict.adds) == (compat.OK, ("//libs/featurize:featurize",))
    greedy = compat.Need("//libs/featurize:featurize", "featurize", ("scipy",))
    verdict = compat.check(classify, HOLDINGS, {"featurize": greedy, "classify": classify})
    assert verdict.status == compat.INCOMPATIBLE
    assert verdict.reason == "missing package scipy (for //libs/featurize:featurize)"


def test_every_problem_is_listed_the_first_is_the_reason():
    need = compat.Need("//x:y", "y", ("pandas>=2.2", "scipy", "numpy"))
    verdict = compat.check(need, HOLDINGS)
    assert verdict.problems == ("needs pandas>=2.2, the environment pins 2.1.4", "missing package scipy")
    assert verdict.reason == verdict.problems[0]


# -- script imports ---------------------------------------------------------------------------


def test_script_imports_are_the_module_level_ones_without_the_standard_library(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(
        "from __future__ import annotations\nimport os, json\nimport numpy as np\nimport sklearn.linear_model\n"
        "from pandas import DataFrame\nfrom . import sibling\n"
        "try:\n    import ujson\nexcept ImportError:\n    ujson = None\n"
        "try:\n    import yaml\nfinally:\n    pass\n"
        "if True:\n    import requests\n"
        "def main():\n    import torch\n"
        "class A:\n    import scipy\n")
    assert imports.script_imports(script, "job.py") == {"numpy": 3, "sklearn": 4, "pandas": 5, "yaml": 12,
                                                        "requests": 16}


def test_a_script_that_does_not_parse_is_a_spec_error_with_its_line(tmp_path):
    script = tmp_path / "bad.py"
    script.write_text("import numpy\n\ndef f(:\n    pass\n")
    with pytest.raises(SpecError) as caught:
        imports.script_imports(script, "bad.py")
    assert caught.value.location.path == "bad.py" and caught.value.location.line == 3
    assert "not valid Python" in caught.value.render()
    (tmp_path / "nul.py").write_bytes(b"import a\0\n")
    with pytest.raises(SpecError):
        imports.script_imports(tmp_path / "nul.py", "nul.py")


def _layer(path: Path, files: dict[str, str]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_the_module_index_reads_top_level_txt_then_record(tmp_path):
    site = "opt/env/lib/python3.11/site-packages"
    layer = _layer(tmp_path / "layer.tar", {
        f"{site}/sklearn/__init__.py": "",
        f"{site}/scikit_learn-1.9.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: scikit-learn\n"
                                                          "Version: 1.9.1\n\nName: not-a-header\n",
        f"{site}/scikit_learn-1.9.1.dist-info/RECORD": "sklearn/__init__.py,,\n",
        f"{site}/scikit_learn-1.9.1.dist-info/top_level.txt": "sklearn\n",
        f"{site}/PyYAML-6.0.dist-info/METADATA": "Name: PyYAML\nVersion: 6.0\n",
        f"{site}/PyYAML-6.0.dist-info/RECORD": "yaml/__init__.py,sha256=x,1\n_yaml/__init__.py,,\n"
                                               "PyYAML-6.0.dist-info/RECORD,,\n../../bin/x,,\n",
        f"{site}/six-1.17.0.dist-info/METADATA": "Name: six\nVersion: 1.17.0\n",
        f"{site}/six-1.17.0.dist-info/RECORD": "six.py,,\n__pycache__/six.cpython-311.pyc,,\n",
        f"{site}/fast-1.0.dist-info/METADATA": "Name: Fast_Thing\nVersion: 1.0\n",
        f"{site}/fast-1.0.dist-info/RECORD": "fast.cpython-311-x86_64-linux-gnu.so,,\n",
    })
    out = tmp_path / "out"
    out.mkdir()
    ctx = SimpleNamespace(inputs={"layers": [str(layer)]}, out=lambda name: out / name)
    meta = imports.index_modules.fn(ctx)
    document = json.loads((out / "modules.json").read_text())
    assert document["modules"] == {"_yaml": ["pyyaml"], "fast": ["fast-thing"], "six": ["six"],
                                   "sklearn": ["scikit-learn"], "yaml": ["pyyaml"]}
    assert document["distributions"]["scikit-learn"] == "1.9.1"
    assert document["installed_bytes"] == meta["installed_bytes"] > 0


# -- ranking -----------------------------------------------------------------------------------


def test_smallest_is_fewest_layers_above_core_then_bytes_then_name():
    found = [pick.Candidate("//e:b", "r", 1, 100), pick.Candidate("//e:a", "r", 1, 100),
             pick.Candidate("//e:big-core-only", "r", 0, 10**9), pick.Candidate("//e:small", "r", 1, 50),
             pick.Candidate("//e:unknown", "r", 0, None)]
    assert [c.label for c in sorted(found, key=pick.Candidate.sort_key)] == [
        "//e:big-core-only", "//e:unknown", "//e:small", "//e:a", "//e:b"]


def test_the_shared_core_is_what_every_environment_stacks():
    envs = {name: SimpleNamespace(stack=stack) for name, stack in {
        "prod": ["//e:core"], "ml": ["//e:core", "//e:ml"], "dev": ["//e:core", "//e:dev"]}.items()}
    assert pick.shared_core(SimpleNamespace(environments=envs)) == ["//e:core"]


def test_a_malformed_requirement_is_refused_before_anything_runs():
    with pytest.raises(SpecError) as caught:
        pick.parse_requirements(["numpy>=2", "pandas>>2"])
    assert "--requires 'pandas>>2' is not a PEP 508 requirement" in caught.value.render()


# -- reports -----------------------------------------------------------------------------------


CELLS = [
    matrix.Cell("//e:prod", "//l:a", matrix.PASS, "3 passed", "//e:prod#test.a", test_run="executed"),
    matrix.Cell("//e:ml", "//l:a", matrix.FAIL, "failing: test_x", "//e:ml#probe.a.test", True, ["t::test_x"],
                "reused"),
    matrix.Cell("//e:prod", "//l:b", matrix.INCOMPATIBLE, "missing package <scipy>"),
    matrix.Cell("//e:ml", "//l:b", matrix.NOT_APPLICABLE, "requires Python >=3.12, the environment has 3.11"),
]


def test_the_table_marks_probes_and_lists_reasons():
    text = matrix_report.table(CELLS, ["//e:prod", "//e:ml"], ["//l:a", "//l:b"])
    lines = text.splitlines()
    assert lines[0].split() == ["library", "prod", "ml"]
    assert lines[1].split() == ["//l:a", "pass", "FAIL*"]
    assert lines[2].split() == ["//l:b", "incompatible", "n/a"]
    assert "//l:a in //e:ml: fail: failing: test_x" in text
    assert matrix_report.summary_line(CELLS) == (
        "4 cells: 1 pass, 1 fail, 1 incompatible, 1 not applicable; test runs: 1 executed, 1 reused (of 2)")


def test_the_html_escapes_reasons_and_carries_them_on_hover():
    page = matrix_report.html_page(CELLS, ["//e:prod", "//e:ml"], ["//l:a", "//l:b"])
    assert "missing package &lt;scipy&gt;" in page and "<scipy>" not in page
    assert 'title="incompatible: missing package &lt;scipy&gt;"' in page
    assert page.count("<td ") == 4


def test_junit_has_a_case_per_library_failures_and_skips(tmp_path):
    paths = matrix_report.write_junit(CELLS, ["//e:prod", "//e:ml"], tmp_path)
    assert [p.name for p in paths] == ["matrix-e_prod.xml", "matrix-e_ml.xml"]
    ml = ET.parse(paths[1]).getroot().find("testsuite")
    assert (ml.get("tests"), ml.get("failures"), ml.get("skipped")) == ("2", "1", "1")
    assert ml.find("testcase/failure").text == "t::test_x"


def test_probe_node_names_stay_unique_when_two_libraries_share_a_name():
    libraries = {"//a:util": None, "//b:util": None, "//libs/x:x": None}
    keys = matrix._probe_keys(libraries)
    assert keys == {"//a:util": "a_util", "//b:util": "b_util", "//libs/x:x": "x"}
    assert matrix_report.short("//libs/x:x") == "//libs/x"
    assert matrix_report.short("//envs:research_tools") == "//envs:research_tools"
