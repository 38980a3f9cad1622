"""`inv upgrade`'s check of a new hub: it says the version it should, its login page answers,
and a server starts for CHECK_USER, answers through the proxy and stops."""
import json
import time

from invoke.exceptions import Exit

from tasks.names import label_filter
from tasks.upgradeplan import CHECK_USER


def check_hub(c, ready, endpoint, want: str, deadline_s: float = 120) -> None:
    """The new hub works: it says it is `want`, its login page answers, and a server starts
    for CHECK_USER, answers through the proxy with the tool's token, and stops."""
    from tasks.access import HubAPI, ensure_api_token

    sha = ready.cert.sha256
    token = ensure_api_token(ready.root / "secrets")
    status, body = raw_get(endpoint, sha, "/hub/api", "")
    version = json.loads(body).get("version") if status == 200 else None
    if version != want:
        raise Exit(f"the hub answers as JupyterHub {version} (HTTP {status}), not {want}")
    status, _ = raw_get(endpoint, sha, "/hub/login", "")
    if status != 200:
        raise Exit(f"the login page answered HTTP {status}")
    api = HubAPI(endpoint, sha, token)
    user = f"users/{CHECK_USER}"
    api.expect("POST", user, ok=(201, 409))
    try:
        api.expect("POST", f"{user}/server", ok=(201, 202))
        server = wait_server(api, user, lambda s: s and s.get("ready"), "to be ready", deadline_s)
        status, _ = raw_get(endpoint, sha, f"/user/{CHECK_USER}/api", token)
        if status != 200:
            raise Exit(f"{CHECK_USER}'s server answered HTTP {status} through the proxy "
                       f"(at {server.get('url')})")
        api.expect("DELETE", f"{user}/server", ok=(202, 204))
        wait_server(api, user, lambda s: s is None, "to stop", deadline_s)
    finally:
        api.call("DELETE", user)


def wait_server(api, user: str, done, what: str, deadline_s: float):
    end = time.monotonic() + deadline_s
    last = None
    while True:
        _, answer = api.expect("GET", user)
        last = (answer or {}).get("servers", {}).get("")
        if done(last):
            return last
        if time.monotonic() >= end:
            raise Exit(f"{CHECK_USER}'s server did not come {what} within {deadline_s:.0f} s; "
                       f"last seen: {last}")
        time.sleep(0.5)


def raw_get(endpoint, cert_sha256: str, path: str, token: str) -> tuple:
    """(status, body) of one GET through the proxy, pinned to the hub's certificate."""
    from tasks.probe import pinned_connection

    conn = pinned_connection(endpoint, cert_sha256, timeout=30)
    try:
        conn.request("GET", path, headers={"Authorization": f"token {token}"} if token else {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def remove_check_volume(client, project: str) -> None:
    for volume in client.volumes.list(filters=label_filter(project, "user-volume", user=CHECK_USER)):
        try:
            volume.remove(force=True)
        except Exception:  # noqa: BLE001  (in use a moment longer: the next upgrade removes it)
            pass
