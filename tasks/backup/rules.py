"""The rules every entry of a volume archive follows, checked one entry at a time: paths
that stay inside the volume, the engine's walk order, links that point inside, nothing a
volume should not hold; and what a backup writes for an entry so that a restore will take
it. Pure: the unit tier checks each rule alone (tests/unit/test_archive.py)."""
from dataclasses import replace

from tasks.backup.archive import (DIR, FILE, HARDLINK, RESERVED, SYMLINK, ArchiveError,
                                  Entry, Limits, human_bytes, name_bytes, name_text)
from tasks.show import shown

MAX_PATH = 4096  # Linux PATH_MAX
MAX_NAME = 255  # Linux NAME_MAX


def split_path(path: str) -> tuple:
    """The components of a relative path inside a volume, refusing anything that could
    point elsewhere ("/x", "a/../b", "a//b", "./a", NUL) or that Linux cannot hold."""
    if path == ".":
        return ()
    raw = name_bytes(path)
    if not raw:
        raise ArchiveError("an entry has an empty name")
    if b"\x00" in raw:
        raise ArchiveError(f"'{shown(path)}': a NUL byte in a name")
    if raw.startswith(b"/"):
        raise ArchiveError(f"'{shown(path)}': an absolute path")
    if len(raw) > MAX_PATH:
        raise ArchiveError(f"'{shown(path[:60])}'...: a path longer than {MAX_PATH} bytes")
    parts = raw.split(b"/")
    for part in parts:
        if part == b"..":
            raise ArchiveError(f"'{shown(path)}': a '..' component, which could reach outside "
                               "the volume")
        if part in (b"", b"."):
            raise ArchiveError(f"'{shown(path)}': an empty or '.' component")
        if len(part) > MAX_NAME:
            raise ArchiveError(f"'{shown(path[:60])}'...: a name longer than {MAX_NAME} bytes")
    return tuple(parts)


def link_stays_inside(parent: tuple, target: str) -> bool:
    """Whether a relative symlink target, read from the link's folder, names a place inside
    the volume (lexically; nothing is ever written through a link, see TreeChecker)."""
    raw = name_bytes(target)
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
        self.reserved = {name_bytes(name) for name in reserved}
        self.stack = []  # [name, last child name] per open folder, the root first
        self.symlinks = set()
        self.entries = 0
        self.bytes = 0

    def check(self, entry: Entry) -> None:
        parts = split_path(entry.path)
        where = shown(entry.path)
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
            raise ArchiveError(f"{where}: a symlink pointing outside the volume "
                               f"('{shown(entry.link)}')")
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
        where = shown(entry.path)
        try:
            target = split_path(entry.link)
        except ArchiveError as error:
            raise ArchiveError(f"{where}: a hardlink pointing outside the volume ({error})")
        if not target or target >= parts:
            raise ArchiveError(f"{where}: a hardlink to '{shown(entry.link)}', which is not an "
                               "earlier entry of the archive")
        if target == parts[:len(target)]:
            raise ArchiveError(f"{where}: a hardlink to its own folder ('{shown(entry.link)}')")
        if target[0] in self.reserved:
            raise ArchiveError(f"{where}: a hardlink into a folder this tool keeps for itself")
        # link(2) follows symlinks in the folders of the target, not the last name.
        if any(target[:i] in self.symlinks for i in range(1, len(target))):
            raise ArchiveError(f"{where}: a hardlink through a symlink ('{shown(entry.link)}')")


class LinkTargets:
    """What each hardlink points to must be an earlier file (or a symlink, or another
    hardlink, which the engine writes for a symlink or file with more links): link(2)
    refuses a folder, and finds nothing where no entry was. TreeChecker holds only the
    current path, so it cannot tell what an earlier path was; this checks it on a second
    look at the entries, in the same order (a restore's check replays them from its spool
    while comparing the manifest). The first look notes the paths hardlinks name, so
    memory grows with the hardlinks, not with the entries."""

    _KIND_NAMES = {DIR: "a folder", None: "not in the archive"}

    def __init__(self):
        self.wanted = set()
        self.kinds = {}

    def want(self, entry: Entry) -> None:
        """First look: note where a hardlink points."""
        if entry.kind == HARDLINK:
            self.wanted.add(entry.link)

    def see(self, path: str, kind: str, link: str = "") -> None:
        """Second look, in order: refuse a hardlink whose target was no file or link."""
        if kind == HARDLINK:
            found = self.kinds.get(link)
            if found not in (FILE, SYMLINK, HARDLINK):
                what = self._KIND_NAMES.get(found, f"a {found}")
                raise ArchiveError(f"{shown(path)}: a hardlink to '{shown(link)}', which is "
                                   f"{what}: a hardlink must point to an earlier file")
        if path in self.wanted:
            self.kinds[path] = kind


def plan_backup_entry(entry: Entry, problem=None, left_out=frozenset()):
    """What a backup writes for an entry the engine reported: (entry or None, note or None).
    A backup never writes what a restore would refuse, and says what it changed: it leaves
    out symlinks pointing outside the volume (they cannot work after a restore) and
    hardlinks to what it left out, clears setuid/setgid bits and drops file capabilities
    (a restore refuses them). Our own work folders at the root go silently."""
    parts = split_path(entry.path)
    if parts and name_text(parts[0]) in RESERVED:
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
