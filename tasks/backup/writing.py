"""Writing a backup: the volume streamed from the engine through its helper container,
checked and hashed entry by entry, into an archive file in the backup folder; for the
hub's data, the database's consistent copy (snapshot.py) in the live database's place."""
import errno
import gzip
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from invoke.exceptions import Exit

from tasks.backup import helper, streams
from tasks.backup.archive import (DEFAULT_MAX_BYTES, FILE, SNAPSHOT_DIR, ArchiveError,
                                  ArchiveWriter, Entry, Limits, human_bytes, make_metadata)
from tasks.backup.rules import TreeChecker, plan_backup_entry
from tasks.backup.store import (Progress, free_name, remove_leftovers, shown_path,
                                sidecar_text)
from tasks.backup.targets import Deployment, Target, running_hub
from tasks.backup.survey import DATA_SLACK, MAX_SPARSE, Findings
from tasks.backup.tarstream import TarReader, header_entry
from tasks.files import sync_dir, write_atomic
from tasks.show import shown
from tasks.target import command_line

HUB_DB = "jupyterhub.sqlite"  # hub/jupyterhub_config.py: sqlite:////data/jupyterhub.sqlite
HUB_DB_SIDE_FILES = tuple(HUB_DB + suffix for suffix in ("-journal", "-wal", "-shm"))


@dataclass
class Written:
    path: Path
    size: int
    sha256: str
    entries: int
    bytes: int
    notes: dict = field(default_factory=dict)  # (note, why): the items it is about, shown


def tool_version(root: Path) -> str:
    try:
        result = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty"],
                                capture_output=True, text=True, timeout=10)
        described = result.stdout.strip() if result.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        described = ""
    return f"jupyterhub-deploy {described or 'unknown'}"


def _mount_of(container, volume: str) -> str:
    for mount in container.attrs.get("Mounts", []):
        if mount.get("Name") == volume:
            return mount["Destination"]
    return ""


def hub_snapshot(hub, volume: str, c=None) -> tuple:
    """(folder, result): a consistent copy of the hub database, made by the running hub's
    container with SQLite's online backup, in a folder of the data volume."""
    where = _mount_of(hub, volume)
    if not where:
        raise Exit(f"The hub container {shown(hub.name)} does not mount {volume}: recreate it "
                   f"with `{command_line(c, 'up')}`.")
    folder = f"{where}/{SNAPSHOT_DIR}"
    code, output = hub.exec_run(
        helper.program_command("snapshot.py", "copy", f"{where}/{HUB_DB}", folder), user="0")
    text = output.decode(errors="replace").strip()
    try:
        result = json.loads(text.splitlines()[-1])
    except (IndexError, ValueError):
        result = {}
    if code != 0 or result.get("result") not in ("copied", "none"):
        said = "\n".join(shown(line) for line in text[-2000:].splitlines())
        raise Exit(f"Could not copy the hub database consistently in {shown(hub.name)}:\n{said}")
    if result.get("check", "ok") != "ok":
        raise Exit(f"The hub database fails SQLite's check ({shown(result['check'])}): it needs "
                   "repair before a backup means anything.")
    return folder, result


def drop_snapshot(hub, folder: str) -> None:
    import docker

    try:
        hub.exec_run(helper.program_command("snapshot.py", "drop", folder), user="0")
    except docker.errors.APIError:
        pass  # the hub stopped meanwhile: the next hub backup replaces it; restores skip it


class OverCap(Exception):
    """The file data would pass the survey's cap (survey.Findings.data_cap)."""


def _note(notes: dict, note: str, item: str, why: str = "") -> None:
    notes.setdefault((note, why), []).append(item)


