"""Backup and restore of users' volumes and the hub's data: `inv backup`, `inv restore`.

Everything moves through the Docker archive API on the volume's helper container
(tasks/volume_helper.py), which is also the lock: the engine streams the volume's tar to
us, we check and hash it entry by entry and write our archive (tasks/archive.py) straight
to a file; a restore checks the whole archive, then streams it back the same way and swaps
it into place. Nothing runs tar in a container, no archive is held in memory, and nothing
but the engine's API is needed.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from invoke import task
from invoke.exceptions import Exit

from tasks import applied
from tasks.lazy import lazy_module
from tasks.names import USER_LABEL, label_filter, labels, user_volume
from tasks.target import applied_record, docker_client, project_dir
from tasks.userlist import check_name

# Loaded when a backup or restore runs, not when `inv --list` reads this module.
fmt = lazy_module("tasks.archive")
streams = lazy_module("tasks.streams")
vh = lazy_module("tasks.volume_helper")

DEFAULTS = {"dir": "backups", "compress": False, "max_size": "100G"}
HUB_DB = "jupyterhub.sqlite"  # hub/jupyterhub_config.py: sqlite:////data/jupyterhub.sqlite
HUB_DB_SIDE_FILES = tuple(HUB_DB + suffix for suffix in ("-journal", "-wal", "-shm"))

# Run in the running hub's container: SQLite's online backup gives a consistent copy even
# while the hub writes; the copy lands in the data volume, where the backup reads it.
SNAPSHOT_SCRIPT = """
import json, os, sqlite3, stat, sys
database, folder = sys.argv[1], sys.argv[2]
if not os.path.isfile(database):
    print(json.dumps({"result": "none"}))
    sys.exit(0)
os.makedirs(folder, mode=0o700, exist_ok=True)
for name in os.listdir(folder):
    os.unlink(os.path.join(folder, name))
copy = os.path.join(folder, os.path.basename(database))
source = sqlite3.connect(database, timeout=60)
target = sqlite3.connect(copy)
source.backup(target)
check = target.execute("PRAGMA quick_check").fetchone()[0]
target.close()
source.close()
info = os.stat(database)
os.chown(copy, info.st_uid, info.st_gid)
os.chmod(copy, stat.S_IMODE(info.st_mode))
print(json.dumps({"result": "copied", "check": check, "bytes": os.path.getsize(copy)}))
"""
DROP_SNAPSHOT_SCRIPT = "import shutil, sys; shutil.rmtree(sys.argv[1], ignore_errors=True)"


@dataclass
class Written:
    path: Path
    size: int
    sha256: str
    entries: int
    bytes: int
    notes: dict = field(default_factory=dict)


# --- inputs ---------------------------------------------------------------------------------

def _config(c, key: str):
    section = c.config.get("backup") or {}
    return section.get(key, DEFAULTS[key])


def backup_folder(c, flag: str = "") -> Path:
    """The backup folder: --dir beats invoke config `backup.dir`; relative to the project."""
    folder = Path(flag or _config(c, "dir"))
    if not folder.is_absolute():
        folder = project_dir(c) / folder
    if folder.exists() and not folder.is_dir():
        raise Exit(f"The backup folder {folder} is a file: pass --dir with a folder, or move it.")
    return folder


def ensure_folder(folder: Path) -> None:
    """Made only when a backup is about to be written; private, since hub archives hold
    the cookie secret and password hashes."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise Exit(f"Cannot make the backup folder {folder} ({error.strerror}): pass --dir "
                   "with a folder you may write to.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise Exit(f"Cannot write to the backup folder {folder}: pass --dir with a folder you "
                   "may write to, or fix its permissions.")


def _size_limit(text) -> int:
    try:
        return fmt.parse_size(text)
    except ValueError as error:
        raise Exit(f"--max-size: {error}.")


def tool_version(root: Path) -> str:
    try:
        result = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty"],
                                capture_output=True, text=True, timeout=10)
        described = result.stdout.strip() if result.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        described = ""
    return f"jupyterhub-deploy {described or 'unknown'}"


