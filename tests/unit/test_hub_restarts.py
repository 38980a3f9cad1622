"""What makes a server that started while its hub was down go on as soon as the hub is back:
the user image's extension (notebook/jupyterhub_deploy/jupyterhub_deploy_hubwait.py) asks
the hub every half second, against a real listener that comes up late; and the hub answers
without waiting for its check of such a server (hub/jupyterhub_config.py)."""
import asyncio
import json
import logging
import sys
import time
from pathlib import Path

import pytest

from tasks.limits import Limits, hub_env
from tasks.names import user_volume_template

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebook"
sys.path.insert(0, str(NOTEBOOK / "jupyterhub_deploy"))
import jupyterhub_deploy_hubwait as hubwait  # noqa: E402  (copied into the user image)

LOG = logging.getLogger("test_hub_restarts")


async def http_get(url: str):
    """A minimal GET of http://host:port/..., raising as fetch does when nothing listens."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /hub/api HTTP/1.0\r\n\r\n")
    await writer.drain()
    answer = await reader.read()
    writer.close()
    return answer.split(b"\r\n")[0]


async def answer_after(port: int, delay: float):
    await asyncio.sleep(delay)

    async def respond(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.0 200 OK\r\nX-JupyterHub-Version: 6.1.1\r\n\r\n{}")
        await writer.drain()
        writer.close()
    return await asyncio.start_server(respond, "127.0.0.1", port)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_hub_that_comes_back_is_reached_within_a_retry_not_after_a_backoff():
    port = free_port()

    async def run():
        hub = asyncio.create_task(answer_after(port, 1.2))
        started = time.monotonic()
        answer = await hubwait.wait_for_hub(http_get, f"http://127.0.0.1:{port}/hub/api", LOG,
                                            retry_s=0.1, wait_s=10)
        waited = time.monotonic() - started
        (await hub).close()
        return answer, waited

    answer, waited = asyncio.run(run())
    assert answer == b"HTTP/1.0 200 OK"
    # JupyterHub's own tries would come at 0, 2, 6 s: the hub back at 1.2 s is reached at 6 s.
    assert 1.2 <= waited < 1.2 + 0.5


def test_a_hub_that_never_answers_is_given_up_after_wait_s_with_one_error(caplog):
    port = free_port()
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger=LOG.name):
        answer = asyncio.run(hubwait.wait_for_hub(
            http_get, f"http://127.0.0.1:{port}/hub/api", LOG, retry_s=0.05, wait_s=1))
    assert answer is None
    assert 1 <= time.monotonic() - started < 2
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "did not answer" in errors[0].getMessage()
    # One warning at the first failure, not one per try (20 tries here).
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


def test_the_options_reach_fetch_and_its_answer_comes_back():
    seen = []

    async def fetch(url, **options):
        seen.append((url, options))
        if len(seen) < 3:
            raise ConnectionRefusedError("not yet")
        return "answer"

    assert asyncio.run(hubwait.wait_for_hub(fetch, "http://hub:8081/hub/api", LOG,
                                            retry_s=0.01, ssl="context")) == "answer"
    assert seen == [("http://hub:8081/hub/api", {"ssl": "context"})] * 3


def stand_in(monkeypatch, **names):
    """jupyterhub.singleuser.extension as the link hook sees it (it imports jupyter_server,
    which is only in the user image), with these names in it."""
    import types

    extension = types.ModuleType("jupyterhub.singleuser.extension")

    class JupyterHubSingleUser:
        hub_http_client_opts = {}

        async def check_hub_version(self):
            raise AssertionError("the original")

    extension.JupyterHubSingleUser = JupyterHubSingleUser
    for name, value in names.items():
        setattr(extension, name, value)
    package = types.ModuleType("jupyterhub.singleuser")
    package.extension = extension
    monkeypatch.setitem(sys.modules, "jupyterhub.singleuser", package)
    monkeypatch.setitem(sys.modules, "jupyterhub.singleuser.extension", extension)
    return JupyterHubSingleUser


def test_linking_the_extension_replaces_the_singleuser_check(monkeypatch):
    """jupyter_server links every extension before it loads any: the link hook swaps the
    method the jupyterhub extension runs when it loads."""
    app = stand_in(monkeypatch, fetch=object(), _check_version=object(), __version__="6.1.1")
    assert hubwait._jupyter_server_extension_points() == [{"module": hubwait.__name__}]
    hubwait._link_jupyter_server_extension(serverapp=None)
    assert app.check_hub_version is hubwait.check_hub_version
    hubwait._load_jupyter_server_extension(serverapp=None)  # there, or the server warns


def test_a_singleuser_without_what_it_uses_keeps_its_own_check(monkeypatch, caplog):
    app = stand_in(monkeypatch, _check_version=object(), __version__="5.0.0")  # no fetch
    original = app.check_hub_version
    with caplog.at_level(logging.WARNING):
        hubwait._link_jupyter_server_extension(serverapp=None)
    assert app.check_hub_version is original
    assert "has no fetch" in caplog.text


def test_the_user_image_enables_the_extension_and_installs_it():
    config = json.loads((NOTEBOOK / "jupyterhub_deploy" / "jupyter_server_config.json").read_text())
    assert config["ServerApp"]["jpserver_extensions"]["jupyterhub_deploy_hubwait"] is True
    assert "jupyterhub_deploy/jupyterhub_deploy_hubwait.py" in (NOTEBOOK / "Dockerfile").read_text()


ENV = {
    "COMPOSE_PROJECT_NAME": "proj", "DOCKER_NETWORK_NAME": "proj-network",
    "DOCKER_NOTEBOOK_IMAGE": "img:1", "HUB_AUTHENTICATOR": "native",
    "JUPYTERHUB_ADMINS": "ann", "JUPYTERHUB_USERS": "bob",
    "USER_VOLUME_TEMPLATE": user_volume_template("proj"),
    "GITHUB_URL": None, "GITHUB_ALLOWED_ORGS": None,
}


@pytest.fixture
def config(hub_config, tmp_path):
    return hub_config({**ENV, "HUB_SECRETS_DIR": str(tmp_path), **hub_env(Limits())})


def test_the_hub_answers_after_a_second_while_it_checks_the_servers_it_recorded(config):
    assert config.JupyterHub.init_spawners_timeout == 1
    # and the servers it finds keep running through its restarts
    assert config.JupyterHub.cleanup_servers is False
