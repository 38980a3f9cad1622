"""tasks.locks: a lock is a container's name; its labels say who holds it, and one whose
process is gone from this machine is stale."""
import os
import socket
from unittest.mock import Mock

import docker.errors
import pytest
from invoke.exceptions import Exit

from tasks import locks


def labels(pid, host=None, started=None):
    return {"org.jupyterhub-deploy.pid": str(pid), "org.jupyterhub-deploy.host":
            host or socket.gethostname(), "org.jupyterhub-deploy.started":
            locks.start_ticks(pid) if started is None else started,
            "org.jupyterhub-deploy.operation": "`inv up`",
            "org.jupyterhub-deploy.since": "2026-12-01 10:00:00 UTC"}


def test_a_lock_held_by_a_live_process_is_not_stale():
    assert locks.stale_reason(labels(os.getpid())) == ""


def test_a_lock_whose_process_is_gone_or_reused_is_stale():
    assert "no longer running" in locks.stale_reason(labels(2 ** 22 + 12345, started="1"))
    # Same pid, another start time: the id was reused by a new process.
    assert "no longer running" in locks.stale_reason(labels(os.getpid(), started="1"))


def test_a_lock_from_another_machine_is_never_taken_as_stale():
    assert locks.stale_reason(labels(2 ** 22 + 12345, host="elsewhere", started="1")) == ""


def test_the_owner_is_said_from_the_labels_escaped():
    got = {**labels(42, host="lap\x1b]0;top"), "org.jupyterhub-deploy.pid": "42"}
    assert locks.owner(got) == ("`inv up` started 2026-12-01 10:00:00 UTC by process 42 on "
                                "lap\\x1b]0;top")


class Engine:
    """Containers by name, as the engine keeps them: a second of one name is a 409."""

    def __init__(self, held=None):
        self.held = {} if held is None else held
        self.api = self

    def create(self, name, got):
        if name in self.held:
            raise docker.errors.APIError("Conflict", response=Mock(status_code=409))
        self.held[name] = got
        return name

    def containers(self, all, filters):
        name = filters["name"]
        return [{"Id": f"id-{name}", "Names": [f"/{name}"], "Labels": self.held[name],
                 "State": "created"}] if name in self.held else []

    def remove_container(self, container_id, force):
        self.held.pop(container_id[len("id-"):])


def take(engine, name="p-operation.lock"):
    return locks.take(engine, name, lambda: engine.create(name, labels(os.getpid())),
                      lambda got: Exit(f"busy: {locks.owner(got)}"), "deployment p")


def test_a_free_lock_is_made():
    engine = Engine()
    assert take(engine) == "p-operation.lock" and "p-operation.lock" in engine.held


def test_a_held_lock_refuses_naming_its_holder():
    engine = Engine({"p-operation.lock": labels(os.getpid())})
    with pytest.raises(Exit, match=rf"busy: `inv up` started .* by process {os.getpid()} on "):
        take(engine)


def test_a_stale_lock_is_removed_with_a_line_and_taken(capsys):
    engine = Engine({"p-operation.lock": labels(2 ** 22 + 12345, started="1")})
    assert take(engine) == "p-operation.lock"
    assert engine.held["p-operation.lock"]["org.jupyterhub-deploy.pid"] == str(os.getpid())
    assert capsys.readouterr().out == (
        "removed a stale lock on deployment p (`inv up` started 2026-12-01 10:00:00 UTC by "
        f"process {2 ** 22 + 12345} on {socket.gethostname()}): the process "
        f"{2 ** 22 + 12345} that made it is no longer running\n")


def test_the_deployments_lock_name_is_no_other_objects():
    # "." is in no project name (settings refuse it) nor in any name the tool makes else.
    assert locks.operation_lock_name("proj") == "proj-operation.lock"
