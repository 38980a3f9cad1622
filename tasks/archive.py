"""The backup archive: its format, its manifest, and every check a restore makes.

Pure and engine-free: it reads and writes byte streams, so the unit tier tests it without
Docker, and tasks/backup.py moves the streams between volumes and files.

An archive is one POSIX (pax) tar, written and read as a stream:

    jupyterhub-deploy-backup.json  what it is of: kind, user, volume, project, tool, time
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

import zlib

from tasks.restore_swap import WORK
from tasks.streams import CHUNK, CompressedEnd, StreamEnd

FORMAT = "jupyterhub-deploy-backup"
FORMAT_VERSION = 1
METADATA = "jupyterhub-deploy-backup.json"
DATA = "data"
MANIFEST = "manifest.jsonl"
# Names at a volume's root that belong to this tool: a restore's work folder and the hub
# database snapshot. Backups leave them out; archives that carry them are refused.
RESTORE_DIR = WORK  # where a restore stages its copy (tasks/restore_swap.py)
SNAPSHOT_DIR = ".jupyterhub-deploy-backup"
RESERVED = frozenset({RESTORE_DIR, SNAPSHOT_DIR})

FILE, DIR, SYMLINK, HARDLINK = "file", "dir", "symlink", "hardlink"
KINDS = ("user", "hub")

BLOCK = 512
MAX_HEADER = 64 * 1024  # an extended (pax/GNU) header, the metadata member, a manifest line
MAX_PATH = 4096  # Linux PATH_MAX
MAX_NAME = 255  # Linux NAME_MAX
MAX_TRAILER = 1 << 20  # zeros after the end-of-archive block (tar pads to its record size)
DEFAULT_MAX_BYTES = 100 << 30
DEFAULT_MAX_ENTRIES = 10_000_000

_ZERO_BLOCK = bytes(BLOCK)
# pax keys a tar written by Docker (Go's archive/tar) or by us may carry.
_PAX_KNOWN = {"path", "linkpath", "size", "uid", "gid", "uname", "gname", "mtime", "atime",
              "ctime", "hdrcharset", "comment"}
_POSIX_MAGIC = b"ustar\x0000"
_GNU_MAGIC = b"ustar  \x00"
_TYPES = {b"0": FILE, b"\x00": FILE, b"7": FILE, b"5": DIR, b"2": SYMLINK, b"1": HARDLINK}
_TYPE_NAMES = {b"3": "a character device", b"4": "a block device", b"6": "a named pipe (FIFO)",
               b"S": "a sparse file", b"V": "a tape volume header", b"M": "a multi-volume part",
               b"g": "a global pax header", b"D": "a GNU dump folder"}
_TAR_TYPES = {FILE: tarfile.REGTYPE, DIR: tarfile.DIRTYPE, SYMLINK: tarfile.SYMTYPE,
              HARDLINK: tarfile.LNKTYPE}
_STAMP = "%Y%m%dT%H%M%SZ"
ARCHIVE_NAME = re.compile(
    r"^(?P<volume>[a-z0-9][a-z0-9_-]*)-(?P<stamp>\d{8}T\d{6}Z)(?:-(?P<n>[1-9]\d*))?"
    r"\.tar(?P<gz>\.gz)?$")


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


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _text(raw: bytes) -> str:
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


# --- names of archive files ------------------------------------------------------------------

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
    version = meta.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ArchiveError(f"it is format version {version!r}, newer than this tool knows "
                           f"({FORMAT_VERSION}): update this project and try again")
    kind = meta.get("kind")
    if kind not in KINDS:
        raise ArchiveError(f"its metadata names kind {kind!r}, not one of {', '.join(KINDS)}")
    user = meta.get("user")
    if kind == "user" and not isinstance(user, str):
        raise ArchiveError("it is a user archive whose metadata names no user")
    for key in ("volume", "project", "created", "tool"):
        if not isinstance(meta.get(key), str):
            raise ArchiveError(f"its metadata has no {key}")
    return meta


# --- paths and the rules every entry follows --------------------------------------------------

def split_path(path: str) -> tuple:
    """The components of a relative path inside a volume, refusing anything that could
    point elsewhere ("/x", "a/../b", "a//b", "./a", NUL) or that Linux cannot hold."""
    if path == ".":
        return ()
    raw = _bytes(path)
    if not raw:
        raise ArchiveError("an entry has an empty name")
    if b"\x00" in raw:
        raise ArchiveError(f"{path!r}: a NUL byte in a name")
    if raw.startswith(b"/"):
        raise ArchiveError(f"{path!r}: an absolute path")
    if len(raw) > MAX_PATH:
        raise ArchiveError(f"{path[:60]!r}...: a path longer than {MAX_PATH} bytes")
    parts = raw.split(b"/")
    for part in parts:
        if part == b"..":
            raise ArchiveError(f"{path!r}: a '..' component, which could reach outside the volume")
        if part in (b"", b"."):
            raise ArchiveError(f"{path!r}: an empty or '.' component")
        if len(part) > MAX_NAME:
            raise ArchiveError(f"{path[:60]!r}...: a name longer than {MAX_NAME} bytes")
    return tuple(parts)


def link_stays_inside(parent: tuple, target: str) -> bool:
    """Whether a relative symlink target, read from the link's folder, names a place inside
    the volume (lexically; nothing is ever written through a link, see TreeChecker)."""
    raw = _bytes(target)
    if not raw or raw.startswith(b"/") or b"\x00" in raw or len(raw) > MAX_PATH:
        return False
    depth = len(parent)
    for part in raw.split(b"/"):
        if part in (b"", b"."):
            continue
        depth = depth - 1 if part == b".." else depth + 1
        if depth < 0:
            return False
    return True


class TreeChecker:
    """Checks entries one at a time, in order, with memory bounded by the path depth (plus
    the symlinks seen, usually few); raises ArchiveError naming the entry and the rule.

    The rules: the root comes first and is a folder; every other entry comes after its
    folder, and a folder's entries come in increasing byte order, each once (the engine's
    walk order). Only files, folders, symlinks and hardlinks; no setuid or setgid bits;
    symlinks point inside the volume; a hardlink names an earlier path, never through a
    symlink; sizes stay within the limits. With entries ordered this way, nothing is ever
    written under a symlink: an entry whose folder is a symlink has no folder before it.
    """

    def __init__(self, limits: Limits = Limits(), reserved=RESERVED):
        self.limits = limits
        self.reserved = {_bytes(name) for name in reserved}
        self.stack = []  # [name, last child name] per open folder, the root first
        self.symlinks = set()
        self.entries = 0
        self.bytes = 0

    def check(self, entry: Entry) -> None:
        parts = split_path(entry.path)
        where = entry.path
        if entry.kind not in (FILE, DIR, SYMLINK, HARDLINK):
            raise ArchiveError(f"{where}: {entry.kind} entries are not allowed")
        if not self.stack and self.entries == 0:
            if parts or entry.kind != DIR:
                raise ArchiveError(f"{where}: the first entry must be the volume's root folder")
        elif not parts:
            raise ArchiveError("the root folder appears twice")
        if entry.mode & ~0o7777:
            raise ArchiveError(f"{where}: mode {entry.mode:o} has bits beyond the permissions")
        if entry.mode & 0o6000:
            raise ArchiveError(f"{where}: a setuid or setgid bit (mode {entry.mode:04o})")
        if entry.uid < 0 or entry.gid < 0 or entry.uid > 0xFFFFFFFE or entry.gid > 0xFFFFFFFE:
            raise ArchiveError(f"{where}: owner {entry.uid}:{entry.gid} is out of range")
        if entry.kind != FILE and entry.size:
            raise ArchiveError(f"{where}: a {entry.kind} with a size of {entry.size} bytes")
        if entry.size < 0 or entry.size > self.limits.max_bytes - self.bytes:
            raise ArchiveError(
                f"{where}: {entry.size} bytes would take the archive past the size limit "
                f"({human_bytes(self.limits.max_bytes)})",
                fix="if you trust this archive, pass --max-size with a larger size")
        if self.entries >= self.limits.max_entries:
            raise ArchiveError(f"more than {self.limits.max_entries} entries",
                               fix="it is not a volume this tool backed up")
        if parts:
            self._place(parts, where)
        if entry.kind == SYMLINK and not link_stays_inside(parts[:-1], entry.link):
            raise ArchiveError(f"{where}: a symlink pointing outside the volume ({entry.link!r})")
        if entry.kind == HARDLINK:
            self._check_hardlink(parts, entry)
        if entry.kind == DIR:
            self.stack.append([parts[-1] if parts else b"", None])
        elif entry.kind == SYMLINK:
            self.symlinks.add(parts)
        self.entries += 1
        self.bytes += entry.size

    def _place(self, parts: tuple, where: str) -> None:
        depth = len(parts)
        if len(self.stack) < depth or any(
                self.stack[i][0] != parts[i - 1] for i in range(1, depth)):
            raise ArchiveError(
                f"{where}: comes without its folder before it (out of order, or under "
                "something that is not a folder, such as a symlink)")
        del self.stack[depth:]
        folder = self.stack[depth - 1]
        if folder[1] is not None and parts[-1] <= folder[1]:
            raise ArchiveError(f"{where}: listed twice or out of order")
        folder[1] = parts[-1]
        if depth == 1 and parts[0] in self.reserved:
            raise ArchiveError(f"{where}: a name this tool keeps for itself at the volume's root")

    def _check_hardlink(self, parts: tuple, entry: Entry) -> None:
        where = entry.path
        try:
            target = split_path(entry.link)
        except ArchiveError as error:
            raise ArchiveError(f"{where}: a hardlink pointing outside the volume ({error})")
        if not target or target >= parts:
            raise ArchiveError(f"{where}: a hardlink to {entry.link!r}, which is not an "
                               "earlier entry of the archive")
        if target == parts[:len(target)]:
            raise ArchiveError(f"{where}: a hardlink to its own folder ({entry.link!r})")
        if target[0] in self.reserved:
            raise ArchiveError(f"{where}: a hardlink into a folder this tool keeps for itself")
        # link(2) follows symlinks in the folders of the target, not the last name.
        if any(target[:i] in self.symlinks for i in range(1, len(target))):
            raise ArchiveError(f"{where}: a hardlink through a symlink ({entry.link!r})")


# --- reading tar streams, strictly ---------------------------------------------------------------

@dataclass(frozen=True)
class Header:
    name: str
    type: bytes
    mode: int
    uid: int
    gid: int
    size: int
    mtime: int
    linkname: str
    pax: dict


def _number(field: bytes, what: str) -> int:
    if field[:1] == b"\x80":  # GNU base-256, positive
        return int.from_bytes(field[1:], "big")
    if field[:1] and field[0] & 0x80:
        raise ArchiveError(f"a negative number in the {what} field")
    text = field.replace(b"\x00", b" ").strip()
    if not text:
        return 0
    if not re.fullmatch(rb"[0-7]+", text):
        raise ArchiveError(f"the {what} field {text[:20]!r} is not an octal number")
    return int(text, 8)


def _cstring(field: bytes) -> bytes:
    return field.split(b"\x00", 1)[0]


def parse_pax(data: bytes) -> dict:
    """Records "LEN KEY=VALUE\\n", strictly: each length must be exact."""
    out = {}
    pos = 0
    while pos < len(data):
        if data[pos:] == bytes(len(data) - pos):
            break  # zero padding some writers leave at the end
        space = data.find(b" ", pos)
        if space < 0 or not data[pos:space].isdigit():
            raise ArchiveError("a malformed extended (pax) header")
        length = int(data[pos:space])
        record = data[pos:pos + length]
        if length <= space - pos + 1 or len(record) != length or not record.endswith(b"\n"):
            raise ArchiveError("a malformed extended (pax) header")
        key, sep, value = record[space - pos + 1:-1].partition(b"=")
        if not sep or not key:
            raise ArchiveError("a malformed extended (pax) header")
        out[_text(key)] = value
        pos += length
    return out


class TarReader:
    """Reads tar headers and member data from a `tasks.streams.Chunks`, holding at most a
    chunk and one extended header in memory; ArchiveError when it is malformed or ends
    early. Member data comes out as slices of the chunks it arrived in."""

    def __init__(self, source):
        self.source = source
        self.remaining = 0  # unread data bytes of the current member
        self.padding = 0

    def _exact(self, n: int, what: str) -> bytes:
        try:
            return self.source.read_exact(n)
        except StreamEnd:
            raise ArchiveError(f"the archive is truncated: it ends inside {what}")
        except CompressedEnd:
            raise ArchiveError("there is data after the end of the compressed archive")
        except zlib.error as error:
            raise ArchiveError(f"its compressed data is damaged ({error})")

    def _some(self, n: int):
        try:
            return self.source.read_some(n)
        except StreamEnd:
            raise ArchiveError("the archive is truncated: its compressed data is cut short")
        except CompressedEnd:
            raise ArchiveError("there is data after the end of the compressed archive")
        except zlib.error as error:
            raise ArchiveError(f"its compressed data is damaged ({error})")

    def read(self, n: int = CHUNK):
        """Up to n bytes of the current member's data (a memoryview); b"" at its end."""
        if not self.remaining:
            return b""
        data = self._some(min(n, self.remaining))
        if not data:
            raise ArchiveError("the archive is truncated: it ends inside a member's data")
        self.remaining -= len(data)
        return data

    def read_member(self) -> bytes:
        """All of the current member's data, for small members only."""
        data = self._exact(self.remaining, "a member's data")
        self.remaining = 0
        return data

    def chunks(self):
        while self.remaining:
            yield self.read()

    def _finish(self) -> None:
        while self.remaining:
            self.read()
        if self.padding:
            self._exact(self.padding, "a member's padding")
            self.padding = 0

    def next(self):
        """The next member's Header, or None at the end of the archive."""
        self._finish()
        pax, long_name, long_link = {}, None, None
        while True:
            block = self._exact(BLOCK, "a header")
            if block == _ZERO_BLOCK:
                if pax or long_name is not None or long_link is not None:
                    raise ArchiveError("the archive ends right after an extended header")
                self._trailer()
                return None
            stored = _number(block[148:156], "checksum")
            if stored != sum(block[:148]) + 8 * 0x20 + sum(block[156:]):
                raise ArchiveError("a header's checksum is wrong (corrupt or not a tar)")
            magic = block[257:265]
            if magic not in (_POSIX_MAGIC, _GNU_MAGIC):
                raise ArchiveError("a header in an unknown tar format")
            kind = block[156:157]
            size = _number(block[124:136], "size")
            if kind in (b"x", b"L", b"K"):
                if size > MAX_HEADER:
                    raise ArchiveError(f"an extended header of {size} bytes (at most {MAX_HEADER})")
                data = self._exact(size, "an extended header")
                self._exact(-size % BLOCK, "an extended header's padding")
                if kind == b"x":
                    pax.update(parse_pax(data))
                elif kind == b"L":
                    long_name = _cstring(data)
                else:
                    long_link = _cstring(data)
                continue
            name = _cstring(block[0:100])
            if magic == _POSIX_MAGIC and block[345:500].strip(b"\x00"):
                name = _cstring(block[345:500]) + b"/" + name
            header = Header(
                name=_text(pax.get("path", long_name if long_name is not None else name)),
                type=kind,
                mode=_number(block[100:108], "mode"),
                uid=_pax_int(pax, "uid", _number(block[108:116], "uid")),
                gid=_pax_int(pax, "gid", _number(block[116:124], "gid")),
                size=_pax_int(pax, "size", size),
                mtime=_pax_mtime(pax, _number(block[136:148], "mtime")),
                linkname=_text(pax.get("linkpath", long_link if long_link is not None
                                       else _cstring(block[157:257]))),
                pax={k: v for k, v in pax.items() if k not in ("path", "linkpath")},
            )
            self.remaining = header.size if _TYPES.get(kind) == FILE or kind not in _TYPES else 0
            if kind in _TYPES and _TYPES[kind] != FILE and header.size:
                raise ArchiveError(f"{header.name}: a {_TYPES[kind]} that claims "
                                   f"{header.size} bytes of data")
            self.padding = -self.remaining % BLOCK
            return header

    def _trailer(self) -> None:
        """After the end-of-archive block only zeros may follow, and not many."""
        seen = 0
        while True:
            data = self._some(CHUNK)
            if not data:
                return
            seen += len(data)
            if seen > MAX_TRAILER or bytes(data).strip(b"\x00"):
                raise ArchiveError("there is data after the end of the archive")


