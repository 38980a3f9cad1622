"""`inv upgrade` on the real engine, from JupyterHub 5.5.4 (the previous major line) to the
versions the tree pins (6.x, whose database schema differs).

The deployment starts at 5.5.4 with users, a group, a token, a running server with a kernel
that holds state and a file in the user's volume. Four upgrades then fail, one at each step
(the build, the database upgrade, the new hub's start, the check of the new hub), each by a
real fault in the images the tree builds; after each, the 5.5.4 hub must serve the same
users, token, group, server, kernel and file, with its database at 5.5.4's schema. Last, the
upgrade that succeeds: all of that is still there under 6.x, the database at the new schema,
and the running server kept running through it.

The tests share one deployment and run in file order.
"""
import re
import shutil
from pathlib import Path

import pytest

from deployment_support import REPO
from hubclient import HubClient

pytestmark = pytest.mark.integration

OLD = "5.5.4"
NEW = re.search(r"^jupyterhub==(\S+)", (REPO / "hub" / "requirements.txt").read_text(), re.M)[1]
USERLIST = "admin admin\nalice\nbob group=lab\n"
PROFILES = ('[[profiles]]\nname = "python"\ndescription = "Python"\ndefault = true\n\n'
            '[[shares]]\ngroup = "lab"\n')
NOTE = "written before the upgrade\n"
# JupyterHub 5.5.4's last migration, and the one the tree's JupyterHub writes.
OLD_SCHEMA = "4621fec11365"


def pin_jupyterhub(root, version):
    for part in ("hub", "notebook"):
        path = root / part / "requirements.txt"
        path.write_text(re.sub(r"(?m)^jupyterhub==\S+", f"jupyterhub=={version}", path.read_text()))


def tree_as_shipped(root):
    """hub/ and notebook/ as the project has them: the pins in the tree, no injected fault."""
    for part in ("hub", "notebook"):
        shutil.rmtree(root / part)
        shutil.copytree(REPO / part, root / part, ignore=shutil.ignore_patterns("__pycache__"))


def append(path, text):
    path.write_text(path.read_text() + text)


class Before:
    """What the 5.5.4 hub holds, to be found again after each upgrade."""


@pytest.fixture(scope="module")
def old(deployment, docker_client):
    d = deployment
    (d.root / "userlist").write_text(USERLIST)
    (d.root / "profiles.toml").write_text(PROFILES)
    pin_jupyterhub(d.root, OLD)
    d.inv_ok("build", "up")
    s = Before()
    s.alice = HubClient(d.url, d.cafile)
    assert s.alice.login("alice", d.password("alice")).status_code == 302
    s.token = s.alice.make_token("alice")
    s.admin = HubClient(d.url, d.cafile)
    assert s.admin.login("admin", d.password("admin")).status_code == 302
    s.admin.make_token("admin")
    s.alice.start_server("alice")
    s.alice.put_file("alice", "note.txt", NOTE)
    s.kernel = s.alice.start_kernel("alice")
    assert s.alice.execute("alice", s.kernel, "state = 41; state") == "41"
    s.server = server_container(d, docker_client, "alice")
    s.hub_image = d.hub_container(docker_client).attrs["Image"]
    return s


def server_container(d, client, user):
    found = [ct for ct in d.labelled(client, "containers")
             if ct.labels.get("org.jupyterhub-deploy.role") == "user-server"
             and ct.labels.get("org.jupyterhub-deploy.user") == user]
    assert len(found) == 1, f"{user}'s server containers: {[ct.name for ct in found]}"
    return found[0]


def schema(d, client):
    """The hub database's alembic revision, read from a copy of its file in the hub's volume."""
    hub = d.hub_container(client)
    code, out = hub.exec_run(["python3", "-c", "import sqlite3; print(sqlite3.connect("
                              "'file:/data/jupyterhub.sqlite?mode=ro', uri=True).execute("
                              "'select version_num from alembic_version').fetchone()[0])"])
    assert code == 0, out
    return out.decode().strip()


def check_user_containers(d, client):
    return [ct.name for ct in d.labelled(client, "containers")
            if ct.labels.get("org.jupyterhub-deploy.user") == "deploy.check"]


def assert_serves_as_before(d, client, s, version, hub_image=None):
    """The hub answers as `version` and holds what it held: alice's token, her running
    server (the same container), the kernel's state, her file, bob in group lab."""
    api = s.admin.request("GET", "/hub/api").json()
    assert api["version"] == version, f"the hub answers as {api['version']}, not {version}"
    me = HubClient(d.url, d.cafile)
    me.token = s.token
    assert me.request("GET", "/hub/api/user").json()["name"] == "alice", "alice's token"
    ct = server_container(d, client, "alice")
    assert (ct.id, ct.status) == (s.server.id, "running"), "alice's server kept running"
    assert me.execute("alice", s.kernel, "state + 1") == "42", "the kernel kept its state"
    assert me.get_file("alice", "note.txt") == NOTE, "alice's file"
    group = s.admin.request("GET", "/hub/api/groups/lab").json()
    assert group.get("users") == ["bob"], f"group lab: {group}"
    assert check_user_containers(d, client) == [], "no server of the check user is left"
    if hub_image:
        assert d.hub_container(client).attrs["Image"] == hub_image, "the previous hub image"


