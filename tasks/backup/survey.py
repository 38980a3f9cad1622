"""What a backup must know about a volume before it streams it, and the engine's archive
API does not say: how much data its files hold (holes not counted), and which of them are
sparse.

helper.py runs this file's source with `python3 -I -c SOURCE MOUNTPOINT` in a short-lived
container that mounts the volume read-only, with no network and no capability but
DAC_READ_SEARCH (to read every folder). It reads names and stats and never a file's
content. Standard library only: the hub's image has none of this project; the backup reads
its output with `Findings.parse`.

A sparse file is longer than twice the data it holds plus 1 MiB: its holes read as zeros.
`truncate -s 10T big` makes one in an instant, and the engine would stream all 10 TiB of
its zeros into the archive. A backup leaves such files out (helper.shadowed_reader).

It prints JSON lines, names decoded as UTF-8 with surrogateescape (a name that is not
UTF-8 keeps its bytes):

    {"sparse": [path, length, data]}        each sparse file (each of its names)
    {"data": n, "files": n, "complete": b}  last: the data the files hold, each file once;
                                            complete is false past MAX_SPARSE sparse files
"""
import errno
import json
import os
import stat
import sys
from dataclasses import dataclass, field

SLACK = 1 << 20
MAX_SPARSE = 1000
MAX_EXTENTS = 100_000  # data extents looked at in one file
# A backup's file data stays within DATA_FACTOR times the data the volume's files hold
# plus DATA_SLACK (for files that grow while it runs); beyond that it stops (writing.py).
DATA_FACTOR = 2
DATA_SLACK = 64 << 20


def is_sparse(length, data):
    return length > 2 * data + SLACK


def data_bytes(path, info):
    """The bytes a file holds, holes not counted. A file that takes at least its length on
    disk holds all of it; one that takes less may have holes (or a file system that
    compresses): its data extents say (SEEK_DATA, SEEK_HOLE). Whatever cannot be told
    counts as data, so a file is never taken for sparse by mistake."""
    if info.st_blocks * 512 >= info.st_size:
        return info.st_size
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError:
        return info.st_size
    try:
        data, position = 0, 0
        for _ in range(MAX_EXTENTS):
            if position >= info.st_size:
                return data
            try:
                start = os.lseek(fd, position, os.SEEK_DATA)
            except OSError as error:
                # ENXIO: a hole from here to the end; anything else: it cannot be told
                return data if error.errno == errno.ENXIO else info.st_size
            position = os.lseek(fd, start, os.SEEK_HOLE)
            data += position - start
        return data + max(info.st_size - position, 0)
    except OSError:
        return info.st_size
    finally:
        os.close(fd)


def text(raw):
    return raw.decode("utf-8", "surrogateescape")


class Survey:
    def __init__(self, root, out):
        self.root, self.out = root, out
        self.data = self.files = self.sparse = 0
        self.inodes = {}  # data of each file with more than one link, counted once

    def emit(self, record):
        self.out.write(json.dumps(record, ensure_ascii=True) + "\n")

    def visit(self, rel):
        """Walk one folder (rel: its path below the root, b"" for the root)."""
        try:
            names = sorted(os.listdir(os.path.join(self.root, rel) if rel else self.root))
        except OSError:
            return  # gone meanwhile: the engine's walk will not find it either
        for name in names:
            child = rel + b"/" + name if rel else name
            path = os.path.join(self.root, child)
            try:
                info = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISDIR(info.st_mode):
                self.visit(child)
            elif stat.S_ISREG(info.st_mode):
                self.file(child, path, info)

    def file(self, child, path, info):
        inode = (info.st_dev, info.st_ino)
        if inode in self.inodes:  # another name of a file already counted
            held = self.inodes[inode]
        else:
            held = data_bytes(path, info)
            self.files += 1
            self.data += held
            if info.st_nlink > 1:
                self.inodes[inode] = held
        if is_sparse(info.st_size, held):
            self.sparse += 1
            if self.sparse <= MAX_SPARSE:
                self.emit({"sparse": [text(child), info.st_size, held]})

    def run(self):
        self.visit(b"")
        self.emit({"data": self.data, "files": self.files,
                   "complete": self.sparse <= MAX_SPARSE})


@dataclass
class Findings:
    """What the survey printed, read back by the backup."""
    data: int = 0  # bytes the volume's files hold, holes not counted
    files: int = 0
    complete: bool = True  # every sparse file listed
    sparse: dict = field(default_factory=dict)  # path: (length, data)

    @property
    def data_cap(self):
        return DATA_FACTOR * self.data + DATA_SLACK

    @classmethod
    def parse(cls, output):
        """Read the survey's lines; ValueError if its last line (the totals) is missing."""
        found, totals = cls(), None
        for line in output.splitlines():
            record = json.loads(line)
            if "sparse" in record:
                path, length, data = record["sparse"]
                found.sparse[path] = (int(length), int(data))
            elif "data" in record:
                totals = record
        if totals is None:
            raise ValueError("the survey printed no totals")
        found.data, found.files = int(totals["data"]), int(totals["files"])
        found.complete = totals["complete"] is True
        return found


def main(argv):
    sys.setrecursionlimit(10_000)  # a frame a folder: paths reach 4096 bytes, 2048 deep
    Survey(os.fsencode(argv[1]), sys.stdout).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
