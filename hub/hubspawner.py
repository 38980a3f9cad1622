"""DockerSpawner whose start() returns once the user's server listens, starts cleanly
right after a stop, and tells a restarted hub where a server it was starting runs.

After Spawner.start(), JupyterHub polls the new server over HTTP with an exponential
backoff whose waits are drawn at random and grow to 5 s (jupyterhub.utils, not
configurable). A server that is ready 2 s after its container starts is seen up to
seconds later, and that wait is most of the difference between a spawn through the hub
and the same container started by hand (bench/, P1). Here start() itself watches the
server's port every `ready_poll_interval` seconds, a TCP connect that costs next to
nothing, so JupyterHub's first HTTP check already finds the server answering.

A stop returns while the engine may still be removing the container (it was made with
AutoRemove); a start at once would then make one of the same name and fail with "409
Conflict ... is already in use". start() first waits until no container has the name.

A hub killed while a server started has recorded it as running, but not yet where: back
up, it would wait `http_timeout` at a made-up address, then throw the healthy server away.
get_url() answers from the container, so the hub finds it at once and keeps it.
"""
import asyncio
import time

from dockerspawner import DockerSpawner
from traitlets import Float, Integer


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

    name_free_timeout = Integer(
        30, config=True,
        help="Seconds a start waits for the engine to remove the last container of the name.",
    )

    async def start(self):
        await self.wait_until_name_free()
        ip, port = await super().start()
        await self.wait_for_port(ip, port)
        return ip, port

    async def get_url(self):
        """Where the server runs, from its container: asked by a restarted hub of a server
        it recorded as running, whose address it may not have recorded yet. Returns once the
        server listens (it may still be retrying to reach the hub that was down), so that
        the hub's own check, which backs off up to 5 s between tries, finds it at once."""
        ip, port = await self.get_ip_and_port()
        try:
            await self.wait_for_port(ip, port)
        except (TimeoutError, RuntimeError) as error:  # the hub's check will say it is not up
            self.log.warning("%s", error)  # raising here would stop the hub's start instead
        return f"{'https' if self.internal_ssl else 'http'}://{ip}:{port}{self.server.base_url}"

    async def wait_until_name_free(self) -> None:
        """Return once no container has this server's name: one the engine is still
        removing (a stop just before) is waited for, any other (stopped, or one the hub
        no longer knows) is removed, as DockerSpawner would (`remove`) but by force."""
        from docker.errors import APIError, NotFound

        deadline = time.monotonic() + self.name_free_timeout
        removed = False
        while True:
            try:
                state = (await self.docker("inspect_container", self.container_name))["State"]
            except NotFound:
                return
            if state.get("Status") != "removing" and not removed:
                self.log.info("Removing the earlier container %s (%s) before a new start",
                              self.container_name, state.get("Status"))
                try:
                    await self.docker("remove_container", self.container_name, force=True, v=True)
                except APIError as error:
                    if error.status_code not in (404, 409):  # gone, or already being removed
                        raise
                removed = True
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"the earlier container {self.container_name} of {self._log_name} is still "
                    f"there ({state.get('Status')}) after {self.name_free_timeout} s; see "
                    "`docker ps -a`.")
            await asyncio.sleep(0.1)

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