def prepare(c) -> vh.Deployment:
    """Settings, engine and compose model, checked; the Docker client is built here, once."""
    import docker

    from tasks.project import compose_env, read_model
    from tasks.settings import load_settings

    root = project_dir(c)
    settings = load_settings(root)
    client = docker_client(c)
    model = read_model(c, compose_env(settings))
    try:
        client.images.get(model.hub_image)
    except docker.errors.ImageNotFound:
        raise Exit(f"The hub image {model.hub_image} is not built here, and backups use it "
                   "for their helper containers: run `inv build` first.")
    return vh.Deployment(root, settings.project, client, model.hub_image, model.hub_volume)


def user_target(dep: vh.Deployment, user: str) -> vh.Target:
    check_name(user)
    return vh.Target("user", user_volume(dep.project, user), user)


def hub_target(dep: vh.Deployment) -> vh.Target:
    return vh.Target("hub", dep.hub_volume)


def require_volume(dep: vh.Deployment, target: vh.Target) -> None:
    import docker

    try:
        dep.client.volumes.get(target.volume)  # exact name; list(filters=name) matches substrings
    except docker.errors.NotFound:
        hint = (f"{target.user} has never started a server here, or the name is misspelt"
                if target.kind == "user" else "run `inv build` to make it")
        raise Exit(f"No volume {target.volume} for {target.what}: {hint}. "
                   "`inv backup --all` backs up every user volume there is.")


def user_targets(dep: vh.Deployment) -> list:
    """Every user volume of this project, by its labels (the hub labels each one it makes)."""
    found = dep.client.volumes.list(filters=label_filter(dep.project, "user-volume"))
    targets = []
    for volume in sorted(found, key=lambda v: v.name):
        user = (volume.attrs.get("Labels") or {}).get(USER_LABEL, "")
        try:
            check_name(user)
        except Exit:
            print(f"skipped volume {volume.name}: its user label {user!r} is not a valid name")
            continue
        if user_volume(dep.project, user) != volume.name:
            print(f"skipped volume {volume.name}: labelled for {user}, whose volume is "
                  f"{user_volume(dep.project, user)}")
            continue
        targets.append(vh.Target("user", volume.name, user))
    return targets


@contextmanager
def engine_errors(what: str):
    """The engine's failures as messages, not tracebacks."""
    import docker
    import requests

    try:
        yield
    except docker.errors.DockerException as error:
        raise Exit(f"{what} failed: the Docker Engine said: {error}")
    except requests.exceptions.RequestException as error:
        raise Exit(f"{what} failed: the Docker Engine did not answer ({error}). Check it with "
                   "`docker info`, then run this again.")


# --- progress on a terminal -------------------------------------------------------------------

