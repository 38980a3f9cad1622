"""Reading an archive back: the whole archive checked in one pass (every header against
the rules, every file's sha256 and every header against the manifest), and the stream a
restore puts into the volume from a second pass. Pure and engine-free, like archive.py."""
import hashlib
import json
import tempfile
from dataclasses import dataclass, replace

from tasks.backup.archive import (DATA, DIR, END_OF_ARCHIVE, FILE, FORMAT, HARDLINK,
                                  MANIFEST, MAX_HEADER, METADATA, RESTORE_DIR, ArchiveError,
                                  Entry, Limits, canonical_json, check_metadata, file_header,
                                  padding, tar_header)
from tasks.backup.rules import LinkTargets, TreeChecker
from tasks.backup.streams import CHUNK
from tasks.backup.tarstream import TYPES, TarReader, header_entry
from tasks.show import shown


@dataclass(frozen=True)
class Summary:
    metadata: dict
    entries: int
    bytes: int


class ArchiveReader:
    """Walks an archive, checking it as it goes: `entries()` yields (Entry, chunks) for each
    data entry, in order; the caller may read a file's chunks or not. With `verify`, every
    file's sha256 and every header are compared with the manifest at the end, and what
    every hardlink points to is checked to be a file (rules.LinkTargets). The walk
    raises ArchiveError at the first problem; it has checked everything only when the
    generator is exhausted, and then `summary` is set."""

    def __init__(self, stream, limits: Limits = Limits(), verify: bool = True):
        self.tar = TarReader(stream)
        self.checker = TreeChecker(limits)
        self.links = LinkTargets()
        self.verify = verify
        self.metadata = None
        self.summary = None

    def read_metadata(self) -> dict:
        header = self.tar.next()
        if header is None or header.name != METADATA or TYPES.get(header.type) != FILE:
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
                if header.name == MANIFEST and TYPES.get(header.type) == FILE:
                    break
                entry, problem = header_entry(header, DATA)
                if problem:
                    raise ArchiveError(f"{shown(header.name)}: {problem}, which a restore "
                                       "does not accept")
                self.checker.check(entry)
                if self.verify:
                    self.links.want(entry)
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
                    f"{shown(found['path'])}: does not match the manifest ("
                    + "; ".join(f"{shown(k)}: manifest {listed.get(k)!r}, archive "
                                f"{found.get(k)!r}" for k in keys) + ")")
            self.links.see(found["path"], found["type"], found.get("link", ""))
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

# The times the engine's put_archive sets as they are: from 1970 (it sets an earlier time
# to 1970-01-01, Docker's system.Chtimes) up to what nanoseconds in an int64 reach (2262).
ENGINE_TIMES = range(0, (1 << 63) // 10**9)


def staged_stream(reader: ArchiveReader, mtime: int, before_ns=None):
    """The tar a restore puts into the volume: the archive's entries under
    RESTORE_DIR/staging, with headers we write ourselves, so the engine gets exactly what
    was checked. RESTORE_DIR/root.json holds the root's owner, mode and time, for the swap
    to give the volume's root, and the root's time before (`before_ns`), for an undo.
    RESTORE_DIR/times.jsonl, last, lists the entries whose time the engine cannot set
    (before 1970), for the swap to set."""
    work = Entry(path=RESTORE_DIR, kind=DIR, mode=0o700, uid=0, gid=0, mtime=mtime)
    staging = f"{RESTORE_DIR}/staging"
    with tempfile.TemporaryFile() as times:
        yield from _staged_entries(reader, work, staging, mtime, before_ns, times)
        size = times.tell()
        times.seek(0)
        yield file_header(f"{RESTORE_DIR}/times.jsonl", size, mtime)
        yield from iter(lambda: times.read(CHUNK), b"")
        yield padding(size)
    yield END_OF_ARCHIVE


def _staged_entries(reader, work: Entry, staging: str, mtime: int, before_ns, times):
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
        if entry.mtime not in ENGINE_TIMES:
            times.write(canonical_json([entry.path, entry.mtime]) + b"\n")
        link = f"{staging}/{entry.link}" if entry.kind == HARDLINK else entry.link
        yield tar_header(f"{staging}/{entry.path}", replace(entry, link=link))
        if entry.kind == FILE:
            yield from chunks
            yield padding(entry.size)


def commit_stream(mtime: int):
    """The marker that tells the swap the staged copy is complete and checked."""
    return file_header(f"{RESTORE_DIR}/commit", 0, mtime) + END_OF_ARCHIVE