def rolled_back(d, client, s, step):
    """`inv upgrade` fails at `step`, says so, restores the database from its archive, and
    the 5.5.4 hub serves as before, its database at 5.5.4's schema."""
    result = d.inv("upgrade")
    assert result.returncode == 1, f"inv upgrade exited {result.returncode}:\n{result.output[-4000:]}"
    said = f"The upgrade failed at `{step}`"
    assert said in result.output, f"no {said!r} in:\n{result.output[-4000:]}"
    assert "its database restored from" in result.output, result.output[-4000:]
    assert_serves_as_before(d, client, s, OLD, s.hub_image)
    assert schema(d, client) == OLD_SCHEMA


def test_the_plan_names_the_versions_and_the_schema_change_and_changes_nothing(
        old, deployment, docker_client):
    d = deployment
    tree_as_shipped(d.root)
    hub_before = d.hub_container(docker_client).id
    result = d.inv_ok("upgrade", "--plan")
    assert f"JupyterHub {OLD} -> {NEW}" in result.stdout, result.stdout
    assert f"database: schema {OLD_SCHEMA}" in result.stdout, result.stdout
    assert "user servers: 1 running (alice)" in result.stdout, result.stdout
    assert d.hub_container(docker_client).id == hub_before


def test_a_build_that_fails_leaves_the_hub_running_untouched(old, deployment, docker_client):
    d = deployment
    tree_as_shipped(d.root)
    append(d.root / "hub" / "requirements.txt", "jupyterhub-idle-culler-nonexistent==9.9.9\n")
    started = d.hub_container(docker_client).attrs["State"]["StartedAt"]
    result = d.inv("upgrade")
    assert result.returncode == 1, result.output[-4000:]
    assert "The upgrade stopped at the build" in result.output, result.output[-4000:]
    assert d.hub_container(docker_client).attrs["State"]["StartedAt"] == started, \
        "the hub was never stopped"
    assert_serves_as_before(d, docker_client, old, OLD, old.hub_image)
    assert schema(d, docker_client) == OLD_SCHEMA


def test_a_database_upgrade_that_fails_is_rolled_back(old, deployment, docker_client):
    d = deployment
    tree_as_shipped(d.root)
    # The new image's upgrade-db migrates the database, then fails: the rollback must put
    # back the database the backup holds, not only the images.
    append(d.root / "hub" / "Dockerfile",
           "RUN mv /opt/hub/bin/jupyterhub /opt/hub/bin/jupyterhub-real \\\n"
           " && printf '#!/bin/sh\\nif [ \"$1\" = upgrade-db ]; then /opt/hub/bin/jupyterhub-real "
           "\"$@\"; echo injected failure >&2; exit 3; fi\\nexec /opt/hub/bin/jupyterhub-real "
           "\"$@\"\\n' > /opt/hub/bin/jupyterhub && chmod 755 /opt/hub/bin/jupyterhub\n")
    rolled_back(d, docker_client, old, "upgrade the database")


def test_a_new_hub_that_does_not_start_is_rolled_back(old, deployment, docker_client):
    d = deployment
    tree_as_shipped(d.root)
    append(d.root / "hub" / "jupyterhub_config.py",
           "\nraise SystemExit('a config error the test put here')\n")
    rolled_back(d, docker_client, old, "start the new hub")


def test_a_new_hub_whose_servers_cannot_start_is_rolled_back(old, deployment, docker_client):
    d = deployment
    tree_as_shipped(d.root)
    append(d.root / "notebook" / "Dockerfile",
           "USER root\nRUN rm /opt/notebook/bin/jupyterhub-singleuser\nUSER 1000\n")
    rolled_back(d, docker_client, old, "check the new hub")


def test_the_upgrade_keeps_users_tokens_groups_files_and_running_servers(
        old, deployment, docker_client):
    d = deployment
    tree_as_shipped(d.root)
    result = d.inv_ok("upgrade")
    assert f"JupyterHub {OLD} -> {NEW}" in result.stdout
    assert "database upgraded: schema" in result.stdout, result.stdout
    assert_serves_as_before(d, docker_client, old, NEW)
    assert d.hub_container(docker_client).attrs["Image"] != old.hub_image
    now = schema(d, docker_client)
    assert now != OLD_SCHEMA
    # The backup it took is an ordinary archive of the hub's volume, at 5.5.4's schema.
    archive = re.search(r"the hub's data before the upgrade: (\S+)", result.stdout)[1]
    assert Path(archive).is_file(), f"the backup it names: {archive}"
    # A second run finds nothing to do.
    again = d.inv_ok("upgrade")
    assert "nothing to upgrade" in again.stdout, again.stdout
    # alice's next start gets the new user image, and her work.
    old.alice.stop_server("alice")
    old.alice.start_server("alice")
    ct = server_container(d, docker_client, "alice")
    assert ct.attrs["Image"] == docker_client.images.get(d.image("notebook")).id
    assert old.alice.get_file("alice", "note.txt") == NOTE
    assert old.alice.run_code("alice", "import jupyterhub; jupyterhub.__version__") == repr(NEW)
