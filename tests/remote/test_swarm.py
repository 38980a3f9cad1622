"""A real Docker swarm of three hosts (sshd and their own dockerd each, on one Docker
network), made and used by the tool over SSH: `swarm-init` on the manager, `swarm-join` of
two workers (one a bare Debian server, which gets Docker first), `deploy`. User servers then run as services on the workers, each user always
on the node that holds their volume; backup and restore reach that node; `swarm-drain` stops
the servers of a node and names whose files stay there; and a worker that stops leaves the
users on the other worker working.

The tests run in file order and build on each other. Users: admin's and bob's first servers
go to jhworker1 and alice's to jhworker2 (the emptiest worker, then by name).
"""
import json
import re
import time

import pytest
import requests

from conftest_support import copy_project_for_remote
from hubclient import HubClient

pytestmark = pytest.mark.remote

HEAVY = re.compile(r"(numpy|scipy|pandas|matplotlib)==")
USERS = ("admin", "alice", "bob")


@pytest.fixture(scope="module")
def manager(swarm_hosts):
    return swarm_hosts[0]


@pytest.fixture(scope="module")
def workers(swarm_hosts):
    return {host.alias: host for host in swarm_hosts[1:]}


@pytest.fixture(scope="module")
def d(manager, tmp_path_factory):
    """A copy of the project deployed with `-H jhmanager`, with three users; the user image
    without its scientific packages (every node gets it; what is tested is the swarm)."""
    d = copy_project_for_remote(tmp_path_factory.mktemp("swarm-deployment"), manager)
    (d.root / "userlist").write_text("admin admin\nalice\nbob\n")
    requirements = d.root / "notebook" / "requirements.txt"
    requirements.write_text("".join(line for line in requirements.read_text().splitlines(True)
                                    if not HEAVY.match(line)))
    yield d
    d.inv("down")


@pytest.fixture(scope="module")
def hub(d):
    return {}  # user -> a logged-in HubClient, filled by the deploy test


def client_of(d, hub, user):
    if user not in hub:
        client = HubClient(d.url, d.cafile)
        assert client.login(user, d.password(user)).status_code == 302
        client.make_token(user)
        hub[user] = client
    return hub[user]


def node_of(manager, d, user) -> str:
    """The node the user's server's running task is on, as the manager says."""
    result = manager.docker("service", "ps", "--filter", "desired-state=running", "--format",
                            "{{.Node}}", f"{d.project}-user-{user}")
    return result.stdout.strip()


def test_swarm_init_and_join_make_a_swarm_of_three(d, manager):
    out = d.inv_ok("swarm-init").output
    assert "swarm: this engine is now a swarm manager" in out, out
    out = d.inv_ok("swarm-join", "jhworker1,jhworker2", timeout=900).output
    assert "swarm: jhworker1 joined as a worker" in out, out
    # jhworker2 is a bare server: it gets Docker first, its SSH user the docker group.
    assert "setup on jhworker2: installing docker.io" in out, out
    assert "setup on jhworker2: adding admin to the docker group" in out, out
    assert "swarm: jhworker2 joined as a worker" in out, out
    nodes = manager.docker("node", "ls", "--format", "{{.Hostname}} {{.Status}}").stdout.split("\n")
    assert sorted(filter(None, nodes)) == ["jhmanager Ready", "jhworker1 Ready", "jhworker2 Ready"]
    again = d.inv_ok("swarm-join", "jhworker2").output
    assert "swarm: jhworker2 is a node of this swarm already" in again, again


def test_deploy_runs_each_users_server_on_a_worker(d, manager, workers, hub):
    result = d.inv_ok("deploy", timeout=1800)
    print(f"deploy on the swarm: {result.seconds:.1f} s")
    out = result.output
    assert re.search(r"images on node jhworker1: sent .*-notebook:latest", out), out[-3000:]
    assert re.search(r"images on node jhworker2: sent .*-notebook:latest", out), out[-3000:]
    for user in USERS:
        client_of(d, hub, user).start_server(user)
        assert client_of(d, hub, user).run_code(user, "6*7") == "42"
    assert [node_of(manager, d, u) for u in USERS] == ["jhworker1", "jhworker2", "jhworker1"]
    # The containers are on the workers' engines, none on the manager's.
    assert manager.docker("ps", "-q", "--filter", "label=org.jupyterhub-deploy.role=user-server").stdout == ""
    names = workers["jhworker2"].docker("ps", "--format", "{{.Labels}}").stdout
    assert "org.jupyterhub-deploy.user=alice" in names
    status = d.inv_ok("status").output
    assert re.search(r"node jhworker1: worker, ready, active \(ssh jhworker1\); files of 2 user", status), status
    assert re.search(r"alice .*  on jhworker2", status), status