def _pax_int(pax: dict, key: str, default: int) -> int:
    if key not in pax:
        return default
    value = pax[key]
    if not re.fullmatch(rb"\d{1,20}", value):
        raise ArchiveError(f"the extended header's {key} {value[:30]!r} is not a number")
    return int(value)


def _pax_mtime(pax: dict, default: int) -> int:
    """Whole seconds (rounded down) of a pax mtime such as "1700000000.25" or "-1.5"."""
    if "mtime" not in pax:
        return default
    value = pax["mtime"]
    if not re.fullmatch(rb"-?\d{1,20}(\.\d{0,12})?", value):
        raise ArchiveError(f"the extended header's mtime {value[:30]!r} is not a time")
    whole, _, fraction = value.partition(b".")
    seconds = int(whole)
    return seconds - 1 if whole.startswith(b"-") and fraction.strip(b"0") else seconds


def header_entry(header: Header, root: str):
    """(entry, problem) for a member under `root`, the archive's top folder. `entry` is None
    for a kind no volume entry may be (a device, a pipe, a sparse file); `problem` names
    what a restore refuses about the member (those kinds, extended attributes, file
    capabilities), else None. A member outside `root` raises ArchiveError."""
    name = header.name
    kind = _TYPES.get(header.type)
    if kind == DIR:
        name = name.rstrip("/")
    if name == root:
        path = "."
    elif name.startswith(root + "/"):
        path = name[len(root) + 1:]
    else:
        raise ArchiveError(f"{name!r}: outside the archive's {root}/ folder")
    if kind is None:
        return None, _TYPE_NAMES.get(header.type, f"an entry of tar type {header.type!r}")
    problem = None
    for key in header.pax:
        if key.startswith("GNU.sparse"):
            return None, "a sparse file"
        if key not in _PAX_KNOWN:
            problem = ("file capabilities (as powerful as setuid)" if key.endswith(".capability")
                       else "extended attributes" if key.startswith("SCHILY.xattr.")
                       else f"pax key {key!r}")
    link = header.linkname
    if kind == HARDLINK:
        if link.startswith(root + "/"):
            link = link[len(root) + 1:]
        else:
            raise ArchiveError(f"{path}: a hardlink pointing outside the volume ({link!r})")
    return Entry(path=path, kind=kind, mode=header.mode & ~0o170000, uid=header.uid,
                 gid=header.gid, mtime=header.mtime, size=header.size if kind == FILE else 0,
                 link=link if kind in (SYMLINK, HARDLINK) else ""), problem


