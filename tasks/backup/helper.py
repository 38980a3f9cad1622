"""The helper container a backup or restore works through: one per volume, named
`<volume>.lock`, made from the hub's image, mounting the volume.

It is created and never started while archives stream through the Docker archive API
(`get_archive`, `put_archive`), so nothing runs tar in a container; only a restore starts
it, once, to run swap.py. Its name is the lock (tasks/locks.py): a second operation on the
volume cannot create it and is refused; one left by a killed process is found stale (same
host, process gone) and removed.
"""
import json
import re
from datetime import datetime
from pathlib import Path

from invoke.exceptions import Exit

from tasks import locks
from tasks.backup import streams
from tasks.backup.archive import RESERVED, RESTORE_DIR
from tasks.backup.tarstream import TarReader
from tasks.backup.targets import Deployment, Target
from tasks.backup.survey import Findings
from tasks.names import labels
from tasks.show import shown

# Where helpers mount the volume: a path no image has, so Docker never copies image
# content into an empty volume (and the mount says nocopy as well).
MOUNT = "/.jupyterhub-deploy-volume"
MOUNT_ROOT = MOUNT.rsplit("/", 1)[1]
LOCK_ROLE = "volume-lock"
SURVEY_ROLE = "volume-survey"
READER_ROLE = "volume-reader"
# Containers made from an image `docker compose build` made inherit its compose labels;
# blank them so compose never takes a helper for one of its own containers.
_NOT_COMPOSE = {"com.docker.compose.project": "", "com.docker.compose.service": ""}


def program_command(name: str, *args: str) -> list:
    """The command that runs one of this package's standalone programs (swap.py,
    snapshot.py) in a container, which has none of this project's code: its source is the
    command, `python3 -I -c SOURCE ARGS...`."""
    source = Path(__file__).with_name(name).read_text(encoding="utf-8")
    return ["python3", "-I", "-c", source, *args]


# --- streams from and to the engine --------------------------------------------------------------

def volume_stream(container, path: str, on_chunk=None):
    """The engine's tar of `path` in the container, as `streams.Chunks`; close() drops
    the connection. Read in this thread: the engine sends 32 KiB pieces, and a thread
    reading ahead cost more (the GIL) than it saved, measured on two cores."""
    chunks, _ = container.get_archive(path, chunk_size=streams.CHUNK)
    if on_chunk:
        chunks = _watched(chunks, on_chunk)
    return streams.Chunks(chunks)


def _watched(chunks, on_chunk):
    try:
        for chunk in chunks:
            on_chunk(chunk)
            yield chunk
    finally:
        chunks.close()


def engine_stat(container, path: str):
    """The engine's stat of a path in the container, or None."""
    import docker

    try:
        chunks, info = container.get_archive(path)
    except docker.errors.NotFound:
        return None
    chunks.close()
    return info or {}


def top_level_names(container, limit: int = 3) -> list:
    """Up to `limit` names at the volume's root, ours left out: reads headers only."""
    stream = volume_stream(container, MOUNT)
    try:
        tar = TarReader(stream)
        names = []
        while len(names) < limit:
            header = tar.next()
            if header is None:
                break
            name = header.name.rstrip("/")
            if name.startswith(MOUNT_ROOT + "/"):
                rest = name[len(MOUNT_ROOT) + 1:]
                if "/" not in rest and rest not in RESERVED:
                    names.append(rest)
        return names
    finally:
        stream.close()


def parse_engine_time(text: str):
    """Nanoseconds since the epoch from the engine's RFC 3339 time
    ("2026-11-26T09:22:47.04580277Z", or with an offset), or None."""
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)",
                         text or "")
    if not match:
        return None
    base, fraction, zone = match.groups()
    seconds = datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone)).timestamp()
    return int(seconds) * 10**9 + int((fraction or "0").ljust(9, "0"))


# --- the lock -------------------------------------------------------------------------------

def lock_name(volume: str) -> str:
    # "." never occurs in a project or an escaped user name, so this names no other object.
    return f"{volume}.lock"


def acquire(dep: Deployment, target: Target, operation: str):
    """Create the volume's helper container, which is the lock; refuse if it exists."""
    from docker.types import Mount

    name = lock_name(target.volume)

    def create():
        extra = {"volume": target.volume, **locks.owner_labels(operation)}
        return dep.client.containers.create(
            dep.image, name=name,
            command=program_command("swap.py", MOUNT),
            mounts=[Mount(MOUNT, target.volume, type="volume", no_copy=True)],
            labels={**_NOT_COMPOSE, **labels(dep.project, LOCK_ROLE, **extra)},
            network_disabled=True, user="0:0", read_only=True, working_dir="/",
            cap_drop=["ALL"], cap_add=["CHOWN", "DAC_OVERRIDE", "FOWNER"],
            security_opt=["no-new-privileges"],
        )

    def busy(got):
        return Exit(
            f"Another backup or restore of {target.what} (volume {target.volume}) is "
            f"running: {locks.owner(got)}. Wait for it to finish and run this again. "
            f"If that process is gone (its machine restarted), remove its lock with "
            f"`docker rm {name}`.")

    def finish_swap(holder):
        if holder.get("State") == "running":
            print(f"waiting for the swap a stopped restore of {target.volume} started...")
            dep.client.api.wait(holder["Id"])

    return locks.take(dep.client, name, create, busy, target.volume, on_stale=finish_swap)


