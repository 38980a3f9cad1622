"""Restoring a volume from an archive: plan, act, re-check. Everything is checked before
anything changes (the file and its checksum, what is running, the whole archive); then the
archive is read again into the volume's work folder through its helper container, and the
helper's one run of swap.py puts it in place."""
import hashlib
import time
from pathlib import Path

from invoke.exceptions import Exit

from tasks.backup import helper, streams
from tasks.backup.archive import RESTORE_DIR, ArchiveError, Limits
from tasks.backup.reading import ArchiveReader, Summary, commit_stream, staged_stream
from tasks.backup.store import Progress, parse_sidecar, shown_path
from tasks.backup.targets import Deployment, Target, running_hub
from tasks.names import label_filter, labels
from tasks.show import shown
from tasks.target import command_line


def resolve_archive(folder: Path, text: str) -> tuple:
    """(archive, expected sha256): the file as given, else in the backup folder; its
    checksum file beside it. Read only: a restore writes nothing outside the volume."""
    given = Path(text).expanduser()
    candidates = [given] if given.is_absolute() else [Path.cwd() / given, folder / given]
    path = next((p for p in candidates if p.exists()), None)
    if path is None:
        raise Exit(f"No backup {shown(text)}: not there, nor in {shown_path(folder)}. "
                   "`inv backup --list` shows what there is.")
    if not path.is_file():
        raise Exit(f"{shown(text)} is not a file: pass an archive `inv backup` wrote.")
    sidecar = path.with_name(path.name + ".sha256")
    try:
        expected = parse_sidecar(sidecar.read_text(encoding="utf-8", errors="replace"))
    except FileNotFoundError:
        raise Exit(f"{shown(path.name)} has no checksum file {shown(sidecar.name)} beside it: "
                   "copy it from "
                   "where the archive came from (the two belong together).")
    except ArchiveError as error:
        raise Exit(f"Refused {shown(path.name)}: {error}.")
    return path, expected


def running_servers(dep: Deployment, user: str) -> list:
    return dep.client.containers.list(
        filters={**label_filter(dep.project, "user-server", user=user), "status": "running"})


def servers_mounting(dep: Deployment, volume: str) -> list:
    """The running user servers that have a volume mounted (a group's folder)."""
    return dep.client.containers.list(filters={
        **label_filter(dep.project, "user-server"), "volume": volume, "status": "running"})


def _refuse_running(dep: Deployment, target: Target, force: bool) -> bool:
    """Refuse while what uses the volume runs; with --force a user's server may run (the
    hub never: it would write its old database over the restored one). True if running."""
    if target.kind == "hub":
        hub = running_hub(dep)
        if hub is not None:
            raise Exit(f"The hub ({shown(hub.name)}) is running and holds its database open: "
                       f"stop it with `{command_line(dep.c, 'down')}`, restore, then "
                       f"`{command_line(dep.c, 'up')}`.")
        return False
    if target.kind == "share":
        servers = servers_mounting(dep, target.volume)
        if servers and not force:
            raise Exit(f"{len(servers)} server{'s' if len(servers) > 1 else ''} "
                       f"({', '.join(shown(s.name) for s in servers[:3])}) ha"
                       f"{'ve' if len(servers) > 1 else 's'} {target.what} mounted: stop "
                       f"them, or pass --force to restore under them.")
        return bool(servers)
    servers = running_servers(dep, target.user)
    if servers and not force:
        raise Exit(f"{target.user}'s server ({shown(servers[0].name)}) is running and uses the "
                   f"volume: stop it (the hub's admin page, or `{command_line(dep.c, 'down')}`), "
                   "or pass --force to "
                   "restore under it.")
    return bool(servers)


def _close(*things) -> None:
    """Close what a read of an archive file opened (None for what it did not get to)."""
    for thing in things:
        if thing is not None:
            thing.close()


def _read_file(path: Path, progress: Progress):
    """(chunks, digest, file): the archive read ahead by a thread that also hashes it,
    gunzipped if need be."""
    digest = hashlib.sha256()

    def seen(chunk):
        digest.update(chunk)
        progress.add(len(chunk))

    raw = open(path, "rb", buffering=0)
    return streams.open_chunks(streams.Prefetch(streams.file_chunks(raw), seen)), digest, raw


