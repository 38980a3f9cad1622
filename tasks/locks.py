"""Locks on the engine: a container that is created and never started, whose name is the
lock, since the engine makes at most one container of a name. Its labels say who holds it
(what, which process on which machine, since when); one whose process is gone from this
machine is stale, and the next taker removes it and says so.

On the engine rather than in a file, so that the lock is per deployment wherever the
tasks run from: this machine, or any laptop driving a remote host.

Two kinds use it: a backup or restore holds its volume's (tasks/backup/helper.py, where
the container is also the helper that works on the volume), and every task that changes
the deployment holds the deployment's, `<project>-operation.lock` (operation()).
"""
import os
import socket
from contextlib import contextmanager
from datetime import datetime, timezone

from invoke.exceptions import Exit

from tasks.names import LABEL, ROLE_LABEL, labels
from tasks.show import shown

OPERATION_ROLE = "operation-lock"
# What the deployment's lock is made from: an image with no files at all, made on the
# engine itself the first time (no registry needed), the same for every deployment.
LOCK_IMAGE = "jupyterhub-deploy-lock:1"


def start_ticks(pid: int) -> str:
    """When a process started (clock ticks since boot), telling a live process from a new
    one that reuses its id; "" when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as file:
            return file.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def owner_labels(operation: str) -> dict:
    """The labels (without the prefix) that say who takes a lock now: this process."""
    pid = os.getpid()
    return {"operation": operation, "pid": str(pid), "host": socket.gethostname(),
            "started": start_ticks(pid),
            "since": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")}


def owner(got: dict) -> str:
    """Who holds a lock, from its labels (anyone who may make containers may set them)."""
    return shown(f"{got.get(f'{LABEL}.operation', 'an operation')} started "
                 f"{got.get(f'{LABEL}.since', '?')} by process {got.get(f'{LABEL}.pid', '?')} "
                 f"on {got.get(f'{LABEL}.host', '?')}")


def stale_reason(got: dict, host: str = "") -> str:
    """Why a lock (its labels) is stale, its process gone, or "" if it may still be held."""
    if got.get(f"{LABEL}.host") != (host or socket.gethostname()):
        return ""  # another machine's process: we cannot tell
    pid = got.get(f"{LABEL}.pid", "")
    if not pid.isdigit():
        return ""
    ticks = start_ticks(int(pid))
    if ticks and ticks == got.get(f"{LABEL}.started"):
        return ""
    return f"process {pid} that made it is no longer running"


def find(client, name: str):
    """The lock container's summary from the engine's list, or None. Listed, never
    inspected: the engine locks a container while an archive of it streams, and an
    inspect would wait for the other operation to finish."""
    return next((ct for ct in client.api.containers(all=True, filters={"name": name})
                 if f"/{name}" in ct.get("Names", [])), None)


def take(client, name: str, create, busy, what: str, on_stale=None):
    """The lock `create()` makes (the container named `name`). While another holds it,
    `busy(its labels)` is the Exit raised; a stale one goes, after `on_stale(its summary)`
    when given, with a line saying so, and making it is tried again."""
    import docker

    for _ in range(3):
        try:
            return create()
        except docker.errors.APIError as error:
            if error.status_code != 409:
                raise
        holder = find(client, name)
        if holder is None:
            continue  # released meanwhile
        got = holder.get("Labels") or {}
        reason = stale_reason(got)
        if not reason:
            raise busy(got)
        if on_stale:
            on_stale(holder)
        try:
            client.api.remove_container(holder["Id"], force=True)
        except docker.errors.NotFound:
            pass  # another taker removed it first
        print(f"removed a stale lock on {what} ({owner(got)}): the {reason}")
    raise Exit(f"Could not take the lock {name} on {what}; run this again.")


def ensure_lock_image(client) -> None:
    """The empty image the deployment's lock container is made from, imported once."""
    import io
    import tarfile

    import docker

    try:
        client.images.get(LOCK_IMAGE)
        return
    except docker.errors.ImageNotFound:
        pass
    empty = io.BytesIO()
    tarfile.open(fileobj=empty, mode="w").close()
    repository, tag = LOCK_IMAGE.split(":")
    client.api.import_image_from_data(empty.getvalue(), repository=repository, tag=tag,
                                      changes=[f"LABEL {ROLE_LABEL}=lock-image",
                                               'CMD ["never-started"]'])


def operation_lock_name(project: str) -> str:
    # "." is in no project name (settings refuse it): no other object has this name.
    return f"{project}-operation.lock"


@contextmanager
def operation(client, project: str, operation: str, where: str = ""):
    """Hold the deployment's lock while the block runs: a second task that changes the
    deployment (`operation`, as the operator typed it) is refused meanwhile, naming this
    one. `where`: the host the engine runs on, for the hint, or "" for this machine."""
    import docker

    name = operation_lock_name(project)
    ensure_lock_image(client)

    def create():
        return client.containers.create(
            LOCK_IMAGE, name=name, network_disabled=True,
            labels=labels(project, OPERATION_ROLE, **owner_labels(operation)))

    def busy(got):
        on = f" on {where}" if where else ""
        return Exit(f"Another operation on deployment {project} is running: {owner(got)}. Wait "
                    "for it to finish and run this again. If that process is gone (its machine "
                    f"restarted), remove its lock with `docker rm {name}`{on}.")

    lock = take(client, name, create, busy, f"deployment {project}")
    try:
        yield
    finally:
        try:
            lock.remove(force=True)
        except docker.errors.NotFound:
            pass
