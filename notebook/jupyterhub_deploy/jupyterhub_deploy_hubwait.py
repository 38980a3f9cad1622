"""A server that starts while its hub is down goes on the moment the hub is back.

jupyterhub-singleuser asks its hub's API before it listens at all
(`JupyterHubSingleUser.check_hub_version`, JupyterHub 6.1) and, when the hub does not answer,
asks again after 2, 4, 8 and 16 s, then exits. A server whose hub was killed or replaced
while it started (a hub killed mid-spawn, `inv up` recreating the hub) so waits for its next
try, up to 16 s after the hub is back, and the user with it: measured here, 8-15 s.

Here it asks every RETRY_S for up to WAIT_S, the time the hub gives a new server to answer
(`Spawner.http_timeout`), and then exits as before. JupyterHub has no setting for this, so
the extension replaces that one method when jupyter_server links it, which is before any
extension (jupyterhub's own included) is loaded. The hub's side of the same restart is
`init_spawners_timeout` in hub/jupyterhub_config.py.
"""
import asyncio
import logging
import time

RETRY_S = 0.5
WAIT_S = 60


def _jupyter_server_extension_points():
    return [{"module": __name__}]


async def wait_for_hub(fetch, url: str, log, retry_s: float = RETRY_S, wait_s: float = WAIT_S,
                       **fetch_options):
    """`await fetch(url, **fetch_options)` until it answers; its answer, or None once wait_s
    have passed without one. Logs the first failure and then one line every 10 s."""
    deadline = time.monotonic() + wait_s
    tries, next_log = 0, 0.0
    while True:
        tries += 1
        try:
            return await fetch(url, **fetch_options)
        except Exception as error:  # what fetch raises is aiohttp's, or an HTTP error: any
            now = time.monotonic()
            if now >= deadline:
                log.error("My Hub at %s did not answer in %d tries over %.0f s: %s",
                          url, tries, wait_s, error)
                return None
            if now >= next_log:
                log.warning("My Hub at %s does not answer yet (try %d; again every %.1f s "
                            "for up to %.0f s): %s", url, tries, retry_s, wait_s, error)
                next_log = now + 10
        await asyncio.sleep(retry_s)


async def check_hub_version(self):
    """JupyterHubSingleUser.check_hub_version, with wait_for_hub's tries."""
    from jupyterhub.singleuser import extension

    if hasattr(extension, "fetch"):
        response = await wait_for_hub(extension.fetch, self.hub_auth.api_url, self.log,
                                      **self.hub_http_client_opts)
    else:  # JupyterHub 5 (a user image of the previous line): its tornado client
        response = await wait_for_hub(self.hub_http_client.fetch, self.hub_auth.api_url,
                                      self.log)
    if response is None:
        self.exit(1)
    extension._check_version(response.headers.get("X-JupyterHub-Version"),
                             extension.__version__, self.log)


def _link_jupyter_server_extension(serverapp):
    """Replace the method, if this jupyterhub-singleuser has what check_hub_version uses (a
    user image pinned at another JupyterHub may not): otherwise keep its own, and say so."""
    from jupyterhub.singleuser import extension

    app = getattr(extension, "JupyterHubSingleUser", None)
    missing = [name for name in ("fetch", "_check_version", "__version__")
               if not hasattr(extension, name)]
    missing += [name for name in ("check_hub_version", "hub_http_client_opts")
                if not hasattr(app, name)]
    if missing:
        log = getattr(serverapp, "log", None) or logging.getLogger(__name__)
        log.warning("jupyterhub_deploy_hubwait: this jupyterhub-singleuser has no %s; it "
                    "keeps its own tries to reach the hub", ", ".join(missing))
        return
    app.check_hub_version = check_hub_version


def _load_jupyter_server_extension(serverapp):
    """Nothing to do at load: linking did it all (jupyter_server wants the function)."""
