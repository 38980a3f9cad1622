"""Archives made by hand for the tests: well-formed ones, and hostile ones that are
well-formed in every way but one, so each refusal is proven to come from its own check.

Used by the unit tier (tests/unit/test_archive.py, against the reader) and the integration
tier (tests/integration/test_backup.py, through `inv restore` onto a real volume).
"""
import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field

from tasks.backup import archive as fmt
from tasks.backup import store

MTIME = 1_700_000_000
TYPES = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
         "hardlink": tarfile.LNKTYPE, "chr": tarfile.CHRTYPE, "blk": tarfile.BLKTYPE,
         "fifo": tarfile.FIFOTYPE}


@dataclass
class Member:
    name: str  # the member's name in the tar, e.g. "data/notes.txt"
    kind: str = "file"
    data: bytes = b""
    mode: int = 0o644
    uid: int = 1000
    gid: int = 100
    mtime: int = MTIME
    link: str = ""
    pax: dict = field(default_factory=dict)
    size: int = -1  # the size the header claims; -1: len(data)


def header(m: Member) -> bytes:
    info = tarfile.TarInfo(m.name)
    info.type = TYPES[m.kind]
    info.mode, info.uid, info.gid, info.mtime = m.mode, m.uid, m.gid, m.mtime
    info.size = len(m.data) if m.size < 0 else m.size
    info.linkname = m.link
    info.uname = info.gname = ""
    info.pax_headers = dict(m.pax)
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def record(m: Member) -> dict:
    """The manifest line a member gets (the members here live under data/)."""
    path = "." if m.name == fmt.DATA else m.name[len(fmt.DATA) + 1:]
    kind = m.kind
    link = m.link[len(fmt.DATA) + 1:] if m.kind == "hardlink" and m.link.startswith("data/") \
        else m.link
    entry = fmt.Entry(path=path, kind=kind, mode=m.mode, uid=m.uid, gid=m.gid, mtime=m.mtime,
                      size=len(m.data) if kind == "file" else 0, link=link,
                      sha256=hashlib.sha256(m.data).hexdigest())
    return entry.record()


def metadata(kind="user", user="alice", volume="proj-user-alice", **extra) -> dict:
    meta = {"format": fmt.FORMAT, "version": fmt.FORMAT_VERSION, "kind": kind,
            "user": user if kind == "user" else None, "volume": volume, "project": "proj",
            "tool": "tests", "created": "2023-11-14T22:13:20Z"}
    meta.update(extra)
    return meta


def make_archive(members, *, meta=None, manifest=None, edit_manifest=None, after_manifest=(),
                 trailer=b"", compress=False) -> bytes:
    """An archive of `members`; its manifest matches them unless given or edited."""
    out = io.BytesIO()
    meta_bytes = fmt.canonical_json(metadata() if meta is None else meta) + b"\n"
    out.write(fmt.file_header(fmt.METADATA, len(meta_bytes), MTIME))
    out.write(meta_bytes + fmt.padding(len(meta_bytes)))
    for m in members:
        out.write(header(m))
        out.write(m.data + fmt.padding(len(m.data)))
    if manifest is None:
        lines = [record(m) for m in members]
        lines.append({"end": True, "entries": len(members),
                      "bytes": sum(len(m.data) for m in members if m.kind == "file"),
                      "metadata_sha256": hashlib.sha256(meta_bytes).hexdigest()})
        if edit_manifest:
            edit_manifest(lines)
        manifest = b"".join(fmt.canonical_json(line) + b"\n" for line in lines)
    out.write(fmt.file_header(fmt.MANIFEST, len(manifest), MTIME))
    out.write(manifest + fmt.padding(len(manifest)))
    for m in after_manifest:
        out.write(header(m))
        out.write(m.data + fmt.padding(len(m.data)))
    out.write(fmt.END_OF_ARCHIVE + trailer)
    data = out.getvalue()
    return gzip.compress(data, 1, mtime=0) if compress else data


def volume(*more) -> list:
    """A small volume as a user has it, uid 1000, plus `more` members."""
    return [
        Member("data", "dir", mode=0o755),
        Member("data/notes.txt", data=b"hello\n"),
        Member("data/sub", "dir", mode=0o755),
        Member("data/sub/a.py", data=b"print(1)\n"),
        *more,
    ]


def _set_sha(lines, path, value):
    for line in lines:
        if line.get("path") == path:
            line["sha256"] = value


def _set(lines, path, key, value):
    for line in lines:
        if line.get("path") == path:
            line[key] = value


def _hardlink(link: str, words: str) -> tuple:
    """The small volume and a hardlink `data/zhard` to `link`: (archive, words)."""
    return make_archive(volume(Member("data/zhard", "hardlink", link=link))), words


