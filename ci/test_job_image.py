"""Run inside the CI job image (//:ci) by `graphbuild test //:ci`: what a GitLab job needs is there."""

import shutil
import subprocess


def test_graphbuild_and_what_it_drives_are_installed():
    exe = shutil.which("graphbuild")
    assert exe and exe.startswith("/opt/env/")
    out = subprocess.run([exe, "ci", "gitlab", "--help"], capture_output=True, text=True, check=True).stdout
    assert "--job-image" in out
    import docker  # noqa: F401  (the engine, through DOCKER_HOST)
    from uv import find_uv_bin

    assert subprocess.run([find_uv_bin(), "--version"], capture_output=True, check=True).returncode == 0
