"""DockerSpawner whose start() returns once the user's server listens.

After Spawner.start(), JupyterHub polls the new server over HTTP with an exponential
backoff whose waits are drawn at random and grow to 5 s (jupyterhub.utils, not
configurable). A server that is ready 2 s after its container starts is seen up to
seconds later, and that wait is most of the difference between a spawn through the hub
and the same container started by hand (bench/, P1). Here start() itself watches the
server's port every `ready_poll_interval` seconds, a TCP connect that costs next to
nothing, so JupyterHub's first HTTP check already finds the server answering.
"""
import asyncio
import time

from dockerspawner import DockerSpawner
from traitlets import Float


async def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections on host:port now."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    return True


class ReadyDockerSpawner(DockerSpawner):
    ready_poll_interval = Float(
        0.05, config=True,
        help="Seconds between checks that a starting server listens on its port.",
    )

    async def start(self):
        ip, port = await super().start()
        await self.wait_for_port(ip, port)
        return ip, port

    async def wait_for_port(self, ip: str, port: int) -> None:
        """Return when the server listens; fail as JupyterHub would after http_timeout, or
        at once when the container is gone (a server killed at start, by its memory limit
        say, would otherwise keep the user waiting for the whole timeout)."""
        deadline = time.monotonic() + self.http_timeout
        next_look = time.monotonic() + 1
        while not await port_open(ip, port):
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{self._log_name} did not listen on {ip}:{port} within "
                    f"{self.http_timeout} s; see `inv logs --user {self.user.name}`."
                )
            if time.monotonic() >= next_look:
                next_look = time.monotonic() + 1
                gone = await self.container_gone()
                if gone:
                    raise RuntimeError(f"{self._log_name} stopped before it listened ({gone}); "
                                       "too little memory (USER_MEM_LIMIT) can do that.")
            await asyncio.sleep(self.ready_poll_interval)

    async def container_gone(self) -> str:
        """Why the server's container no longer runs, or "" while it does."""
        from docker.errors import NotFound

        try:
            state = (await self.docker("inspect_container", self.container_id))["State"]
        except NotFound:
            return "its container was removed"
        if state.get("Running"):
            return ""
        return (f"exit code {state.get('ExitCode')}"
                + (", killed for lack of memory" if state.get("OOMKilled") else ""))
