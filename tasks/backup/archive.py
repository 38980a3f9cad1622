"""The backup archive's format: its layout, its names, what an entry is, its metadata,
and writing one.

Pure and engine-free: it writes byte streams, so the unit tier tests it without Docker;
reading.py reads an archive back and checks it (with tarstream.py and rules.py), and
writing.py and restoring.py move the streams between volumes and files.

An archive is one POSIX (pax) tar, written and read as a stream:

    jupyterhub-deploy-backup.json  what it is of: kind (user, hub, share), user or group,
                                   volume, project, tool, time
    data                           the volume's root folder
    data/...                       every entry of the volume, in the engine's walk order
    manifest.jsonl                 one line per data entry (path, type, size, mode, uid, gid,
                                   mtime, sha256 of files, link target of links), then a
                                   last line with the counts and the metadata's sha256

and beside it NAME.sha256, the sha256 of the archive file in `sha256sum -c` format.

The manifest comes last because a backup learns the checksums while it streams; a restore
reads the whole archive once to check it before it touches anything, so it finds the
manifest in time. Entries must come in the order the engine walks a folder (depth first,
names sorted by their bytes): that one rule makes duplicates and entries under a symlink
impossible while holding only the current path in memory, never a list of all entries.
"""
import hashlib
import json
import re
import tarfile
import tempfile
from dataclasses import dataclass, replace
from datetime import datetime, timezone

from tasks.backup.streams import CHUNK
from tasks.backup.swap import WORK
from tasks.show import shown

FORMAT = "jupyterhub-deploy-backup"
FORMAT_VERSION = 1
METADATA = "jupyterhub-deploy-backup.json"
DATA = "data"
MANIFEST = "manifest.jsonl"
# Names at a volume's root that belong to this tool: a restore's work folder and the hub
# database snapshot. Backups leave them out; archives that carry them are refused.
RESTORE_DIR = WORK  # where a restore stages its copy (swap.py)
SNAPSHOT_DIR = ".jupyterhub-deploy-backup"
RESERVED = frozenset({RESTORE_DIR, SNAPSHOT_DIR})

FILE, DIR, SYMLINK, HARDLINK = "file", "dir", "symlink", "hardlink"
KINDS = ("user", "hub", "share")

BLOCK = 512
MAX_HEADER = 64 * 1024  # an extended (pax/GNU) header, the metadata member, a manifest line
DEFAULT_MAX_BYTES = 100 << 30
DEFAULT_MAX_ENTRIES = 10_000_000

_TAR_TYPES = {FILE: tarfile.REGTYPE, DIR: tarfile.DIRTYPE, SYMLINK: tarfile.SYMTYPE,
              HARDLINK: tarfile.LNKTYPE}


class ArchiveError(Exception):
    """An archive or a stream that is not what it must be; the message names the problem,
    `fix` what to do about it when there is more to say than "use another backup"."""

    def __init__(self, message: str, fix: str = ""):
        super().__init__(message)
        self.fix = fix


@dataclass(frozen=True)
class Limits:
    max_bytes: int = DEFAULT_MAX_BYTES
    max_entries: int = DEFAULT_MAX_ENTRIES


@dataclass(frozen=True)
class Entry:
    """One thing in a volume, as the manifest records it."""
    path: str  # relative to the volume's root; "." is the root itself
    kind: str
    mode: int  # permission bits only
    uid: int
    gid: int
    mtime: int
    size: int = 0
    link: str = ""  # a symlink's target as stored; a hardlink's: the path it shares data with
    sha256: str = ""  # files, once their content has been read

    def record(self) -> dict:
        out = {"path": self.path, "type": self.kind, "size": self.size,
               "mode": f"{self.mode:04o}", "uid": self.uid, "gid": self.gid, "mtime": self.mtime}
        if self.kind == FILE:
            out["sha256"] = self.sha256
        if self.kind in (SYMLINK, HARDLINK):
            out["link"] = self.link
        return out


def canonical_json(value) -> bytes:
    """One JSON line; lone surrogates (file names that are not UTF-8) stay escaped."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def name_bytes(text: str) -> bytes:
    """A name's bytes: names that are not UTF-8 travel as lone surrogates, and back."""
    return text.encode("utf-8", "surrogateescape")


def name_text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError


