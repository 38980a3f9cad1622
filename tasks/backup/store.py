"""The backup folder: a flat folder of archives, each with its checksum file beside it
(`NAME.sha256`). The archives' names, what an interrupted backup leaves there, the
listing `inv backup --list` prints, and the progress line a backup or restore shows."""
import os
import re
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from invoke.exceptions import Exit

from tasks.backup import streams
from tasks.backup.archive import ArchiveError, human_bytes
from tasks.backup.reading import ArchiveReader
from tasks.show import shown

_STAMP = "%Y%m%dT%H%M%SZ"
ARCHIVE_NAME = re.compile(
    r"^(?P<volume>[a-z0-9][a-z0-9_-]*)-(?P<stamp>\d{8}T\d{6}Z)(?:-(?P<n>[1-9]\d*))?"
    r"\.tar(?P<gz>\.gz)?$")


def archive_name(volume: str, created: datetime, compressed: bool = False, n: int = 0) -> str:
    """`<volume>-<UTC time>[-n].tar[.gz]`: sorts by time, says what it is of at a glance."""
    suffix = f"-{n}" if n else ""
    return f"{volume}-{created.astimezone(timezone.utc).strftime(_STAMP)}{suffix}.tar" + (
        ".gz" if compressed else "")


def parse_archive_name(name: str):
    """(volume, created) for a name archive_name makes, else None."""
    match = ARCHIVE_NAME.match(name)
    if not match:
        return None
    created = datetime.strptime(match.group("stamp"), _STAMP).replace(tzinfo=timezone.utc)
    return match.group("volume"), created


def leftover_names(volume: str, names) -> list:
    """Among file names in the backup folder, what an interrupted backup of `volume` left:
    its `.partial` files and checksum files whose archive never appeared."""
    present = set(names)
    out = []
    for name in sorted(present):
        base = name[: -len(".partial")] if name.endswith(".partial") else name
        if base.endswith(".sha256.partial"):
            base = base[: -len(".sha256.partial")]
        elif base.endswith(".sha256"):
            base = base[: -len(".sha256")]
        parsed = parse_archive_name(base)
        if not parsed or parsed[0] != volume:
            continue
        if name.endswith(".partial") or (name.endswith(".sha256") and base not in present):
            out.append(name)
    return out


def sidecar_text(digest: str, archive: str) -> str:
    return f"{digest}  {archive}\n"


def parse_sidecar(text: str) -> str:
    match = re.fullmatch(r"([0-9a-f]{64})[ ][ *]([^\n]+)\n?", text)
    if not match:
        raise ArchiveError("its checksum file is not one `sha256sum` line (64 hex digits, "
                           "two spaces, the file name)")
    return match.group(1)


def remove_leftovers(folder: Path, volume: str) -> None:
    if not folder.is_dir():
        return
    for name in leftover_names(volume, os.listdir(folder)):
        (folder / name).unlink(missing_ok=True)
        print(f"removed {name}, left by an interrupted backup")


def free_name(folder: Path, volume: str, created: datetime, compress: bool) -> str:
    for n in range(0, 1000):
        name = archive_name(volume, created, compress, n)
        if not any((folder / f"{name}{x}").exists() for x in ("", ".partial", ".sha256")):
            return name
    raise Exit(f"Too many backups of {volume} within one second in {folder}.")


def list_backups(folder: Path) -> list:
    """(name, metadata or None, size, has checksum file) for each archive in the folder."""
    rows = []
    if not folder.is_dir():
        return rows
    for path in sorted(folder.iterdir()):
        if not ARCHIVE_NAME.match(path.name) or not path.is_file():
            continue
        try:
            meta = peek_metadata(path)
        except (ArchiveError, OSError):
            meta = None
        sidecar = path.with_name(path.name + ".sha256").is_file()
        rows.append((path.name, meta, path.stat().st_size, sidecar))
    return rows


def peek_metadata(path: Path) -> dict:
    with open(path, "rb", buffering=0) as raw:
        source = streams.open_chunks(streams.file_chunks(raw, 64 * 1024))
        return ArchiveReader(source).read_metadata()


def print_backups(folder: Path) -> None:
    rows = list_backups(folder)
    if not rows:
        print(f"no backups in {shown_path(folder)}")
        return
    print(f"backups in {shown_path(folder)}:")
    print(f"  {'created (UTC)':<20} {'of':<16} {'project':<14} {'size':>9}  file")
    for name, meta, size, sidecar in rows:
        if meta is None:
            what, project, created = "unreadable", "", ""
        else:
            # Read from the archive: whatever it says is shown escaped.
            what = {"user": f"user {shown(meta['user'])}",
                    "share": f"share {shown(meta.get('group'))}"}.get(meta["kind"], "hub data")
            project = shown(meta["project"])
            created = shown(meta["created"].replace("T", " ").rstrip("Z"))
        flag = "" if sidecar else "   (no .sha256 file: a restore refuses it)"
        print(f"  {created:<20} {what:<16} {project:<14} {human_bytes(size):>9}  {name}{flag}")
    partial = sorted(p.name for p in folder.iterdir() if p.name.endswith(".partial"))
    if partial:
        print(f"  and {len(partial)} unfinished (.partial) from interrupted backups; the next "
              "backup of that volume removes them")


def shown_path(path: Path) -> str:
    """A path as messages show it: relative to the working folder when under it."""
    try:
        return shown(path.relative_to(Path.cwd()))
    except ValueError:
        return shown(path)


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
            of = f" of {human_bytes(self.total)}" if self.total else ""
            self.stream.write(f"\r{self.label}: {human_bytes(self.done)}{of}, "
                              f"{human_bytes(rate)}/s   ")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.shown:
            self.stream.write("\r" + " " * 78 + "\r")
            self.stream.flush()
