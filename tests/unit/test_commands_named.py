"""Messages name the command that works where the operator is (tasks/target.py
command_line): `inv TASK` here, `python -m tasks -H HOST TASK` over SSH."""
import pytest
from fabric import Config as FabricConfig
from invoke import Config, Context

from tasks.program import CheckedConnection
from tasks.status import hub_problem
from tasks.target import command_line, place


@pytest.fixture
def over_ssh(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no known_hosts, and nothing connects here
    return CheckedConnection("admin@hub.example.org", config=FabricConfig())


def test_here_the_command_is_inv():
    assert command_line(Context(Config()), "backup", "--user", "o'neil") == "inv backup --user 'o'\"'\"'neil'"
    assert command_line(None, "up") == "inv up"


def test_over_ssh_the_command_names_the_host_as_given(over_ssh):
    assert command_line(over_ssh, "up") == "python -m tasks -H admin@hub.example.org up"
    assert place(over_ssh) == "admin@hub.example.org"


def test_status_says_how_to_start_the_hub_over_ssh(over_ssh):
    problem = hub_problem({"container": None}, over_ssh)
    assert problem == "no hub container: start it with `python -m tasks -H admin@hub.example.org up`"


class EngineWith:
    """An engine holding these images; pulls are never asked for here."""

    def __init__(self, *names):
        self.names, self.images = set(names), self

    def get(self, name):
        import docker.errors
        from types import SimpleNamespace

        if name not in self.names:
            raise docker.errors.ImageNotFound(name)
        return SimpleNamespace(id=f"sha256:{name}")


def test_a_base_image_found_on_the_host_is_not_said_to_be_made_there(over_ssh, capsys):
    from tasks import images

    base = "jupyterhub-deploy-base:bookworm"
    assert images.ensure_base_image(over_ssh, EngineWith(base), "debian:bookworm-slim") == base
    line = capsys.readouterr().out.strip()
    assert "debootstrap" not in line
    assert line == (f"base image: {base}, the Debian base for debian:bookworm-slim already on "
                    "admin@hub.example.org (`python -m tasks -H admin@hub.example.org build --pull` "
                    "tries the registry)")
