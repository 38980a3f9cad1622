"""hub/hubspawner.py: start() waits for the server's port (against real sockets) and for
the last container of the name to be gone; get_url() answers from the container."""
import asyncio
import socket
import sys
import time
from pathlib import Path

import pytest

HUB_DIR = Path(__file__).resolve().parents[2] / "hub"
# hubspawner.py is copied next to jupyterhub_config.py in the image, not installed.
sys.path.insert(0, str(HUB_DIR))

from hubspawner import ReadyDockerSpawner, port_open  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spawner(**traits):
    return ReadyDockerSpawner(user=type("User", (), {"name": "alice"})(), **traits)


async def listen_later(port: int, delay: float):
    await asyncio.sleep(delay)
    return await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)


def test_port_open_tells_a_listener_from_a_closed_port():
    async def check():
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            assert await port_open("127.0.0.1", port)
        finally:
            server.close()
            await server.wait_closed()
        assert not await port_open("127.0.0.1", port)

    asyncio.run(check())


def test_wait_for_port_returns_soon_after_the_server_listens():
    port = free_port()

    async def check():
        s = spawner(http_timeout=10, ready_poll_interval=0.02)
        listening = asyncio.create_task(listen_later(port, 0.3))
        started = time.monotonic()
        await s.wait_for_port("127.0.0.1", port)
        waited = time.monotonic() - started
        (await listening).close()
        return waited

    waited = asyncio.run(check())
    assert 0.3 <= waited < 0.3 + 0.5


def test_wait_for_port_gives_up_after_http_timeout_with_a_message():
    port = free_port()
    s = spawner(http_timeout=1, ready_poll_interval=0.02)  # whole seconds: an Integer trait
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=rf"did not listen on 127\.0\.0\.1:{port} within 1 s"):
        asyncio.run(s.wait_for_port("127.0.0.1", port))
    assert 1 <= time.monotonic() - started < 3


def test_start_waits_for_the_port_dockerspawner_returned(monkeypatch):
    port = free_port()
    calls = []

    async def docker_start(self):
        calls.append("start")
        return "127.0.0.1", port

    monkeypatch.setattr("dockerspawner.DockerSpawner.start", docker_start)

    async def check():
        listening = asyncio.create_task(listen_later(port, 0.2))
        s = spawner(http_timeout=10, ready_poll_interval=0.02)
        s.docker = Engine([None]).docker  # no container of the name
        result = await s.start()
        (await listening).close()
        return result

    assert asyncio.run(check()) == ("127.0.0.1", port)
    assert calls == ["start"]


class Engine:
    """What the engine answers to inspecting the server's container, one state per look
    (None: no such container), and what it was asked."""

    def __init__(self, states):
        self.states, self.asked = list(states), []

    async def docker(self, method, *args, **kwargs):
        from docker.errors import NotFound

        self.asked.append((method, args, kwargs))
        if method == "remove_container":
            return None
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        if state is None:
            raise NotFound("no such container")
        return {"State": {"Status": state, "Running": state == "running"}}


def removals(engine):
    return [(args, kwargs) for method, args, kwargs in engine.asked if method == "remove_container"]


def test_a_start_waits_while_the_engine_removes_the_last_container():
    s = spawner()
    engine = Engine(["removing", "removing", "removing", None])
    s.docker = engine.docker
    asyncio.run(s.wait_until_name_free())
    assert [m for m, _, _ in engine.asked] == ["inspect_container"] * 4
    assert removals(engine) == []


@pytest.mark.parametrize("state", ["exited", "created", "dead", "running"])
def test_a_container_left_with_the_name_is_removed_once_before_the_start(state):
    s = spawner()
    engine = Engine([state, "removing", None])
    s.docker = engine.docker
    asyncio.run(s.wait_until_name_free())
    assert removals(engine) == [((s.container_name,), {"force": True, "v": True})]


def test_a_name_that_never_frees_fails_the_start_in_time_saying_what_it_saw():
    s = spawner(name_free_timeout=1)
    s.docker = Engine(["removing"]).docker
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"is still there \(removing\) after 1 s"):
        asyncio.run(s.wait_until_name_free())
    assert 1 <= time.monotonic() - started < 3


def test_get_url_is_where_the_container_serves_once_it_listens():
    port = free_port()
    s = spawner(http_timeout=10, ready_poll_interval=0.02)

    async def ip_and_port():
        return "127.0.0.1", port

    s.get_ip_and_port = ip_and_port
    s.server = type("Server", (), {"base_url": "/user/alice/"})()

    async def check():
        listening = asyncio.create_task(listen_later(port, 0.3))
        started = time.monotonic()
        url = await s.get_url()
        waited = time.monotonic() - started
        (await listening).close()
        return url, waited

    url, waited = asyncio.run(check())
    assert url == f"http://127.0.0.1:{port}/user/alice/" and waited >= 0.3


def test_get_url_of_a_server_that_never_listens_still_answers_for_the_hubs_check():
    port = free_port()
    s = spawner(http_timeout=1, ready_poll_interval=0.02)

    async def ip_and_port():
        return "127.0.0.1", port

    s.get_ip_and_port = ip_and_port
    s.server = type("Server", (), {"base_url": "/user/alice/"})()
    assert asyncio.run(s.get_url()) == f"http://127.0.0.1:{port}/user/alice/"