def plan_backup_entry(entry: Entry, problem=None, left_out=frozenset()):
    """What a backup writes for an entry the engine reported: (entry or None, note or None).
    A backup never writes what a restore would refuse, and says what it changed: it leaves
    out symlinks pointing outside the volume (they cannot work after a restore) and
    hardlinks to what it left out, clears setuid/setgid bits and drops file capabilities
    (a restore refuses them). Our own work folders at the root go silently."""
    parts = split_path(entry.path)
    if parts and _text(parts[0]) in RESERVED:
        return None, None
    if entry.kind == SYMLINK and not link_stays_inside(parts[:-1], entry.link):
        return None, "left out a symlink pointing outside the volume"
    if entry.kind == HARDLINK:
        if entry.link.split("/", 1)[0] in RESERVED:
            return None, None
        if entry.link in left_out:
            return None, "left out a hardlink to something left out"
    notes = [f"dropped {problem}"] if problem else []
    if entry.mode & 0o6000:
        entry = replace(entry, mode=entry.mode & 0o1777)
        notes.append("cleared a setuid/setgid bit")
    return entry, "; ".join(notes) or None


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
                raise ArchiveError(f"{entry.path}: {written} bytes arrived, {entry.size} announced")
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


# --- reading and checking a whole archive -------------------------------------------------------

