"""hub/hubswarm.py: where a user's server is placed on a swarm, what a task's state means,
and the service's limits; the spawner itself runs against a real swarm in
tests/remote/test_swarm.py."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "hub"))

from hubswarm import (NoHome, PinnedSwarmSpawner, choose_home, home_key,  # noqa: E402
                      service_resources, task_verdict)

KEY = home_key("jhx", "alice")


def node(name, role="worker", state="ready", availability="active", labels=None):
    return {"ID": f"id-{name}", "Description": {"Hostname": name},
            "Status": {"State": state},
            "Spec": {"Role": role, "Availability": availability, "Labels": labels or {}}}


def test_the_home_label_names_the_project_and_the_user():
    assert KEY == "org.jupyterhub-deploy.home.jhx.alice"


def test_a_user_with_a_home_stays_on_it_even_when_another_worker_is_emptier():
    busy = node("w1", labels={KEY: "alice", home_key("jhx", "bob"): "bob"})
    chosen, new = choose_home([node("m", role="manager"), busy, node("w2")], KEY, "jhx")
    assert (chosen["ID"], new) == ("id-w1", False)


def test_a_home_on_a_down_node_is_still_the_home():
    down = node("w1", state="down", labels={KEY: "alice"})
    assert choose_home([down, node("w2")], KEY, "jhx") == (down, False)


def test_a_new_user_goes_to_the_usable_worker_with_fewest_of_this_projects_users():
    w1 = node("w1", labels={home_key("jhx", "bob"): "bob"})
    # Another deployment's users on w2 do not count against it.
    w2 = node("w2", labels={home_key("other", "x"): "x", home_key("other", "y"): "y"})
    chosen, new = choose_home([node("m", role="manager"), w1, w2], KEY, "jhx")
    assert (chosen["ID"], new) == ("id-w2", True)


def test_ties_go_by_node_name():
    assert choose_home([node("w2"), node("w1")], KEY, "jhx")[0]["ID"] == "id-w1"


@pytest.mark.parametrize("unusable", [node("w1", state="down"), node("w1", availability="drain"),
                                      node("w1", availability="pause"), node("m", role="manager")])
def test_no_usable_worker_is_refused_naming_swarm_join(unusable):
    with pytest.raises(NoHome, match="no worker node is ready and active.*swarm-join"):
        choose_home([unusable], KEY, "jhx")


@pytest.mark.parametrize("state, verdict", [
    ("running", "running"), ("pending", "starting"), ("preparing", "starting"),
    ("assigned", "starting"), ("rejected", "rejected: no such image"),
    ("failed", "failed: no such image"), ("shutdown", "shutdown: no such image")])
def test_task_verdicts(state, verdict):
    assert task_verdict({"Status": {"State": state, "Err": "no such image"}}) == verdict


def test_a_task_that_ended_without_a_reason_says_so():
    assert task_verdict({"Status": {"State": "complete"}}) == "complete: no reason given"


def test_service_resources_carry_memory_cpu_and_processes():
    resources = service_resources(512 * 2**20, 0.5, 64)
    assert resources["Limits"] == {"MemoryBytes": 512 * 2**20, "NanoCPUs": 500_000_000, "Pids": 64}


def test_no_limits_give_no_limits():
    assert "Limits" not in service_resources(0, 0, 0)


def test_volumes_are_volume_mounts_with_the_deployments_labels():
    spawner = PinnedSwarmSpawner(user=type("User", (), {"name": "alice"})(),
                                 volumes={"jhx-user-{username}": "/home/jovyan/work"})
    spawner.volume_labels = {"org.jupyterhub-deploy.role": "user-volume"}
    [mount] = spawner.mounts
    assert (mount["Type"], mount["Source"], mount["Target"]) == (
        "volume", "jhx-user-alice", "/home/jovyan/work")
    assert mount["VolumeOptions"]["Labels"] == {"org.jupyterhub-deploy.role": "user-volume"}


def spawner_seeing(*states, **traits):
    """A spawner whose service's task goes through `states` (then stays at the last)."""
    spawner = PinnedSwarmSpawner(user=type("User", (), {"name": "alice"})(),
                                 ready_poll_interval=0, **traits)
    seen = list(states)

    async def get_task():
        state = seen.pop(0) if len(seen) > 1 else seen[0]
        return {"Status": {"State": state, "Err": "node is down" if state == "rejected" else ""}}
    spawner.get_task = get_task
    return spawner


def run(coroutine):
    import asyncio

    return asyncio.run(coroutine)


def test_start_returns_once_the_task_runs():
    assert run(spawner_seeing("pending", "assigned", "preparing", "running").start_object()) is None


def test_a_rejected_task_fails_the_start_at_once_with_the_engines_reason():
    with pytest.raises(RuntimeError, match="did not start: rejected: node is down"):
        run(spawner_seeing("assigned", "rejected", pending_timeout=60).start_object())


def test_a_task_no_node_takes_fails_after_the_pending_timeout():
    spawner = spawner_seeing("assigned", pending_timeout=0)
    spawner.home_name = "w1"
    with pytest.raises(RuntimeError, match=r"alice's files are on node w1, which did not take the "
                                           r"server within 0 s \(the task is assigned"):
        run(spawner.start_object())


def test_a_task_its_node_took_is_waited_for_past_the_pending_timeout():
    states = ["preparing"] * 5 + ["running"]
    assert run(spawner_seeing(*states, pending_timeout=0).start_object()) is None


@pytest.mark.parametrize("state, polled", [("running", None), ("pending", "starting"),
                                           ("shutdown", "shutdown: no reason given")])
def test_poll_counts_only_a_running_task_as_a_running_server(state, polled):
    assert run(spawner_seeing(state).poll()) == polled


def spawner_on(nodes, conflicts=0):
    """A spawner whose engine lists `nodes` and takes node updates after `conflicts` refusals."""
    from docker.errors import APIError

    spawner = PinnedSwarmSpawner(user=type("User", (), {"name": "alice"})(), project="jhx")
    updates = []

    async def docker(method, *args):
        if method == "nodes":
            return nodes
        assert method == "update_node"
        if len(updates) < conflicts:
            updates.append(None)
            raise APIError("rpc error: code = Unknown desc = update out of sequence")
        updates.append(args)
        return None
    spawner.docker = docker
    return spawner, updates


def with_version(node_attrs):
    return {**node_attrs, "Version": {"Index": 7}}


def test_a_first_start_labels_the_chosen_worker_with_the_users_name():
    spawner, updates = spawner_on([with_version(node("m", role="manager")),
                                   with_version(node("w1"))], conflicts=2)
    chosen = run(spawner.home_node())
    assert chosen["ID"] == "id-w1"
    node_id, version, spec = updates[-1]
    assert (node_id, version, spec["Labels"]) == ("id-w1", 7, {KEY: "alice"})


def test_a_home_on_a_drained_node_refuses_the_start_naming_it():
    spawner, updates = spawner_on([with_version(node("w1", availability="drain",
                                                     labels={KEY: "alice"})), with_version(node("w2"))])
    with pytest.raises(NoHome, match=r"alice's files are on node w1, which is ready and drain"):
        run(spawner.home_node())
    assert updates == []
