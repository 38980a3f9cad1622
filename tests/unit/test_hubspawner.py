"""hub/hubspawner.py: start() waits for the server's port, against real sockets."""
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
        result = await spawner(http_timeout=10, ready_poll_interval=0.02).start()
        (await listening).close()
        return result

    assert asyncio.run(check()) == ("127.0.0.1", port)
    assert calls == ["start"]
