"""tasks.images: which image user servers run, and which base the builds start FROM."""
from types import SimpleNamespace

import docker.errors
import pytest
from invoke import MockContext

from tasks import images

MODEL = SimpleNamespace(notebook_build_image="proj-notebook:latest")


def settings(image):
    return SimpleNamespace(notebook_image=image)


@pytest.mark.parametrize("image", ["", "jupyterhub-deploy-notebook:latest", "proj-notebook:latest"])
def test_empty_the_old_shared_name_or_its_own_name_mean_the_image_notebook_builds(image):
    assert images.is_project_image(settings(image), MODEL)
    assert images.server_image(settings(image), MODEL) == "proj-notebook:latest"


@pytest.mark.parametrize("image", ["quay.io/jupyter/scipy-notebook:2025-11-03",
                                   "other-notebook:latest", "jupyterhub-deploy-notebook:2"])
def test_any_other_name_is_that_image(image):
    assert not images.is_project_image(settings(image), MODEL)
    assert images.server_image(settings(image), MODEL) == image


class Engine:
    """The images an engine holds, and the pulls asked of it (each fails: no registry)."""

    def __init__(self, *names):
        self.names, self.pulled = set(names), []
        self.images, self.api = self, self

    def get(self, name):
        if name not in self.names:
            raise docker.errors.ImageNotFound(name)
        return SimpleNamespace(id=f"sha256:{name}")

    def pull(self, repository, tag, **kwargs):
        self.pulled.append(f"{repository}:{tag}")
        return iter([{"error": "dial tcp: lookup registry-1.docker.io: no such host"}])


LOCAL = "jupyterhub-deploy-base:bookworm"


@pytest.mark.parametrize("present, used, line", [
    (["debian:bookworm-slim", LOCAL], "debian:bookworm-slim", "base image: debian:bookworm-slim"),
    ([LOCAL], LOCAL, f"base image: {LOCAL}, the Debian base for debian:bookworm-slim already "
                     "on this machine (`inv build --pull` tries the registry)"),
])
def test_a_base_that_is_here_is_used_in_one_line_without_a_pull(capsys, present, used, line):
    engine = Engine(*present)
    assert images.ensure_base_image(MockContext(), engine, "debian:bookworm-slim") == used
    assert engine.pulled == []
    assert capsys.readouterr().out.splitlines() == [line]


def test_pull_first_asks_the_registry_then_falls_back_to_the_local_base(capsys):
    engine = Engine(LOCAL)
    assert images.ensure_base_image(MockContext(), engine, "debian:bookworm-slim",
                                    pull_first=True) == LOCAL
    assert engine.pulled == ["debian:bookworm-slim"]
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Pulling base image debian:bookworm-slim..."
    assert out[-1] == (f"base image: {LOCAL}, already on this machine, because "
                       "debian:bookworm-slim cannot be pulled")


def test_no_base_at_all_is_pulled_then_made(monkeypatch):
    engine, made = Engine(), []
    monkeypatch.setattr(images, "make_debian_base", lambda c, suite, tag: made.append((suite, tag)))
    assert images.ensure_base_image(MockContext(), engine, "debian:12") == LOCAL
    assert engine.pulled == ["debian:12"] and made == [("bookworm", LOCAL)]
