"""`--relock` relocks only targets whose lock is stale (`StaleLock`): any other spec error, such
as a typo in a rule's attribute, is reported as it is and nothing is relocked."""

from __future__ import annotations

import sys

PY = f"{sys.version_info[0]}.{sys.version_info[1]}"


def test_a_typo_under_relock_is_reported_as_the_typo_and_nothing_is_relocked(ws):
    ws.write("envs/BUILD.envs", f'''
        py_layer(name = "core", requirements = ["six==1.16.0"])
        environment(name = "prod", layers = [":core"], python = "{PY}", platform = "linux/amd46")
    ''')
    # the lock is missing too (a StaleLock) but the typo (an analysis error of the same
    # target) is what is reported
    result = ws.gb("build", "--relock", "//envs:prod")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: envs/BUILD.envs:2: environment 'prod': platform 'linux/amd46' is "
                                    "not supported")
    assert "Traceback" not in result.stderr
    assert "lock" not in result.stderr.split("error:", 1)[0]  # no node ran before the error, no lock either
    assert not (ws.root / "envs/pylock.prod.toml").exists()


def test_a_missing_lock_is_a_stale_lock_that_relock_would_write(ws):
    from graphbuild.errors import StaleLock, UsageError
    from graphbuild.labels import Label
    from graphbuild.operations import build as operations

    ws.write("envs/BUILD.envs", f'''
        py_layer(name = "core", requirements = ["six==1.16.0"])
        environment(name = "prod", layers = [":core"], python = "{PY}")
    ''')
    stale = ws.gb("build", "//envs:prod")
    assert stale.exit_code == 2 and "has no lock file envs/pylock.prod.toml" in stale.stderr

    class Session:  # what stale_locks reads: an analysis that raises like the real one
        def __init__(self, error):
            self.error = error

        def analyze(self, labels):
            raise self.error

    missing = StaleLock("//envs:prod has no lock file envs/pylock.prod.toml")
    missing.target = Label.parse("//envs:prod")
    assert operations.stale_locks(Session(missing), [missing.target]) == [missing.target]
    typo = UsageError("unknown attribute")
    typo.target = Label.parse("//envs:prod")
    try:
        operations.stale_locks(Session(typo), [typo.target])
    except UsageError as err:
        assert err is typo
    else:
        raise AssertionError("a spec error that is not a stale lock must be raised, not relocked")
