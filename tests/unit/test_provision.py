"""What `-H host deploy` installs on a bare host, decided from what the host says (pure)."""
from pathlib import Path

import pytest
from invoke.exceptions import Exit

from tasks.provision import Facts, parse_facts, plan

PLUGIN = Path("/usr/local/lib/docker/cli-plugins/docker-compose")


def facts(**changed) -> Facts:
    bare = dict(os_id="debian", os_like="", os_name="Debian GNU/Linux 12 (bookworm)", root=False,
                user="admin", arch="x86_64", sudo="yes", dockerd=False, engine=False,
                compose=False, debootstrap=False, systemd=False, compose_package=False)
    return Facts(**{**bare, **changed})


def test_the_facts_script_output_is_read_key_by_key():
    text = ("id=ubuntu\nlike=debian\nname=Ubuntu 24.04 LTS\nuid=1000\nuser=admin\narch=x86_64\n"
            "sudo=yes\ndockerd=no\nengine=no\ncompose=no\ndebootstrap=yes\nsystemd=yes\n"
            "compose_package=yes\n")
    assert parse_facts(text) == facts(os_id="ubuntu", os_like="debian", os_name="Ubuntu 24.04 LTS",
                                      debootstrap=True, systemd=True, compose_package=True)


def test_a_host_with_docker_and_compose_needs_nothing():
    assert plan(facts(dockerd=True, engine=True, compose=True), "h", None, "x86_64").empty


def test_a_bare_debian_host_gets_the_engine_debootstrap_this_machines_plugin_and_the_group():
    needed = plan(facts(), "h", PLUGIN, "x86_64")
    assert needed.packages == ("docker.io", "debootstrap")
    assert (needed.start_engine, needed.compose_from, needed.join_group) == (True, "upload", True)


def test_root_joins_no_group():
    assert plan(facts(root=True, sudo="root"), "h", PLUGIN, "x86_64").join_group is False


def test_ubuntu_gets_compose_from_its_own_package():
    needed = plan(facts(os_id="ubuntu", os_like="debian", compose_package=True), "h", None, "x86_64")
    assert needed.compose_from == "package" and "docker-compose-v2" in needed.packages


def test_an_engine_that_runs_but_refuses_the_user_is_not_installed_again():
    needed = plan(facts(dockerd=True, compose=True, debootstrap=True), "h", PLUGIN, "x86_64")
    assert needed.packages == () and needed.join_group is True


@pytest.mark.parametrize("sudo, said", [("password", "asks for a password"),
                                        ("missing", "is not installed")])
def test_no_sudo_without_a_password_is_refused_naming_the_fix(sudo, said):
    with pytest.raises(Exit) as refused:
        plan(facts(sudo=sudo), "admin@h", PLUGIN, "x86_64")
    assert said in str(refused.value.message)
    assert "admin ALL=(ALL) NOPASSWD: ALL" in str(refused.value.message)


def test_a_host_that_is_not_debian_or_ubuntu_is_refused():
    with pytest.raises(Exit) as refused:
        plan(facts(os_id="fedora", os_name="Fedora Linux 41"), "h", PLUGIN, "x86_64")
    assert "h runs Fedora Linux 41: this tool installs Docker only on Debian or Ubuntu" in \
        refused.value.message


def test_no_compose_for_the_hosts_cpu_is_refused_before_anything_is_installed():
    with pytest.raises(Exit) as refused:
        plan(facts(arch="aarch64"), "h", PLUGIN, "x86_64")
    assert "no plugin for its CPU (aarch64)" in refused.value.message