# name: (archive bytes, words the refusal must contain)
HOSTILE = {
    "absolute-path": (make_archive(volume(Member("/etc/cron.d/evil", data=b"x"))),
                      "outside the archive's data/ folder"),
    "dotdot-path": (make_archive(volume(Member("data/../../etc/evil", data=b"x"))),
                    "'..' component"),
    "dotdot-inside": (make_archive(volume(Member("data/sub/../../x", data=b"x"))),
                      "'..' component"),
    "symlink-absolute": (make_archive(volume(Member("data/zlink", "symlink", mode=0o777,
                                                   link="/etc/shadow"))),
                         "symlink pointing outside the volume"),
    "symlink-up": (make_archive(volume(Member("data/zlink", "symlink", mode=0o777,
                                             link="sub/../../../etc"))),
                   "symlink pointing outside the volume"),
    "hardlink-outside": _hardlink("etc/passwd", "hardlink pointing outside the volume"),
    "hardlink-dotdot": _hardlink("data/../etc/passwd", "hardlink pointing outside the volume"),
    "hardlink-to-folder": _hardlink("data/sub", "zhard: a hardlink to 'sub', which is a folder"),
    "hardlink-to-nothing": _hardlink("data/nothere",
                                     "zhard: a hardlink to 'nothere', which is not in the archive"),
    "write-through-symlink": (make_archive(volume(
        Member("data/tmp", "symlink", mode=0o777, link="sub"),
        Member("data/tmp/x", data=b"x"))), "without its folder before it"),
    "char-device": (make_archive(volume(Member("data/zero", "chr", mode=0o666))),
                    "character device"),
    "block-device": (make_archive(volume(Member("data/disk", "blk", mode=0o660))),
                     "block device"),
    "fifo": (make_archive(volume(Member("data/pipe", "fifo"))), "named pipe"),
    "setuid": (make_archive(volume(Member("data/zsh", data=b"#!", mode=0o4755))),
               "setuid or setgid"),
    "setgid-dir": (make_archive(volume(Member("data/zshared", "dir", mode=0o2775))),
                   "setuid or setgid"),
    "file-capability": (make_archive(volume(Member(
        "data/zcap", data=b"x", pax={"SCHILY.xattr.security.capability": "\x01"}))),
        "file capabilities"),
    "checksum-mismatch": (make_archive(volume(), edit_manifest=lambda lines: _set_sha(
        lines, "notes.txt", hashlib.sha256(b"something else").hexdigest())),
        "notes.txt: does not match the manifest (sha256"),
    "owner-mismatch": (make_archive(volume(), edit_manifest=lambda lines: _set(
        lines, "sub/a.py", "uid", 0)), "sub/a.py: does not match the manifest (uid"),
    "manifest-missing-entry": (make_archive(volume(), edit_manifest=lambda lines: lines.pop(1)),
                               "does not match the manifest"),
    "truncated": (make_archive(volume(Member("data/zbig", data=bytes(200_000))))[:150_000],
                  "truncated"),
    "truncated-no-manifest": (make_archive(volume())[:512 * 9], "truncated"),
    "duplicate-entry": (make_archive(volume(Member("data/sub/a.py", data=b"again"))),
                        "listed twice or out of order"),
    "member-after-manifest": (make_archive(volume(), after_manifest=[
        Member("data/zlate", data=b"x")]), "member after the manifest"),
    "data-after-end": (make_archive(volume(), trailer=b"\x00" * 512 + b"junk"),
                       "data after the end of the archive"),
    "not-our-format": (make_archive(volume(), meta={"format": "something-else"}),
                       "not a jupyterhub-deploy-backup archive"),
    "newer-format": (make_archive(volume(), meta=metadata(version=fmt.FORMAT_VERSION + 1)),
                     "newer than this tool knows"),
}

# The reserved name sorts first among the root's entries, so it leads the root folder.
HOSTILE["reserved-name"] = (make_archive([
    Member("data", "dir", mode=0o755),
    Member("data/.jupyterhub-deploy-restore", "dir", mode=0o700),
    Member("data/notes.txt", data=b"hello\n"),
]), "keeps for itself")


def oversized(limit: int) -> bytes:
    """A well-formed archive holding more than `limit` bytes (of zeros: it compresses)."""
    return make_archive(volume(Member("data/zbig", data=bytes(limit + 1))), compress=True)


def sidecar(data: bytes, name: str) -> str:
    return store.sidecar_text(hashlib.sha256(data).hexdigest(), name)


def manifest_lines(data: bytes) -> list:
    """The manifest of an archive, parsed (for tests that read one back)."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        raw = tar.extractfile(fmt.MANIFEST).read()
    return [json.loads(line) for line in raw.splitlines()]
