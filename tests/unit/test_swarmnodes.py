"""tasks/swarmnodes.py: the swarm's nodes as the tasks read them from the manager's API.
Against a real swarm: tests/remote/test_swarm.py."""
import pytest
from invoke.exceptions import Exit

from tasks.swarmnodes import SSH_LABEL, Swarm, home_prefix, parse_node


def attrs(name, role="worker", state="ready", availability="active", labels=None):
    return {"ID": f"{name}-0123456789abcdef", "Description": {"Hostname": name},
            "Status": {"State": state},
            "Spec": {"Role": role, "Availability": availability, "Labels": labels or {}}}


def test_a_node_lists_this_projects_homes_by_user_name_and_its_ssh_host():
    node = parse_node(attrs("w1", labels={
        SSH_LABEL: "admin@w1", home_prefix("jhx") + "bob": "bob",
        home_prefix("jhx") + "deploy-2echeck": "deploy.check",
        home_prefix("other") + "carol": "carol"}), "jhx")
    assert (node.name, node.role, node.ssh) == ("w1", "worker", "admin@w1")
    assert node.homes == ("bob", "deploy.check")
    assert node.usable


@pytest.mark.parametrize("state, availability", [("down", "active"), ("ready", "drain"),
                                                 ("ready", "pause"), ("unknown", "active")])
def test_a_node_that_is_down_or_drained_is_not_usable(state, availability):
    assert not parse_node(attrs("w1", state=state, availability=availability), "jhx").usable


def test_a_node_without_a_hostname_goes_by_its_id():
    raw = attrs("w1")
    raw["Description"] = {}
    assert parse_node(raw, "jhx").name == "w1-012345678"


def swarm():
    return Swarm(tuple(parse_node(a, "jhx") for a in (
        attrs("m", role="manager"), attrs("w1", labels={SSH_LABEL: "admin@host-one",
                                                        home_prefix("jhx") + "alice": "alice"}),
        attrs("w2", labels={SSH_LABEL: "admin@host-two"}))))


def test_workers_and_homes():
    s = swarm()
    assert [n.name for n in s.workers] == ["w1", "w2"]
    assert s.home_of("alice").name == "w1"
    assert s.home_of("bob") is None


@pytest.mark.parametrize("given", ["w2", "admin@host-two", "w2-0123456789abcdef"])
def test_a_node_is_found_by_hostname_ssh_host_or_id(given):
    assert swarm().node(given).name == "w2"


def test_an_unknown_node_is_refused_naming_the_nodes():
    with pytest.raises(Exit, match=r"no node 'w9' in the swarm; its nodes: m, w1, w2"):
        swarm().node("w9")


@pytest.mark.parametrize("given, hosts", [
    ("admin@worker1,admin@worker2", ["admin@worker1", "admin@worker2"]),
    (" jhworker1 , root@10.0.0.5:2222,", ["jhworker1", "root@10.0.0.5:2222"]),
    ("admin@[fd00::5]:22", ["admin@[fd00::5]:22"])])
def test_swarm_join_takes_ssh_hosts_comma_separated(given, hosts):
    from tasks.swarm import worker_hosts

    assert worker_hosts(given) == hosts


@pytest.mark.parametrize("given", ["w1;rm -rf /", "w1 w2", "$(id)", "-oProxyCommand=x", "a@b@c"])
def test_swarm_join_refuses_what_is_not_an_ssh_host_before_connecting(given):
    from tasks.swarm import worker_hosts

    with pytest.raises(Exit, match="is not an SSH host: give \\[user@\\]host\\[:port\\]"):
        worker_hosts(given)


def test_swarm_join_without_hosts_says_how():
    from tasks.swarm import worker_hosts

    with pytest.raises(Exit, match="Name the workers to join"):
        worker_hosts(" , ")


@pytest.mark.parametrize("user", ["alice", "deploy.check", "o'brien-ü"])
def test_the_tasks_and_the_hub_spell_a_users_home_label_alike(user):
    import sys
    from pathlib import Path

    from tasks.names import escape_username
    from tasks.swarmnodes import home_key

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "hub"))
    import hubswarm

    assert home_key("jhx", user) == hubswarm.home_key("jhx", escape_username(user))


def test_node_labels_are_added_and_removed_against_the_nodes_version():
    from tasks.swarmnodes import update_node_labels

    class API:
        updated = None

        def inspect_node(self, node_id):
            return {"Version": {"Index": 9},
                    "Spec": {"Role": "worker", "Labels": {"keep": "1", "gone": "x"}}}

        def update_node(self, node_id, version, spec):
            self.updated = (node_id, version, spec)

    client = type("Client", (), {"api": API()})()
    update_node_labels(client, "n1", add={"new": "alice"}, remove=["gone"])
    assert client.api.updated == ("n1", 9, {"Role": "worker",
                                             "Labels": {"keep": "1", "new": "alice"}})
