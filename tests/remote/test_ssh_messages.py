"""What `python -m tasks -H host` tells the operator, against the real SSH host: advice that
pastes into their shell, settings named where they were set, commands that work over -H.

Nothing is deployed here: each test runs one task in a fresh copy of the project.
"""
import re
import shutil
import subprocess

import pytest

from conftest_support import copy_project_for_remote

pytestmark = pytest.mark.remote


@pytest.fixture
def project(remote_host, tmp_path):
    return copy_project_for_remote(tmp_path / "project", remote_host)


SHELLS = {
    # failglob: a pattern that matches no file is an error, as zsh makes it by default.
    "bash -O failglob": ["bash", "-O", "failglob", "-c"],
    "zsh": ["zsh", "-c"],
}


@pytest.mark.parametrize("shell", SHELLS)
def test_changed_key_advice_runs_as_printed_in_a_strict_shell(project, remote_host, tmp_path, shell):
    argv = SHELLS[shell]
    if shutil.which(argv[0]) is None:
        pytest.skip(f"{argv[0]} is not installed here (apt-get install {argv[0]})")
    remote_host.recreate_host_key()
    try:
        result = project.inv("status")
    finally:
        remote_host.trust_current_key()
    assert result.returncode != 0 and "has CHANGED" in result.output, result.output
    printed = re.search(r"ssh-keygen -R [^`\s]+", result.output)
    assert printed, result.output
    # A stand-in ssh-keygen that shows what it was given: the real one would edit this
    # machine's own known_hosts (OpenSSH finds it through the passwd entry, not $HOME).
    stub = tmp_path / "bin" / "ssh-keygen"
    stub.parent.mkdir()
    stub.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    stub.chmod(0o755)
    ran = subprocess.run([*argv, printed.group(0)], cwd=tmp_path, capture_output=True, text=True,
                         env={"PATH": f"{stub.parent}:/usr/bin:/bin", "HOME": str(tmp_path)})
    assert ran.returncode == 0, f"{shell} refused {printed.group(0)!r}: {ran.stderr}"
    assert ran.stdout.splitlines() == ["-R", f"[{remote_host.host}]:{remote_host.ssh_port}"]