def verify(path: Path, expected: str, limits: Limits) -> Summary:
    """Read the whole archive and check it: checksum, structure, every entry against the
    manifest. Raises Exit naming the problem; nothing has been touched yet."""
    name = shown(path.name)
    progress = Progress(f"checking {name}", path.stat().st_size)
    stream = raw = None
    try:
        stream, digest, raw = _read_file(path, progress)
        reader = ArchiveReader(stream, limits)
        for _ in reader.entries():
            pass
    except ArchiveError as error:
        fix = error.fix or ("it is damaged, or was not made by `inv backup`: restore another "
                            "backup (`inv backup --list` shows them)")
        raise Exit(f"Refused {name}: {error}. Nothing was changed; {fix}.")
    except OSError as error:
        raise Exit(f"Refused {name}: it cannot be read ({error}). Nothing was changed.")
    finally:
        _close(progress, stream, raw)
    if digest.hexdigest() != expected:
        raise Exit(f"Refused {name}: its sha256 is {digest.hexdigest()}, but "
                   f"{name}.sha256 says {expected}: the file changed or is damaged. "
                   "Nothing was changed; copy it again from where it came from, or restore "
                   "another backup (`inv backup --list` shows them).")
    return reader.summary


def check_kind(meta: dict, target: Target, path: Path) -> None:
    name, user = shown(path.name), shown(meta["user"])  # the user as the archive names it
    group = shown(meta.get("group"))
    if meta["kind"] != target.kind:
        other = {"hub": "--hub", "share": f"--share {group}"}.get(meta["kind"], f"--user {user}")
        of = {"hub": "the hub", "share": "a shared folder"}.get(meta["kind"], "a user")
        raise Exit(f"{name} is a backup of {of}: restore it with {other}.")
    if target.kind == "share" and meta["group"] != target.group:
        raise Exit(f"{name} is the shared folder of {group}, not of {target.group}: restore it "
                   f"with --share {group}.")
    if target.kind == "user" and meta["user"] != target.user:
        raise Exit(f"{name} is {user}'s backup, not {target.user}'s: restore it "
                   f"with --user {user}.")


def stage(lock, path: Path, expected: str, limits: Limits) -> None:
    """Put the archive into the volume's work folder, from a second read of the file that
    must hash the same as the checked one."""
    root = helper.engine_stat(lock, helper.MOUNT) or {}
    before_ns = helper.parse_engine_time(root.get("mtime", ""))
    progress = Progress(f"restoring {shown(path.name)}", path.stat().st_size)
    stream = raw = None
    try:
        stream, digest, raw = _read_file(path, progress)
        reader = ArchiveReader(stream, limits, verify=False)
        staged = staged_stream(reader, int(time.time()), before_ns)
        lock.put_archive(helper.MOUNT, streams.coalesce(staged))
    finally:
        _close(progress, stream, raw)
    if digest.hexdigest() != expected:
        raise ArchiveError(f"{shown(path.name)} changed while it was being restored")


def restore_volume(dep: Deployment, target: Target, path: Path, expected: str, force: bool,
                   limits: Limits) -> Summary:
    """Plan, act, re-check: refuse on what is running, check the whole archive, and only
    then make the volume if need be, take its lock, and stage, re-check and swap."""
    import docker

    running = _refuse_running(dep, target, force)
    summary = verify(path, expected, limits)
    created = False
    try:
        dep.client.volumes.get(target.volume)
    except docker.errors.NotFound:
        role = {"user": ("user-volume", {"user": target.user}),
                "share": ("share", {"group": target.group})}.get(target.kind, ("hub-data", {}))
        dep.client.volumes.create(target.volume, labels=labels(dep.project, role[0], **role[1]))
        created = True
    done = False
    lock = None
    try:
        lock = helper.acquire(dep, target, "restore")
        if helper.settle(lock, target) == "not ours":
            raise Exit(f"The volume {target.volume} holds a folder {RESTORE_DIR} that no "
                       "restore made, and a restore works in it: rename it (from the user's "
                       "server, or a container mounting the volume) and run this again.")
        present = helper.top_level_names(lock)
        if present and not force:
            listed = ", ".join(f"'{shown(name)}'" for name in present)
            raise Exit(f"The volume {target.volume} already holds files ({listed}...): pass "
                       "--force to replace all of its contents with the archive's.")
        try:
            stage(lock, path, expected, limits)
        except (ArchiveError, docker.errors.APIError) as error:
            helper.run_swap(lock)  # no commit marker: removes the staged copy
            said = error if isinstance(error, ArchiveError) else shown(error)  # the engine's
            raise Exit(f"Restore of {target.what} stopped before changing anything: {said}")
        if not running:
            try:
                _refuse_running(dep, target, force)
            except Exit:
                helper.run_swap(lock)
                raise
        lock.put_archive(helper.MOUNT, commit_stream(int(time.time())))
        verdict = helper.run_swap(lock)
        if verdict != "finished":
            raise Exit(f"The restore step ended with {verdict!r} instead of finishing.")
        done = True
        return summary
    finally:
        if lock is not None:
            helper.release(lock)
        if created and not done:
            try:
                dep.client.volumes.get(target.volume).remove()
            except docker.errors.APIError:
                pass