def _side_container(dep: Deployment, target: Target, suffix: str, role: str, extra_mounts=(),
                    **options):
    """A container of the volume besides its lock, named `<volume>.<suffix>`. The caller
    holds the volume's lock, so one of that name is what a killed run left: it goes."""
    import docker
    from docker.types import Mount

    name = f"{target.volume}.{suffix}"
    for _ in range(2):
        try:
            return dep.client.containers.create(
                dep.image, name=name,
                mounts=[Mount(MOUNT, target.volume, type="volume", read_only=True,
                              no_copy=True), *extra_mounts],
                labels={**_NOT_COMPOSE, **labels(dep.project, role, volume=target.volume)},
                network_disabled=True, user="0:0", read_only=True, working_dir="/",
                security_opt=["no-new-privileges"], **options)
        except docker.errors.APIError as error:
            if error.status_code != 409:
                raise
            dep.client.api.remove_container(name, force=True)
    raise Exit(f"Could not make the container {name}; run this again.")


def shadowed_reader(dep: Deployment, target: Target, paths):
    """A container to stream the volume from in which /dev/null covers each of `paths`
    (the sparse files): the engine sends each as a character device, with no data,
    instead of its holes as zeros. Never started; the caller removes it. The paths go
    through the API's JSON, so each must be UTF-8 (the caller checks)."""
    from docker.types import Mount

    covers = [Mount(f"{MOUNT}/{path}", "/dev/null", type="bind", read_only=True)
              for path in paths]
    return _side_container(dep, target, "read", READER_ROLE, covers,
                           command=["true"], cap_drop=["ALL"])


def survey(dep: Deployment, target: Target) -> Findings:
    """Run survey.py over the volume in a short-lived container: the volume mounted
    read-only, no network, no capability but DAC_READ_SEARCH."""
    container = _side_container(dep, target, "survey", SURVEY_ROLE,
                                command=program_command("survey.py", MOUNT),
                                cap_drop=["ALL"], cap_add=["DAC_READ_SEARCH"])
    try:
        container.start()
        status = container.wait()
        output = container.logs(stdout=True, stderr=False).decode("ascii", "replace")
        errors = container.logs(stdout=False, stderr=True).decode(errors="replace")
    finally:
        container.remove(force=True)
    try:
        if status.get("StatusCode") == 0:
            return Findings.parse(output)
    except (ValueError, KeyError, TypeError):
        pass
    lines = (errors or output).strip().splitlines()[-20:]
    raise Exit(f"Looking at {target.volume} before its backup failed (exit "
               f"{status.get('StatusCode')}):\n" + "\n".join(shown(line) for line in lines))


def release(lock) -> None:
    import docker

    try:
        lock.reload()
        if lock.status == "running":  # a swap: it finishes on its own; the next run waits
            print(f"the swap in {lock.name} goes on; the next backup or restore waits for it")
            return
        lock.remove(force=True)
    except docker.errors.NotFound:
        pass


def run_swap(lock) -> str:
    """Start the helper (swap.py on the volume) and wait for its verdict."""
    lock.start()
    status = lock.wait()
    lines = lock.logs(stdout=True, stderr=True).decode(errors="replace").strip().splitlines()
    try:
        verdict = json.loads(lines[-1])["result"]
    except (IndexError, ValueError, KeyError, TypeError):
        verdict = ""
    if status.get("StatusCode") == 3:
        return "not ours"
    if status.get("StatusCode") != 0 or not verdict:
        raise Exit(f"The restore step in {lock.name} failed (exit {status.get('StatusCode')}):\n"
                   + "\n".join(shown(line) for line in lines[-20:]))
    return verdict


def settle(lock, target: Target) -> str:
    """Finish or undo a restore of this volume that was interrupted; returns the swap's
    verdict ("clean" when there was nothing to do)."""
    if engine_stat(lock, f"{MOUNT}/{RESTORE_DIR}") is None:
        return "clean"
    verdict = run_swap(lock)
    if verdict == "not ours":
        print(f"warning: {target.volume} holds a {RESTORE_DIR} that no restore made; "
              "backups leave it out, and a restore refuses the volume until it is renamed")
    elif verdict == "finished":
        print(f"finished the interrupted restore of {target.what} (volume {target.volume})")
    elif verdict == "undone":
        print(f"undid an interrupted restore of {target.what} (volume {target.volume}): "
              "it had not started replacing anything")
    elif verdict == "cleaned":
        print(f"removed what an interrupted restore of {target.what} left behind")
    return verdict