@dataclass(frozen=True)
class Summary:
    metadata: dict
    entries: int
    bytes: int


class ArchiveReader:
    """Walks an archive, checking it as it goes: `entries()` yields (Entry, chunks) for each
    data entry, in order; the caller may read a file's chunks or not. With `verify`, every
    file's sha256 and every header are compared with the manifest at the end. The walk
    raises ArchiveError at the first problem; it has checked everything only when the
    generator is exhausted, and then `summary` is set."""

    def __init__(self, stream, limits: Limits = Limits(), verify: bool = True):
        self.tar = TarReader(stream)
        self.checker = TreeChecker(limits)
        self.verify = verify
        self.metadata = None
        self.summary = None

    def read_metadata(self) -> dict:
        header = self.tar.next()
        if header is None or header.name != METADATA or _TYPES.get(header.type) != FILE:
            raise ArchiveError(f"it is not a {FORMAT} archive (its first member is not "
                               f"{METADATA})")
        if header.size > MAX_HEADER:
            raise ArchiveError(f"its metadata is {header.size} bytes (at most {MAX_HEADER})")
        raw = self.tar.read_member()
        try:
            meta = json.loads(raw)
        except ValueError:
            raise ArchiveError("its metadata is not JSON")
        self.metadata = check_metadata(meta)
        self.metadata_sha256 = hashlib.sha256(raw).hexdigest()
        return self.metadata

    def entries(self):
        if self.metadata is None:
            self.read_metadata()
        seen = tempfile.TemporaryFile() if self.verify else None
        try:
            while True:
                header = self.tar.next()
                if header is None:
                    raise ArchiveError("the archive is truncated: it has no manifest")
                if header.name == MANIFEST and _TYPES.get(header.type) == FILE:
                    break
                entry, problem = header_entry(header, DATA)
                if problem:
                    raise ArchiveError(f"{header.name}: {problem}, which a restore does not "
                                       "accept")
                self.checker.check(entry)
                if entry.kind == FILE and self.verify:
                    digest = hashlib.sha256()
                    yield entry, _hashing(self.tar.chunks(), digest)
                    while self.tar.remaining:  # what the caller did not read
                        digest.update(self.tar.read())
                    entry = replace(entry, sha256=digest.hexdigest())
                else:
                    yield entry, self.tar.chunks()
                if seen is not None:
                    seen.write(canonical_json(entry.record()) + b"\n")
            if self.verify:
                self._compare_manifest(header.size, seen)
            else:
                while self.tar.remaining:
                    self.tar.read()
            if self.tar.next() is not None:
                raise ArchiveError("there is a member after the manifest")
        finally:
            if seen is not None:
                seen.close()
        self.summary = Summary(self.metadata, self.checker.entries, self.checker.bytes)

    def _compare_manifest(self, size: int, seen) -> None:
        seen.seek(0)
        lines = _lines(self.tar, size)
        for number, line in enumerate(lines, start=1):
            try:
                listed = json.loads(line)
            except ValueError:
                raise ArchiveError(f"manifest line {number} is not JSON")
            if not isinstance(listed, dict):
                raise ArchiveError(f"manifest line {number} is not an object")
            observed = seen.readline()
            if not observed:
                self._check_end(listed, number, lines)
                return
            found = json.loads(observed)
            if listed != found:
                keys = sorted(k for k in set(listed) | set(found) if listed.get(k) != found.get(k))
                raise ArchiveError(
                    f"{found['path']}: does not match the manifest ("
                    + "; ".join(f"{k}: manifest {listed.get(k)!r}, archive {found.get(k)!r}"
                                for k in keys) + ")")
        raise ArchiveError("the manifest is truncated (no end line)")

    def _check_end(self, listed: dict, number: int, lines) -> None:
        expected = {"end": True, "entries": self.checker.entries, "bytes": self.checker.bytes,
                    "metadata_sha256": self.metadata_sha256}
        if listed.get("end") is not True:
            raise ArchiveError(f"the manifest lists more entries than the archive holds "
                               f"({self.checker.entries})")
        if listed != expected:
            raise ArchiveError(f"the manifest's end line {listed} does not match the archive "
                               f"({expected})")
        if next(lines, None) is not None:
            raise ArchiveError(f"the manifest goes on after its end line (line {number})")