def write_archive(dep: Deployment, source, target: Target, folder: Path, compress: bool,
                  found: Findings, snapshot=None) -> Written:
    """Stream the volume from `source` (its lock, or a reader that covers its sparse files)
    into `<name>.partial`, then checksum file, then the final name. `found`: the survey of
    the volume, whose sparse files are left out and whose data bounds the archive's.
    `snapshot`: (container, path) of a consistent copy of the hub database to archive in
    the live database's place."""
    created = datetime.now(timezone.utc)
    name = free_name(folder, target.volume, created, compress)
    partial, sidecar, final = (folder / f"{name}{x}" for x in (".partial", ".sha256", ""))
    free = shutil.disk_usage(folder).free
    metadata = make_metadata(target.kind, target.volume, dep.project, tool_version(dep.root),
                             created, user=target.user,
                             **({"group": target.group} if target.kind == "share" else {}),
                             compression="gzip" if compress else "none",
                             hub_database="online-backup" if snapshot else "as-is")
    progress = Progress(f"backing up {target.what}")
    notes = {}
    for path, (length, data) in sorted(found.sparse.items()):
        _note(notes, "left out a sparse file", f"'{shown(path)}' ({human_bytes(length)} long, "
              f"{human_bytes(data)} of data)", "; its holes would be archived as zeros in "
              "full: keep a copy of it some other way")
    checker = TreeChecker(Limits(max_bytes=1 << 62, max_entries=1 << 62))
    left_out = set()
    stream = hashing = sink = None
    in_folder = True  # whether an OSError now is the backup folder's (else the stream's)
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        in_folder = False
        with open(fd, "wb", buffering=0) as raw:
            hashing = streams.WriteBehind(raw.fileno())
            sink = gzip.GzipFile(fileobj=hashing, mode="wb", compresslevel=1, mtime=0) \
                if compress else hashing
            writer = ArchiveWriter(sink, metadata)
            stream = helper.volume_stream(source, helper.MOUNT,
                                          lambda chunk: progress.add(len(chunk)))
            tar = TarReader(stream)
            while True:
                header = tar.next()
                if header is None:
                    break
                entry, problem = header_entry(header, helper.MOUNT_ROOT)
                path = entry.path if entry else header.name[len(helper.MOUNT_ROOT) + 1:]
                if path in found.sparse:  # covered: the engine sent /dev/null, noted above
                    left_out.add(path)
                    continue
                if entry is not None:
                    entry, note = plan_backup_entry(entry, problem, left_out)
                else:
                    note = f"left out {problem}"
                if note:
                    _note(notes, note, f"'{shown(path)}'", "; a restore would refuse them")
                if entry is None:
                    left_out.add(path)
                    continue
                chunks = tar.chunks()
                if snapshot and entry.path in HUB_DB_SIDE_FILES:
                    continue  # the live database's journal: the snapshot is whole without it
                if snapshot and entry.path == HUB_DB and entry.kind == FILE:
                    _write_snapshot(*snapshot, writer, checker, entry, found.data_cap)
                    continue
                _within_cap(entry, checker, found.data_cap)
                checker.check(entry)
                writer.add(entry, chunks)
            writer.close(int(created.timestamp()))
            if compress:
                sink.close()  # writes gzip's trailer; leaves `hashing` open
            in_folder = True
            hashing.close()
            os.fsync(raw.fileno())
        digest = hashing.digest.hexdigest()
        write_atomic(sidecar, sidecar_text(digest, name).encode("utf-8"), 0o600)
        os.link(partial, final)  # never replaces a file: fails if one appeared meanwhile
    except BaseException as error:
        written = partial.stat().st_size if partial.exists() else 0
        in_folder = in_folder or error is getattr(hashing, "error", None)
        if hashing is not None:
            hashing.abort()
        if compress and sink is not None:
            _discard(sink)
        partial.unlink(missing_ok=True)
        sidecar.unlink(missing_ok=True)  # free_name saw none: this one can only be ours
        if isinstance(error, ArchiveError):
            raise Exit(f"Backup of {target.what} failed: the engine's stream of "
                       f"{target.volume} is not what it should be: {error}. Nothing was written.")
        if isinstance(error, OSError) and in_folder:
            raise Exit(_cannot_write(target, folder, error, written, progress.done, free,
                                     found.data))
        if isinstance(error, OverCap):
            raise Exit(_over_cap(target, found, *error.args))
        raise
    finally:
        progress.close()
        if stream is not None:
            stream.close()
    partial.unlink()
    sync_dir(folder)
    return Written(final, hashing.count, digest, checker.entries, checker.bytes, notes)


def _discard(sink) -> None:
    """Close a gzip sink whose file failed, so nothing tries to write its trailer later."""
    try:
        sink.close()
    except (OSError, streams.StreamEnd):
        pass


def _within_cap(entry: Entry, checker: TreeChecker, cap: int) -> None:
    if entry.kind == FILE and entry.size > cap - checker.bytes:
        raise OverCap(entry.path, entry.size, checker.bytes)


def _over_cap(target: Target, found: Findings, path: str, size: int, so_far: int) -> str:
    return (f"Backup of {target.what} stopped: with '{shown(path)}' ({human_bytes(size)} long) "
            f"its file data would pass {human_bytes(found.data_cap)}, twice the "
            f"{human_bytes(found.data)} of data the volume's files held when the backup "
            f"looked, plus {human_bytes(DATA_SLACK)}, the most a backup writes "
            f"({human_bytes(so_far)} were archived before it). Files with holes the survey "
            "did not count as sparse, or files that grew meanwhile, make this. The "
            "unfinished archive is removed; nothing else was written.")


