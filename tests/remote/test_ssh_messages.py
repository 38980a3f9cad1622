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
    root = tmp_path / "project"
    root.mkdir()
    return copy_project_for_remote(root, remote_host)


def set_in_env_file(root, key: str, value: str) -> None:
    env = root / ".env"
    lines = [line for line in env.read_text().splitlines() if not line.startswith(f"{key}=")]
    env.write_text("\n".join([*lines, f"{key}={value}"]) + "\n")


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


def test_hub_hostnames_entry_with_a_space_is_refused_naming_the_setting(project):
    set_in_env_file(project.root, "HUB_HOSTNAMES", "hub.example.org,two words.example.org")
    result = project.inv("cert")
    assert result.returncode != 0, result.output
    assert "HUB_HOSTNAMES" in result.output and "'two words.example.org'" in result.output
    assert not (project.root / "secrets" / "jupyterhub.crt").exists()


def test_hub_hostnames_split_on_commas_give_one_name_each(project):
    from cryptography import x509

    set_in_env_file(project.root, "HUB_HOSTNAMES", " hub.example.org ,alt.example.org,")
    project.inv_ok("cert")
    cert = x509.load_pem_x509_certificate((project.root / "secrets" / "jupyterhub.crt").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"hub.example.org", "alt.example.org"} <= set(names.get_values_for_type(x509.DNSName))


def test_status_over_ssh_names_the_command_that_works_there(project, remote_host):
    result = project.inv("status")  # a fresh project: no hub on the host
    assert result.returncode == 1, result.output
    assert f"`python -m tasks -H {remote_host.alias} up`" in result.output
    assert "`inv up`" not in result.output


def test_a_bad_shell_variable_is_reported_as_the_shells(project):
    result = project.inv("status", env={"HUB_PORT": "8443x"})
    assert result.returncode != 0
    assert "HUB_PORT='8443x'" in result.output
    assert "shell" in result.output and "Bad settings in .env" not in result.output