def _hashing(chunks, digest):
    for chunk in chunks:
        digest.update(chunk)
        yield chunk


def _lines(tar: TarReader, size: int):
    """Lines of the current member, none longer than MAX_HEADER."""
    buffer = b""
    while True:
        chunk = tar.read(CHUNK)
        if not chunk:
            break
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            yield line
        if len(buffer) > MAX_HEADER:
            raise ArchiveError(f"a manifest line longer than {MAX_HEADER} bytes")
    if buffer:
        raise ArchiveError("the manifest does not end with a newline")


# --- the stream a restore sends to the engine --------------------------------------------------

def staged_stream(reader: ArchiveReader, mtime: int, before_ns=None):
    """The tar a restore puts into the volume: the archive's entries under
    RESTORE_DIR/staging, with headers we write ourselves, so the engine gets exactly what
    was checked. RESTORE_DIR/root.json holds the root's owner, mode and time, for the swap
    to give the volume's root, and the root's time before (`before_ns`), for an undo."""
    work = Entry(path=RESTORE_DIR, kind=DIR, mode=0o700, uid=0, gid=0, mtime=mtime)
    staging = f"{RESTORE_DIR}/staging"
    for entry, chunks in reader.entries():
        if entry.path == ".":
            yield tar_header(RESTORE_DIR, work)
            attrs = {"mode": entry.mode, "uid": entry.uid, "gid": entry.gid,
                     "mtime": entry.mtime}
            if before_ns is not None:
                attrs["before_ns"] = before_ns
            root = canonical_json(attrs) + b"\n"
            yield file_header(f"{RESTORE_DIR}/root.json", len(root), mtime)
            yield root + padding(len(root))
            yield tar_header(staging, replace(work, path=staging))
            continue
        link = f"{staging}/{entry.link}" if entry.kind == HARDLINK else entry.link
        yield tar_header(f"{staging}/{entry.path}", replace(entry, link=link))
        if entry.kind == FILE:
            yield from chunks
            yield padding(entry.size)
    yield END_OF_ARCHIVE


def commit_stream(mtime: int):
    """The marker that tells the swap the staged copy is complete and checked."""
    return file_header(f"{RESTORE_DIR}/commit", 0, mtime) + END_OF_ARCHIVE
