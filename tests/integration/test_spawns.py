"""Users' servers through the hub, on the real engine: a stop followed at once by a start,
again and again under load; a hub killed while a server starts; a name that needs
escaping.

The tests share one deployment and run in file order.
"""
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import pytest
import requests

from hubclient import HubClient

pytestmark = pytest.mark.integration

USERLIST = "admin admin\nalice\na.b_c\n"


@pytest.fixture(scope="module")
def up(deployment):
    (deployment.root / "userlist").write_text(USERLIST)
    deployment.inv_ok("build", "up")
    return deployment


@pytest.fixture(scope="module")
def alice(up):
    """alice in her browser session, with a token: she starts and stops her own server."""
    hub = HubClient(up.url, up.cafile)
    assert hub.login("alice", up.password("alice")).status_code == 302
    hub.make_token("alice")
    return hub


def server_of(client, name):
    """The user's default server as the hub reports it, or None when they have none."""
    return client.user(name).get("servers", {}).get("")


def wait(what, check, deadline_s, interval=0.1):
    """check()'s first true answer within the deadline; else fail saying what was last seen."""
    end = time.monotonic() + deadline_s
    last = None
    while time.monotonic() < end:
        ok, last = check()
        if ok:
            return last
        time.sleep(interval)
    raise AssertionError(f"waited {deadline_s} s for {what}; last saw {last!r}")


def until_ready(client, name, deadline_s=120):
    def check():
        server = server_of(client, name)
        return bool(server and server.get("ready")), server
    return wait(f"{name}'s server to be ready", check, deadline_s)


@contextmanager
def cpu_load(workers=2):
    """Busy loops on every core (the machine has two), as a class of users would."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(workers)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


# --- stop, then start at once ---------------------------------------------------------------------

# Files in the container's own layer (not in work/): the engine deletes them when it removes
# the stopped container, which it does on its own (AutoRemove) while the hub moves on.
SCRATCH = "import os\nfor i in range(20000): open(f'/tmp/scratch{i}', 'w').close()\n" \
          "len(os.listdir('/tmp'))"


def test_a_stop_then_an_immediate_start_always_works_under_load(up, alice):
    repeat = 12
    alice.start_server("alice")
    outcomes = []
    with cpu_load():
        for _ in range(repeat):
            assert int(alice.run_code("alice", SCRATCH)) >= 20000
            stopped = alice.request("DELETE", "/hub/api/users/alice/server")
            if stopped.status_code == 202:  # still stopping: start as soon as it has stopped
                wait("alice's server to stop", lambda: (server_of(alice, "alice") is None, None),
                     60, interval=0.02)
            started = time.monotonic()
            response = alice.request("POST", "/hub/api/users/alice/server")
            if response.status_code in (201, 202):
                until_ready(alice, "alice")
            outcomes.append((stopped.status_code, response.status_code,
                             response.text[:300] if response.status_code >= 400 else "",
                             round(time.monotonic() - started, 1)))
            if response.status_code not in (201, 202):
                break  # her server did not start: that is the outcome to report
    print(f"stop, then start at once, {repeat} times under load: "
          f"{[o[:2] for o in outcomes]}, start to ready {[o[3] for o in outcomes]} s")
    assert [o for o in outcomes if o[1] not in (201, 202)] == []


# --- a hub killed while a server starts -----------------------------------------------------------

def test_a_hub_killed_while_a_server_starts_keeps_that_server(up, alice, docker_client):
    from tasks.names import label_filter

    alice.stop_server("alice")
    answered = []
    spawn = threading.Thread(target=lambda: answered.append(_post_ignoring_errors(
        alice, "/hub/api/users/alice/server")))
    spawn.start()

    def alice_runs():
        found = docker_client.containers.list(filters=label_filter(up.project, "user-server",
                                                                   user="alice"))
        return bool(found), found
    [container] = wait("alice's container to run", alice_runs, 60, interval=0.05)
    # Her server takes over a second to listen: the hub is still in start() when killed.
    up.hub_container(docker_client).kill()
    killed = time.monotonic()
    spawn.join(timeout=60)
    up.inv_ok("up")
    back = time.monotonic()
    # The server itself retries the hub it could not reach after 2, 6, 14 and 30 s (then
    # gives up): it is ready at its first try after the hub is back, whatever the hub does.
    # (Waiting for it at an address it never recorded, the hub used to give up, and throw it
    # away, after http_timeout.)
    until_ready(alice, "alice", deadline_s=30)
    print(f"a hub killed mid-spawn: back {back - killed:.1f} s after the kill, alice's "
          f"server ready {time.monotonic() - back:.1f} s after that")
    container.reload()
    assert container.status == "running"  # the same container: kept, not thrown away
    assert alice.request("GET", "/user/alice/api/status").status_code == 200


def _post_ignoring_errors(client, path):
    try:
        return client.request("POST", path).status_code
    except requests.RequestException as error:  # the hub died under the request
        return repr(error)


# --- a name that needs escaping -------------------------------------------------------------------

def test_a_name_that_needs_escaping_gets_its_server_volume_and_logs(up, docker_client):
    name, escaped = "a.b_c", "a-2eb-5fc"
    person = HubClient(up.url, up.cafile)
    assert person.login(name, up.password(name)).status_code == 302
    person.make_token(name)
    assert person.start_server(name)["ready"]
    assert person.run_code(name, "'%s' % __import__('os').environ['JUPYTERHUB_USER']") == \
        f"'{name}'"
    container = docker_client.containers.get(f"{up.project}-user-{escaped}")
    assert container.labels["org.jupyterhub-deploy.user"] == name
    mounts = {m["Name"]: m["Destination"] for m in container.attrs["Mounts"] if m.get("Name")}
    assert mounts == {f"{up.project}-user-{escaped}": "/home/jovyan/work"}
    logs = up.inv_ok("logs", "--user", name, "--tail", "5")
    assert f"/user/{name}/" in logs.output, logs.output  # the server's own log lines
