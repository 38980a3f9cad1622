"""Tar streams read strictly: the engine's tar of a volume during a backup, and our own
archives during a restore. Archives are written with the standard library's tarfile
(archive.tar_header: there it only encodes values this tool has checked); they are never
read with it.

Why not tarfile for reading (as Python 3.11's tarfile behaves):

- It does not fail where a restore must. A header with a bad checksum, a header cut short,
  or a zero block after the first member ends the archive quietly (`next()` returns None),
  so a truncated or damaged archive reads as a shorter, whole one; and whatever follows
  the first zero block is never looked at. Here each of those is an ArchiveError naming
  it, and only a bounded run of zeros may follow the end of the archive.
- It accepts what no volume entry may be and hands it on: devices and FIFOs, sparse files
  (GNU type S, the pax GNU.sparse keys), global pax headers (applied silently to every
  later member), unknown types (read as regular files), headers without the ustar magic
  (old V7 tar), a checksum summed signed or unsigned. Here a member's type must be one of
  the four a volume entry may be, anything else is named (`header_entry`), and a pax key
  this tool does not know is reported, never obeyed.
- It trusts sizes. It reads a pax or GNU long-name header of any announced size into
  memory in one piece; here one is at most MAX_HEADER bytes. It skips a member's data only
  for regular files and unknown types, so a folder or link header that announces a size
  has that data read as the next headers (a member hidden inside another); here such a
  header is refused, and every byte of data and padding is accounted for.
- It keeps every member it has read (`TarFile.members`), in stream mode too, so memory
  grows with the number of entries, and a volume may hold millions. This reader holds one
  header and at most a chunk, and hands member data out as slices of the chunks it arrived
  in (no copy), from the engine's HTTP stream or a file read ahead in a thread.

Every name (path, link target, pax key) is decoded with surrogateescape, so a name that is
not UTF-8 keeps its exact bytes from the engine's tar to the restored volume.
"""
import re
import zlib
from dataclasses import dataclass

from tasks.backup.archive import (BLOCK, DIR, FILE, HARDLINK, MAX_HEADER, SYMLINK,
                                  ArchiveError, Entry, name_text)
from tasks.backup.streams import CHUNK, CompressedEnd, StreamEnd
from tasks.show import shown

MAX_TRAILER = 1 << 20  # zeros after the end-of-archive block (tar pads to its record size)
_ZERO_BLOCK = bytes(BLOCK)
# pax keys a tar written by Docker (Go's archive/tar) or by us may carry.
_PAX_KNOWN = {"path", "linkpath", "size", "uid", "gid", "uname", "gname", "mtime", "atime",
              "ctime", "hdrcharset", "comment"}
_POSIX_MAGIC = b"ustar\x0000"
_GNU_MAGIC = b"ustar  \x00"
TYPES = {b"0": FILE, b"\x00": FILE, b"7": FILE, b"5": DIR, b"2": SYMLINK, b"1": HARDLINK}
_TYPE_NAMES = {b"3": "a character device", b"4": "a block device", b"6": "a named pipe (FIFO)",
               b"S": "a sparse file", b"V": "a tape volume header", b"M": "a multi-volume part",
               b"g": "a global pax header", b"D": "a GNU dump folder"}


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
        out[name_text(key)] = value
        pos += length
    return out


class TarReader:
    """Reads tar headers and member data from a `streams.Chunks`, holding at most a
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
                name=name_text(pax.get("path", long_name if long_name is not None else name)),
                type=kind,
                mode=_number(block[100:108], "mode"),
                uid=_pax_int(pax, "uid", _number(block[108:116], "uid")),
                gid=_pax_int(pax, "gid", _number(block[116:124], "gid")),
                size=_pax_int(pax, "size", size),
                mtime=_pax_mtime(pax, _number(block[136:148], "mtime")),
                linkname=name_text(pax.get("linkpath", long_link if long_link is not None
                                       else _cstring(block[157:257]))),
                pax={k: v for k, v in pax.items() if k not in ("path", "linkpath")},
            )
            self.remaining = header.size if TYPES.get(kind) == FILE or kind not in TYPES else 0
            if kind in TYPES and TYPES[kind] != FILE and header.size:
                raise ArchiveError(f"{shown(header.name)}: a {TYPES[kind]} that claims "
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
    kind = TYPES.get(header.type)
    if kind == DIR:
        name = name.rstrip("/")
    if name == root:
        path = "."
    elif name.startswith(root + "/"):
        path = name[len(root) + 1:]
    else:
        raise ArchiveError(f"'{shown(name)}': outside the archive's {root}/ folder")
    if kind is None:
        return None, _TYPE_NAMES.get(header.type, f"an entry of tar type {header.type!r}")
    problem = None
    for key in header.pax:
        if key.startswith("GNU.sparse"):
            return None, "a sparse file"
        if key not in _PAX_KNOWN:
            problem = ("file capabilities (as powerful as setuid)" if key.endswith(".capability")
                       else "extended attributes" if key.startswith("SCHILY.xattr.")
                       else f"pax key '{shown(key)}'")
    link = header.linkname
    if kind == HARDLINK:
        if link.startswith(root + "/"):
            link = link[len(root) + 1:]
        else:
            raise ArchiveError(f"{shown(path)}: a hardlink pointing outside the volume "
                               f"('{shown(link)}')")
    return Entry(path=path, kind=kind, mode=header.mode & ~0o170000, uid=header.uid,
                 gid=header.gid, mtime=header.mtime, size=header.size if kind == FILE else 0,
                 link=link if kind in (SYMLINK, HARDLINK) else ""), problem