def test_a_server_on_a_worker_has_the_limits_of_a_single_host(d, workers, hub):
    """.env's defaults (2G, 1 CPU, 512 processes), no capabilities, no privilege raising."""
    worker = workers["jhworker2"]  # alice's
    found = worker.docker("ps", "-q", "--filter", "label=org.jupyterhub-deploy.user=alice").stdout.split()
    assert len(found) == 1, found
    config = json.loads(worker.docker("inspect", found[0]).stdout)[0]["HostConfig"]
    assert (config["Memory"], config["NanoCpus"], config["PidsLimit"]) == (2 * 2**30, 10**9, 512)
    assert config["CapDrop"] == ["ALL"] and not config["CapAdd"] and config["Privileged"] is False
    # Services have no security_opt: setpriv sets no_new_privs, inherited by the kernel.
    status = client_of(d, hub, "alice").run_code("alice", (
        "[l.split()[1] for l in open('/proc/self/status') if l.startswith(('NoNewPrivs', 'CapEff'))]"))
    assert status == "['0000000000000000', '1']"


def test_a_users_next_server_starts_on_the_node_that_holds_their_volume(d, manager, hub):
    alice = client_of(d, hub, "alice")
    alice.put_file("alice", "notes.txt", "written on a worker")
    alice.stop_server("alice")
    alice.start_server("alice")
    assert node_of(manager, d, "alice") == "jhworker2"
    assert alice.get_file("alice", "notes.txt") == "written on a worker"


def test_a_hub_restart_keeps_the_servers_and_where_each_user_lives(d, manager, hub):
    alice = client_of(d, hub, "alice")
    kernel = alice.start_kernel("alice")
    assert alice.execute("alice", kernel, "state = 41; state") == "41"
    assert manager.docker("restart", f"{d.project}-hub-1").returncode == 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{d.url}/hub/api", verify=d.cafile, timeout=5).status_code == 200:
                break
        except requests.RequestException:
            pass
        time.sleep(0.5)
    # The same server and kernel, found again by the restarted hub; then the same node.
    assert alice.execute("alice", kernel, "state + 1") == "42"
    alice.stop_server("alice")
    alice.start_server("alice")
    assert node_of(manager, d, "alice") == "jhworker2"


def test_backup_and_restore_of_a_user_on_a_worker_round_trip(d, manager, hub):
    bob = client_of(d, hub, "bob")
    bob.put_file("bob", "thesis.txt", "chapter one")
    out = d.inv_ok("backup", "--user", "bob").output
    archive = re.search(r"path: +backups/(\S+-user-bob-\S+\.tar)", out).group(1)
    bob.put_file("bob", "thesis.txt", "overwritten by mistake")
    bob.stop_server("bob")
    # Restored on the other worker, which becomes bob's home: his next server starts there.
    out = d.inv_ok("restore", "--user", "bob", "--from", archive, "--node", "jhworker2").output
    assert "bob's server now starts on jhworker2 (it was jhworker1" in out, out
    bob.start_server("bob")
    assert node_of(manager, d, "bob") == "jhworker2"
    assert bob.get_file("bob", "thesis.txt") == "chapter one"


def test_backup_all_reaches_every_users_volume_on_its_node(d):
    out = d.inv_ok("backup", "--all").output
    for user in USERS:
        assert f"backup of user {user} (volume {d.project}-user-{user})" in out, out


def test_swarm_drain_stops_the_nodes_servers_and_names_whose_files_stay(d, manager, hub):
    out = d.inv_ok("swarm-drain", "jhworker2").output
    assert "swarm: node jhworker2 drained; servers stopped: alice, bob" in out, out
    assert "These users' files stay on jhworker2" in out and "alice, bob" in out, out
    response = client_of(d, hub, "alice").request("POST", "/hub/api/users/alice/server")
    assert response.status_code >= 400 or _start_fails(client_of(d, hub, "alice"), "alice")
    assert manager.docker("node", "update", "--availability", "active", "jhworker2").returncode == 0
    for user in ("alice", "bob"):
        client_of(d, hub, user).start_server(user)
        assert node_of(manager, d, user) == "jhworker2"


def _start_fails(client, user, deadline_s=45) -> bool:
    """Whether the spawn the hub accepted ends in failure (no server) within the deadline."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        state = client.user(user)
        if not state.get("server") and not (state.get("pending")):
            return True
        time.sleep(0.5)
    return False


def test_a_stopped_worker_leaves_the_users_on_the_other_worker_working(d, manager, workers, hub):
    workers["jhworker1"].container.stop(timeout=5)  # admin's node: dockerd goes with it
    alice = client_of(d, hub, "alice")
    assert alice.run_code("alice", "6*7") == "42"
    bob = client_of(d, hub, "bob")
    bob.stop_server("bob")
    bob.start_server("bob")
    assert bob.run_code("bob", "6*7") == "42"
    assert requests.get(f"{d.url}/hub/api", verify=d.cafile, timeout=10).status_code == 200
    # admin's files are on the stopped node: the start fails at once, saying so.
    admin = client_of(d, hub, "admin")
    admin.stop_server("admin")
    started = time.monotonic()
    admin.request("POST", "/hub/api/users/admin/server")
    assert _start_fails(admin, "admin"), "admin's start should fail: his node is down"
    print(f"a start on a stopped node failed in {time.monotonic() - started:.1f} s")
    log = d.inv("logs").output
    # Said one of two ways: the node already marked down, or not yet (it did not take the task).
    assert re.search(r"admin's files are on node jhworker1, which (is down|did not take the server)",
                     log), log[-3000:]