def parse_size(text: str) -> int:
    """"100G", "512M", "1T", "1500000" (bytes) -> bytes; binary units (G = 2**30)."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)i?B?\s*", str(text), re.IGNORECASE)
    if not match:
        raise ValueError(f"{text!r} is not a size like 500M, 100G or 1T")
    return int(match.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}[match.group(2).upper()]


# --- metadata ------------------------------------------------------------------------------

def make_metadata(kind: str, volume: str, project: str, tool: str, created: datetime,
                  user: str = "", **extra) -> dict:
    if kind not in KINDS:
        raise ValueError(kind)
    return {"format": FORMAT, "version": FORMAT_VERSION, "kind": kind, "user": user or None,
            "volume": volume, "project": project, "tool": tool,
            "created": created.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), **extra}


def check_metadata(meta) -> dict:
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ArchiveError(f"it is not a {FORMAT} archive (no metadata first)")
    version = meta.get("version")  # any JSON value: shown with repr, which escapes controls
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ArchiveError(f"it is format version {version!r}, newer than this tool knows "
                           f"({FORMAT_VERSION}): update this project and try again")
    kind = meta.get("kind")
    if kind not in KINDS:
        raise ArchiveError(f"its metadata names kind {kind!r}, not one of {', '.join(KINDS)}")
    user = meta.get("user")
    if kind == "user" and not isinstance(user, str):
        raise ArchiveError("it is a user archive whose metadata names no user")
    if kind == "share" and not isinstance(meta.get("group"), str):
        raise ArchiveError("it is a shared folder's archive whose metadata names no group")
    for key in ("volume", "project", "created", "tool"):
        if not isinstance(meta.get(key), str):
            raise ArchiveError(f"its metadata has no {key}")
    return meta


# --- writing ------------------------------------------------------------------------------

def tar_header(name: str, entry: Entry) -> bytes:
    """The pax header for an entry under a member name (names that are not UTF-8 kept)."""
    info = tarfile.TarInfo(name)
    info.type = _TAR_TYPES[entry.kind]
    info.mode = entry.mode
    info.uid, info.gid = entry.uid, entry.gid
    info.uname = info.gname = ""
    info.mtime = entry.mtime
    info.size = entry.size if entry.kind == FILE else 0
    info.linkname = entry.link
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _member_name(root: str, path: str) -> str:
    return root if path == "." else f"{root}/{path}"


def file_header(name: str, size: int, mtime: int, mode: int = 0o600) -> bytes:
    return tar_header(name, Entry(path=name, kind=FILE, mode=mode, uid=0, gid=0,
                                  mtime=mtime, size=size))


def padding(size: int) -> bytes:
    return bytes(-size % BLOCK)


END_OF_ARCHIVE = bytes(2 * BLOCK)


class ArchiveWriter:
    """Writes an archive to a binary sink as it goes; the manifest is spooled to a
    temporary file, so memory does not grow with the number of entries."""

    def __init__(self, sink, metadata: dict):
        self.sink = sink
        self.spool = tempfile.TemporaryFile()
        self.entries = 0
        self.bytes = 0
        meta = canonical_json(metadata) + b"\n"
        self.metadata_sha256 = hashlib.sha256(meta).hexdigest()
        self._small(METADATA, meta, int(_created(metadata)))

    def _small(self, name: str, data: bytes, mtime: int) -> None:
        self.sink.write(file_header(name, len(data), mtime))
        self.sink.write(data)
        self.sink.write(padding(len(data)))

    def add(self, entry: Entry, chunks=()) -> Entry:
        """Write one entry; a file's content comes from `chunks` (an iterable of bytes),
        hashed on the way; returns the entry with its sha256."""
        link = _member_name(DATA, entry.link) if entry.kind == HARDLINK else entry.link
        self.sink.write(tar_header(_member_name(DATA, entry.path), replace(entry, link=link)))
        if entry.kind == FILE:
            digest = hashlib.sha256()
            written = 0
            for chunk in chunks:
                digest.update(chunk)
                self.sink.write(chunk)
                written += len(chunk)
            if written != entry.size:
                raise ArchiveError(f"{shown(entry.path)}: {written} bytes arrived, {entry.size} "
                                   "announced")
            self.sink.write(padding(entry.size))
            entry = replace(entry, sha256=digest.hexdigest())
        self.spool.write(canonical_json(entry.record()) + b"\n")
        self.entries += 1
        self.bytes += entry.size
        return entry

    def close(self, mtime: int) -> None:
        """The manifest, then the end-of-archive blocks."""
        self.spool.write(canonical_json({"end": True, "entries": self.entries,
                                         "bytes": self.bytes,
                                         "metadata_sha256": self.metadata_sha256}) + b"\n")
        size = self.spool.tell()
        self.spool.seek(0)
        self.sink.write(file_header(MANIFEST, size, mtime))
        while True:
            chunk = self.spool.read(CHUNK)
            if not chunk:
                break
            self.sink.write(chunk)
        self.sink.write(padding(size))
        self.sink.write(END_OF_ARCHIVE)
        self.spool.close()


def _created(metadata: dict) -> float:
    try:
        return datetime.strptime(metadata["created"], "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=timezone.utc).timestamp()
    except (KeyError, ValueError):
        return 0