class Progress:
    """Bytes and rate on one line, only when stdout is a terminal."""

    def __init__(self, label: str, total: int = 0, stream=None):
        self.stream = stream or sys.stdout
        self.enabled = self.stream.isatty()
        self.label, self.total = label, total
        self.started = time.monotonic()
        self.shown = 0.0
        self.done = 0

    def add(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and now - self.shown >= 0.25:
            self.shown = now
            rate = self.done / max(now - self.started, 1e-6)
            of = f" of {fmt.human_bytes(self.total)}" if self.total else ""
            self.stream.write(f"\r{self.label}: {fmt.human_bytes(self.done)}{of}, "
                              f"{fmt.human_bytes(rate)}/s   ")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.shown:
            self.stream.write("\r" + " " * 78 + "\r")
            self.stream.flush()


# --- backup ---------------------------------------------------------------------------------

def _running_hub(dep: vh.Deployment):
    from tasks.checks import hub_container

    hub = hub_container(dep.client, dep.project)
    return hub if hub is not None and hub.status == "running" else None


def _mount_of(container, volume: str) -> str:
    for mount in container.attrs.get("Mounts", []):
        if mount.get("Name") == volume:
            return mount["Destination"]
    return ""


def hub_snapshot(hub, volume: str) -> tuple:
    """(folder, result): a consistent copy of the hub database, made by the running hub's
    container with SQLite's online backup, in a folder of the data volume."""
    where = _mount_of(hub, volume)
    if not where:
        raise Exit(f"The hub container {hub.name} does not mount {volume}: recreate it with "
                   "`inv up`.")
    folder = f"{where}/{fmt.SNAPSHOT_DIR}"
    code, output = hub.exec_run(["python3", "-I", "-c", SNAPSHOT_SCRIPT, f"{where}/{HUB_DB}",
                                 folder], user="0")
    text = output.decode(errors="replace").strip()
    try:
        result = json.loads(text.splitlines()[-1])
    except (IndexError, ValueError):
        result = {}
    if code != 0 or result.get("result") not in ("copied", "none"):
        raise Exit(f"Could not copy the hub database consistently in {hub.name}:\n{text[-2000:]}")
    if result.get("check", "ok") != "ok":
        raise Exit(f"The hub database fails SQLite's check ({result['check']}): it needs "
                   "repair before a backup means anything.")
    return folder, result


def drop_snapshot(hub, folder: str) -> None:
    import docker

    try:
        hub.exec_run(["python3", "-I", "-c", DROP_SNAPSHOT_SCRIPT, folder], user="0")
    except docker.errors.APIError:
        pass  # the hub stopped meanwhile: the next hub backup replaces it; restores skip it


def remove_leftovers(folder: Path, volume: str) -> None:
    if not folder.is_dir():
        return
    for name in fmt.leftover_names(volume, os.listdir(folder)):
        (folder / name).unlink(missing_ok=True)
        print(f"removed {name}, left by an interrupted backup")


def _free_name(folder: Path, volume: str, created: datetime, compress: bool) -> str:
    for n in range(0, 1000):
        name = fmt.archive_name(volume, created, compress, n)
        if not any((folder / f"{name}{x}").exists() for x in ("", ".partial", ".sha256")):
            return name
    raise Exit(f"Too many backups of {volume} within one second in {folder}.")


def write_archive(dep: vh.Deployment, lock, target: vh.Target, folder: Path, compress: bool,
                  snapshot=None) -> Written:
    """Stream the volume into `<name>.partial`, then checksum file, then the final name.
    `snapshot`: (container, path) of a consistent copy of the hub database to archive in
    the live database's place."""
    from tasks.files import sync_dir

    import gzip

    created = datetime.now(timezone.utc)
    name = _free_name(folder, target.volume, created, compress)
    partial = folder / f"{name}.partial"
    metadata = fmt.make_metadata(target.kind, target.volume, dep.project,
                                 tool_version(dep.root), created, user=target.user,
                                 compression="gzip" if compress else "none",
                                 hub_database="online-backup" if snapshot else "as-is")
    progress = Progress(f"backing up {target.what}")
    notes = {}
    checker = fmt.TreeChecker(fmt.Limits(max_bytes=1 << 62, max_entries=1 << 62))
    left_out = set()
    stream = hashing = None
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open(fd, "wb", buffering=0) as raw:
            hashing = streams.WriteBehind(raw.fileno())
            sink = gzip.GzipFile(fileobj=hashing, mode="wb", compresslevel=1, mtime=0) \
                if compress else hashing
            writer = fmt.ArchiveWriter(sink, metadata)
            stream = vh.volume_stream(lock, vh.MOUNT, lambda chunk: progress.add(len(chunk)))
            tar = fmt.TarReader(stream)
            while True:
                header = tar.next()
                if header is None:
                    break
                entry, problem = fmt.header_entry(header, vh.MOUNT_ROOT)
                path = entry.path if entry else header.name[len(vh.MOUNT_ROOT) + 1:]
                if entry is not None:
                    entry, note = fmt.plan_backup_entry(entry, problem, left_out)
                else:
                    note = f"left out {problem}"
                if note:
                    notes.setdefault(note, []).append(path)
                if entry is None:
                    left_out.add(path)
                    continue
                chunks = tar.chunks()
                if snapshot and entry.path in HUB_DB_SIDE_FILES:
                    continue  # the live database's journal: the snapshot is whole without it
                if snapshot and entry.path == HUB_DB and entry.kind == fmt.FILE:
                    _write_snapshot(*snapshot, writer, checker, entry)
                    continue
                checker.check(entry)
                writer.add(entry, chunks)
            writer.close(int(created.timestamp()))
            if compress:
                sink.close()  # writes gzip's trailer; leaves `hashing` open
            hashing.close()
            os.fsync(raw.fileno())
    except BaseException as error:
        if hashing is not None:
            hashing.abort()
        partial.unlink(missing_ok=True)
        if isinstance(error, fmt.ArchiveError):
            raise Exit(f"Backup of {target.what} failed: the engine's stream of "
                       f"{target.volume} is not what it should be: {error}. Nothing was written.")
        raise
    finally:
        progress.close()
        if stream is not None:
            stream.close()
    digest = hashing.digest.hexdigest()
    sidecar = folder / f"{name}.sha256"
    sidecar_partial = folder / f"{name}.sha256.partial"
    fd = os.open(sidecar_partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(fd, "w", encoding="utf-8") as file:
        file.write(fmt.sidecar_text(digest, name))
        file.flush()
        os.fsync(file.fileno())
    os.rename(sidecar_partial, sidecar)
    final = folder / name
    os.link(partial, final)  # never replaces a file: fails if one appeared meanwhile
    partial.unlink()
    sync_dir(folder)
    return Written(final, hashing.count, digest, checker.entries, checker.bytes, notes)


def _write_snapshot(container, path: str, writer, checker, live: fmt.Entry) -> None:
    """Write the database snapshot under the live database's name, owner and mode, in its
    place in the walk order. It is read through the hub's container, not the helper: the
    engine locks a container while it streams an archive of it, so a second archive of
    the helper would wait for the first (paused right here) forever."""
    stream = vh.volume_stream(container, path)
    try:
        tar = fmt.TarReader(stream)
        header = tar.next()
        if header is None or header.type not in (b"0", b"\x00"):
            raise fmt.ArchiveError("the database snapshot is missing")
        entry = replace(live, size=header.size, mtime=header.mtime)
        checker.check(entry)
        writer.add(entry, tar.chunks())
        if tar.next() is not None:
            raise fmt.ArchiveError("the database snapshot is not one file")
    finally:
        stream.close()


def backup_one(dep: vh.Deployment, target: vh.Target, folder: Path, compress: bool) -> Written:
    lock = vh.acquire(dep, target, "backup")
    try:
        vh.settle(lock, target)
        remove_leftovers(folder, target.volume)
        hub, snapshot = None, ""
        if target.kind == "hub":
            hub = _running_hub(dep)
            if hub is not None:
                snapshot, result = hub_snapshot(hub, target.volume)
                if result["result"] == "none":
                    hub, snapshot = None, ""
        try:
            return write_archive(dep, lock, target, folder, compress,
                                 (hub, f"{snapshot}/{HUB_DB}") if snapshot else None)
        finally:
            if hub is not None:
                drop_snapshot(hub, snapshot)
    finally:
        vh.release(lock)


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def report(target: vh.Target, written: Written) -> None:
    print(f"backup of {target.what} (volume {target.volume}):")
    print(f"  path:    {_shown(written.path)}")
    print(f"  size:    {written.size} bytes ({fmt.human_bytes(written.size)}); "
          f"{written.entries} entries, {fmt.human_bytes(written.bytes)} of file data")
    print(f"  sha256:  {written.sha256} (in {written.path.name}.sha256)")
    for note, paths in sorted(written.notes.items()):
        shown = ", ".join(repr(p) for p in paths[:3]) + (", ..." if len(paths) > 3 else "")
        print(f"  note:    {note}: {len(paths)} ({shown}); a restore would refuse them")
    if written.bytes > fmt.DEFAULT_MAX_BYTES:
        print(f"  note:    larger than a restore accepts by default: restore it with "
              f"--max-size {written.bytes // (1 << 30) + 1}G")


def list_backups(folder: Path) -> list:
    """(name, metadata or None, size, has checksum file) for each archive in the folder."""
    rows = []
    if not folder.is_dir():
        return rows
    for path in sorted(folder.iterdir()):
        if not fmt.ARCHIVE_NAME.match(path.name) or not path.is_file():
            continue
        try:
            meta = peek_metadata(path)
        except (fmt.ArchiveError, OSError):
            meta = None
        sidecar = path.with_name(path.name + ".sha256").is_file()
        rows.append((path.name, meta, path.stat().st_size, sidecar))
    return rows


def peek_metadata(path: Path) -> dict:
    with open(path, "rb", buffering=0) as raw:
        source = streams.open_chunks(streams.file_chunks(raw, 64 * 1024))
        return fmt.ArchiveReader(source).read_metadata()


def print_backups(folder: Path) -> None:
    rows = list_backups(folder)
    if not rows:
        print(f"no backups in {_shown(folder)}")
        return
    print(f"backups in {_shown(folder)}:")
    print(f"  {'created (UTC)':<20} {'of':<16} {'project':<14} {'size':>9}  file")
    for name, meta, size, sidecar in rows:
        if meta is None:
            what, project, created = "unreadable", "", ""
        else:
            what = f"user {meta['user']}" if meta["kind"] == "user" else "hub data"
            project, created = meta["project"], meta["created"].replace("T", " ").rstrip("Z")
        flag = "" if sidecar else "   (no .sha256 file: a restore refuses it)"
        print(f"  {created:<20} {what:<16} {project:<14} {fmt.human_bytes(size):>9}  {name}{flag}")
    partial = sorted(p.name for p in folder.iterdir() if p.name.endswith(".partial"))
    if partial:
        print(f"  and {len(partial)} unfinished (.partial) from interrupted backups; the next "
              "backup of that volume removes them")


@task(auto_shortflags=False, help={
    "user": "back up this user's volume (their work/ folder)",
    "all": "back up every user's volume and the hub's data",
    "hub": "back up the hub's data: database (copied consistently while it runs), cookie secret",
    "list": "list the backups in the backup folder",
    "dir": "backup folder (default: backups/, or invoke config backup.dir)",
    "compress": "gzip the archive (fast level; smaller, and slower than the default)",
})
def backup(c, user="", all_=False, hub=False, list_=False, dir_="", compress=False):
    """Back up a user's volume (--user NAME), --hub, or --all; --list shows backups."""
    chosen = [flag for flag, on in (("--user", bool(user)), ("--all", all_), ("--hub", hub),
                                    ("--list", list_)) if on]
    if len(chosen) != 1:
        raise Exit("Say what to back up: --user NAME, --hub or --all (or --list to see the "
                   f"backups){'; not ' + ' and '.join(chosen) + ' together' if chosen else ''}.")
    if user:
        check_name(user)
    folder = backup_folder(c, dir_)
    if list_:
        print_backups(folder)
        return
    compress = bool(compress or _config(c, "compress"))
    with engine_errors("Backup"):
        dep = prepare(c)
        if user:
            targets = [user_target(dep, user)]
        elif hub:
            targets = [hub_target(dep)]
        else:
            targets = user_targets(dep) + [hub_target(dep)]
        for target in targets:
            if target.kind == "hub" or user:  # --all found the users' volumes by listing them
                require_volume(dep, target)
    ensure_folder(folder)
    failed = []
    for target in targets:
        try:
            with engine_errors(f"Backup of {target.what}"):
                report(target, backup_one(dep, target, folder, compress))
        except Exit as error:
            if len(targets) == 1:
                raise
            print(f"backup of {target.what} failed: {error.message}")
            failed.append(target.what)
    if failed:
        raise Exit(f"{len(targets) - len(failed)} of {len(targets)} backed up; failed: "
                   f"{', '.join(failed)} (see above).")


# --- restore --------------------------------------------------------------------------------

def resolve_archive(folder: Path, text: str) -> tuple:
    """(archive, expected sha256): the file as given, else in the backup folder; its
    checksum file beside it. Read only: a restore writes nothing outside the volume."""
    given = Path(text).expanduser()
    candidates = [given] if given.is_absolute() else [Path.cwd() / given, folder / given]
    path = next((p for p in candidates if p.exists()), None)
    if path is None:
        raise Exit(f"No backup {text}: not there, nor in {_shown(folder)}. "
                   "`inv backup --list` shows what there is.")
    if not path.is_file():
        raise Exit(f"{text} is not a file: pass an archive `inv backup` wrote.")
    sidecar = path.with_name(path.name + ".sha256")
    try:
        expected = fmt.parse_sidecar(sidecar.read_text(encoding="utf-8", errors="replace"))
    except FileNotFoundError:
        raise Exit(f"{path.name} has no checksum file {sidecar.name} beside it: copy it from "
                   "where the archive came from (the two belong together).")
    except fmt.ArchiveError as error:
        raise Exit(f"Refused {path.name}: {error}.")
    return path, expected


def _running_servers(dep: vh.Deployment, user: str) -> list:
    return dep.client.containers.list(
        filters={**label_filter(dep.project, "user-server", user=user), "status": "running"})


def _refuse_running(dep: vh.Deployment, target: vh.Target, force: bool) -> bool:
    """Refuse while what uses the volume runs; with --force a user's server may run (the
    hub never: it would write its old database over the restored one). True if running."""
    if target.kind == "hub":
        hub = _running_hub(dep)
        if hub is not None:
            raise Exit(f"The hub ({hub.name}) is running and holds its database open: stop it "
                       "with `inv down`, restore, then `inv up`.")
        return False
    servers = _running_servers(dep, target.user)
    if servers and not force:
        raise Exit(f"{target.user}'s server ({servers[0].name}) is running and uses the volume: "
                   "stop it (the hub's admin page, or `inv down`), or pass --force to restore "
                   "under it.")
    return bool(servers)


def _close(*things) -> None:
    """Close what a read of an archive file opened (None for what it did not get to)."""
    for thing in things:
        if thing is not None:
            thing.close()


def _read_file(path: Path, progress: Progress):
    """(chunks, digest, file): the archive read ahead by a thread that also hashes it,
    gunzipped if need be."""
    import hashlib

    digest = hashlib.sha256()

    def seen(chunk):
        digest.update(chunk)
        progress.add(len(chunk))

    raw = open(path, "rb", buffering=0)
    return streams.open_chunks(streams.Prefetch(streams.file_chunks(raw), seen)), digest, raw


def verify(path: Path, expected: str, limits: fmt.Limits) -> fmt.Summary:
    """Read the whole archive and check it: checksum, structure, every entry against the
    manifest. Raises Exit naming the problem; nothing has been touched yet."""
    progress = Progress(f"checking {path.name}", path.stat().st_size)
    stream = raw = None
    try:
        stream, digest, raw = _read_file(path, progress)
        reader = fmt.ArchiveReader(stream, limits)
        for _ in reader.entries():
            pass
    except fmt.ArchiveError as error:
        fix = error.fix or ("it is damaged, or was not made by `inv backup`: restore another "
                            "backup (`inv backup --list` shows them)")
        raise Exit(f"Refused {path.name}: {error}. Nothing was changed; {fix}.")
    except OSError as error:
        raise Exit(f"Refused {path.name}: it cannot be read ({error}). Nothing was changed.")
    finally:
        _close(progress, stream, raw)
    if digest.hexdigest() != expected:
        raise Exit(f"Refused {path.name}: its sha256 is {digest.hexdigest()}, but "
                   f"{path.name}.sha256 says {expected}: the file changed or is damaged. "
                   "Nothing was changed; copy it again from where it came from, or restore "
                   "another backup (`inv backup --list` shows them).")
    return reader.summary


def check_kind(meta: dict, target: vh.Target, path: Path) -> None:
    if meta["kind"] != target.kind:
        other = "--hub" if meta["kind"] == "hub" else f"--user {meta['user']}"
        raise Exit(f"{path.name} is a backup of {'the hub' if meta['kind'] == 'hub' else 'a user'}"
                   f": restore it with {other}.")
    if target.kind == "user" and meta["user"] != target.user:
        raise Exit(f"{path.name} is {meta['user']}'s backup, not {target.user}'s: restore it "
                   f"with --user {meta['user']}.")


def stage(lock, path: Path, expected: str, limits: fmt.Limits) -> None:
    """Put the archive into the volume's work folder, from a second read of the file that
    must hash the same as the checked one."""
    before_ns = vh.parse_engine_time((vh.engine_stat(lock, vh.MOUNT) or {}).get("mtime", ""))
    progress = Progress(f"restoring {path.name}", path.stat().st_size)
    stream = raw = None
    try:
        stream, digest, raw = _read_file(path, progress)
        reader = fmt.ArchiveReader(stream, limits, verify=False)
        staged = fmt.staged_stream(reader, int(time.time()), before_ns)
        lock.put_archive(vh.MOUNT, streams.coalesce(staged))
    finally:
        _close(progress, stream, raw)
    if digest.hexdigest() != expected:
        raise fmt.ArchiveError(f"{path.name} changed while it was being restored")


def restore_volume(dep: vh.Deployment, target: vh.Target, path: Path, expected: str, force: bool,
                   limits: fmt.Limits) -> fmt.Summary:
    """Plan, act, re-check: refuse on what is running, check the whole archive, and only
    then make the volume if need be, take its lock, and stage, re-check and swap."""
    import docker

    running = _refuse_running(dep, target, force)
    summary = verify(path, expected, limits)
    created = False
    try:
        dep.client.volumes.get(target.volume)
    except docker.errors.NotFound:
        role = ("user-volume", {"user": target.user}) if target.kind == "user" else ("hub-data", {})
        dep.client.volumes.create(target.volume, labels=labels(dep.project, role[0], **role[1]))
        created = True
    done = False
    lock = None
    try:
        lock = vh.acquire(dep, target, "restore")
        if vh.settle(lock, target) == "not ours":
            raise Exit(f"The volume {target.volume} holds a folder {fmt.RESTORE_DIR} that no "
                       "restore made, and a restore works in it: rename it (from the user's "
                       "server, or a container mounting the volume) and run this again.")
        present = vh.top_level_names(lock)
        if present and not force:
            shown = ", ".join(repr(name) for name in present)
            raise Exit(f"The volume {target.volume} already holds files ({shown}...): pass "
                       "--force to replace all of its contents with the archive's.")
        try:
            stage(lock, path, expected, limits)
        except (fmt.ArchiveError, docker.errors.APIError) as error:
            vh.run_swap(lock)  # no commit marker: removes the staged copy
            raise Exit(f"Restore of {target.what} stopped before changing anything: {error}")
        if not running:
            try:
                _refuse_running(dep, target, force)
            except Exit:
                vh.run_swap(lock)
                raise
        lock.put_archive(vh.MOUNT, fmt.commit_stream(int(time.time())))
        verdict = vh.run_swap(lock)
        if verdict != "finished":
            raise Exit(f"The restore step ended with {verdict!r} instead of finishing.")
        done = True
        return summary
    finally:
        if lock is not None:
            vh.release(lock)
        if created and not done:
            try:
                dep.client.volumes.get(target.volume).remove()
            except docker.errors.APIError:
                pass


@task(auto_shortflags=False, help={
    "user": "restore this user's volume",
    "hub": "restore the hub's data (stop the hub first: `inv down`)",
    "from": "the archive: a path, or a name in the backup folder",
    "force": "replace a volume that holds files, even while the user's server runs",
    "dir": "backup folder (default: backups/, or invoke config backup.dir)",
    "max-size": "refuse archives holding more than this (default 100G, or backup.max_size)",
})
def restore(c, user="", hub=False, from_="", force=False, dir_="", max_size=""):
    """Restore a user's volume (--user NAME) or the hub's data (--hub) --from an archive."""
    if bool(user) == bool(hub):
        raise Exit("Say what to restore: --user NAME or --hub, and --from FILE.")
    if not from_:
        raise Exit("Say which archive to restore with --from FILE (`inv backup --list` shows "
                   "them).")
    if user:
        check_name(user)
    limits = fmt.Limits(max_bytes=_size_limit(max_size or _config(c, "max_size")))
    folder = backup_folder(c, dir_)
    path, expected = resolve_archive(folder, from_)
    try:
        meta = peek_metadata(path)
    except (fmt.ArchiveError, OSError) as error:
        raise Exit(f"Refused {path.name}: {error}. Nothing was changed; pass an archive "
                   "`inv backup` wrote (`inv backup --list` shows them).")
    check_kind(meta, vh.Target("user" if user else "hub", "", user), path)
    with engine_errors("Restore"):
        dep = prepare(c)
    target = user_target(dep, user) if user else hub_target(dep)
    if hub:  # the hub's users and groups may change: the next `inv up` takes every step
        applied.forget(applied_record(c))
    with engine_errors(f"Restore of {target.what}"):
        summary = restore_volume(dep, target, path, expected, force, limits)
    print(f"restored {target.what} (volume {target.volume}) from {_shown(path)}: "
          f"{summary.entries} entries, {fmt.human_bytes(summary.bytes)} of file data, "
          f"backed up {summary.metadata['created']} from project {summary.metadata['project']}")
    if target.kind == "user" and _running_servers(dep, target.user):
        print(f"{target.user}'s server was running: restart it so it sees the restored files.")
