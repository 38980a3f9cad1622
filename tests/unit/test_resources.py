"""tasks/resources.py ensure_network: a bridge network on one host, an overlay one on a
swarm, and the move from one to the other only while nothing uses the network. Against the
real engine: tests/integration (bridge) and tests/remote/test_swarm.py (overlay)."""
import docker
import pytest
from invoke.exceptions import Exit

from tasks.resources import ensure_network


class Network:
    def __init__(self, driver, containers=None):
        self.attrs = {"Driver": driver, "Containers": containers or {}}
        self.removed = False

    def remove(self):
        self.removed = True


class Networks:
    def __init__(self, existing=None):
        self.existing, self.created = existing, []

    def get(self, name):
        if self.existing is None:
            raise docker.errors.NotFound("no such network")
        return self.existing

    def create(self, name, **kwargs):
        self.created.append((name, kwargs))


class Client:
    def __init__(self, existing=None):
        self.networks = Networks(existing)


def test_a_single_host_gets_a_bridge_network():
    client = Client()
    assert ensure_network(client, "p-network", {"l": "1"}) == "network p-network: created"
    assert client.networks.created == [("p-network", {"driver": "bridge", "labels": {"l": "1"},
                                                      "check_duplicate": True})]


def test_a_swarm_gets_an_attachable_overlay_network():
    client = Client()
    ensure_network(client, "p-network", {}, swarm=True)
    [(_, kwargs)] = client.networks.created
    assert (kwargs["driver"], kwargs["attachable"], kwargs["scope"]) == ("overlay", True, "swarm")


@pytest.mark.parametrize("driver, swarm", [("bridge", False), ("overlay", True)])
def test_a_network_of_the_right_kind_is_kept(driver, swarm):
    client = Client(Network(driver))
    assert ensure_network(client, "p-network", {}, swarm=swarm) == "network p-network: exists"
    assert client.networks.created == []


def test_an_unused_bridge_network_is_replaced_on_a_swarm():
    old = Network("bridge")
    client = Client(old)
    said = ensure_network(client, "p-network", {}, swarm=True)
    assert said == "network p-network: replaced by an overlay network"
    assert old.removed and client.networks.created[0][1]["driver"] == "overlay"


def test_a_bridge_network_in_use_stops_the_run_before_anything_changes():
    old = Network("bridge", containers={"abc": {"Name": "p-hub-1"}})
    client = Client(old)
    with pytest.raises(Exit, match=r"containers use it: stop the deployment with `down` "
                                   r"\(volumes and everyone's work stay\)"):
        ensure_network(client, "p-network", {}, swarm=True)
    assert not old.removed and client.networks.created == []