def _cannot_write(target: Target, folder: Path, error: OSError, written: int, read: int,
                  free: int, data: int) -> str:
    """What a backup says when its folder fails it: a full disk, with the figures known."""
    where = shown_path(folder)
    what = f"Backup of {target.what} failed"
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"{what}: the backup folder {where} is full ({error.strerror}). It ran out "
                f"after {human_bytes(written)} of the archive, with {human_bytes(read)} of the "
                f"volume read; {human_bytes(free)} was free when it began. The volume's files "
                f"hold {human_bytes(data)}: the archive needs about that much room (less with "
                "--compress, for files that shrink). Pass --dir with a folder on a larger "
                "disk, or make room. The unfinished archive is removed; nothing else was "
                "written.")
    return (f"{what}: cannot write to the backup folder {where} ({error.strerror}). The "
            "unfinished archive is removed; pass --dir with a folder you may write to.")


def _write_snapshot(container, path: str, writer, checker, live: Entry, cap: int) -> None:
    """Write the database snapshot under the live database's name, owner and mode, in its
    place in the walk order. It is read through the hub's container, not the helper: the
    engine locks a container while it streams an archive of it, so a second archive of
    the helper would wait for the first (paused right here) forever."""
    stream = helper.volume_stream(container, path)
    try:
        tar = TarReader(stream)
        header = tar.next()
        if header is None or header.type not in (b"0", b"\x00"):
            raise ArchiveError("the database snapshot is missing")
        entry = replace(live, size=header.size, mtime=header.mtime)
        _within_cap(entry, checker, cap)
        checker.check(entry)
        writer.add(entry, tar.chunks())
        if tar.next() is not None:
            raise ArchiveError("the database snapshot is not one file")
    finally:
        stream.close()


def backup_one(dep: Deployment, target: Target, folder: Path, compress: bool) -> Written:
    lock = helper.acquire(dep, target, "backup")
    try:
        helper.settle(lock, target)
        remove_leftovers(folder, target.volume)
        hub, snapshot = None, ""
        if target.kind == "hub":
            hub = running_hub(dep)
            if hub is not None:
                snapshot, result = hub_snapshot(hub, target.volume, dep.c)
                if result["result"] == "none":
                    hub, snapshot = None, ""
        reader = None
        try:
            found = helper.survey(dep, target)  # after the snapshot: its data counts
            _refuse_sparse(target, found)
            if found.sparse:
                reader = helper.shadowed_reader(dep, target, sorted(found.sparse))
            return write_archive(dep, reader or lock, target, folder, compress, found,
                                 (hub, f"{snapshot}/{HUB_DB}") if snapshot else None)
        finally:
            if reader is not None:
                reader.remove(force=True)
            if hub is not None:
                drop_snapshot(hub, snapshot)
    finally:
        helper.release(lock)


def _refuse_sparse(target: Target, found: Findings) -> None:
    """The sparse files a backup cannot leave out: too many, or named so that the engine's
    API cannot name them (it speaks JSON: UTF-8 only)."""
    fix = "Remove or rename them from the user's server, and run this again."
    if not found.complete:
        raise Exit(f"Backup of {target.what} refused: the volume {target.volume} holds more "
                   f"than {MAX_SPARSE} sparse files, and a backup leaves each out by name. "
                   + fix)
    for path in sorted(found.sparse):
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:
            raise Exit(f"Backup of {target.what} refused: the sparse file '{shown(path)}' has "
                       "a name that is not UTF-8, which the engine's API cannot name to leave "
                       "it out. " + fix)


def report(target: Target, written: Written) -> None:
    print(f"backup of {target.what} (volume {target.volume}):")
    print(f"  path:    {shown_path(written.path)}")
    print(f"  size:    {written.size} bytes ({human_bytes(written.size)}); "
          f"{written.entries} entries, {human_bytes(written.bytes)} of file data")
    print(f"  sha256:  {written.sha256} (in {written.path.name}.sha256)")
    for (note, why), items in sorted(written.notes.items()):
        examples = ", ".join(items[:3]) + (", ..." if len(items) > 3 else "")
        print(f"  note:    {note}: {len(items)} ({examples}){why}")
    if written.bytes > DEFAULT_MAX_BYTES:
        print(f"  note:    larger than a restore accepts by default: restore it with "
              f"--max-size {written.bytes // (1 << 30) + 1}G")
