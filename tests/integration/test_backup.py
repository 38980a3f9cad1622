"""`inv backup` and `inv restore` on the real engine: byte-identical round trips, hostile
archives and hostile names refused with the target untouched, a backup killed mid-stream,
a restore killed mid-stream, two operations at once, and the hub's database backed up
while the hub serves requests, then restored into a fresh deployment.

Volumes are made and read here through the Docker archive API with the standard library's
tarfile, independently of the code under test. Every object carries the project label of
its copy and is removed by that label.
"""
import hashlib
import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tarfile
import threading
import time
import uuid

import docker
import pytest
import requests
from docker.types import Mount

from conftest import remove_labelled
from deployment_support import (Deployment, backed_up, copy_project, file_sha256, free_port,
                                lend_images)
from hubclient import HubClient
from tests import archives

pytestmark = pytest.mark.integration

LABEL = "org.jupyterhub-deploy"
T0 = 1_700_000_000


# --- copies of the project and their volumes -----------------------------------------------------

def new_copy(tmp_path_factory, client, copies):
    project = f"jhb{uuid.uuid4().hex[:8]}"
    root = copy_project(tmp_path_factory.mktemp(project))
    copy = Deployment(root=root, project=project, port=free_port(),
                      env={"COMPOSE_PROJECT_NAME": project})
    copy.env["HUB_PORT"] = str(copy.port)
    copies.append(copy)
    lend_images(client, project)  # backups work through the hub's image; none is built here
    return copy


@pytest.fixture(scope="module")
def copies(docker_client):
    made = []
    yield made
    for copy in made:
        remove_labelled(docker_client, copy.project)


@pytest.fixture(scope="module")
def p1(tmp_path_factory, docker_client, copies):
    return new_copy(tmp_path_factory, docker_client, copies)


@pytest.fixture(scope="module")
def p2(tmp_path_factory, docker_client, copies):
    return new_copy(tmp_path_factory, docker_client, copies)


def escape(name: str) -> str:
    """DockerSpawner's escaping, written out here on purpose (the unit tier proves
    tasks.names equal to DockerSpawner's own)."""
    safe = set("abcdefghijklmnopqrstuvwxyz0123456789")
    return "".join(c if c in safe else "".join(f"-{b:x}" for b in c.encode()) for c in name)


def volume_name(copy, user):
    return f"{copy.project}-user-{escape(user)}"


def helper(client, copy, volume):
    return client.containers.create(
        copy.image("hub"), labels={f"{LABEL}.project": copy.project},
        mounts=[Mount("/v", volume, type="volume", no_copy=True)], network_disabled=True)


def tar_stream(members):
    """A tar of (TarInfo, bytes or an iterable of chunks) as a generator of chunks."""
    for info, body in members:
        yield info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        if info.type == tarfile.REGTYPE:
            if isinstance(body, bytes):
                yield body
            else:
                yield from body
            yield bytes(-info.size % 512)
    yield bytes(1024)


def put(client, copy, volume, members, labelled_user=None):
    """Create the volume (labelled as the hub labels users' volumes) and fill it."""
    labels = {f"{LABEL}.project": copy.project}
    if labelled_user is not None:
        labels.update({f"{LABEL}.role": "user-volume", f"{LABEL}.user": labelled_user})
    try:
        client.volumes.get(volume)
    except docker.errors.NotFound:
        client.volumes.create(volume, labels=labels)
    box = helper(client, copy, volume)
    try:
        assert box.put_archive("/v", tar_stream(members))
    finally:
        box.remove()


def entry(name, kind=tarfile.REGTYPE, body=b"", mode=0o644, uid=1000, gid=100, mtime=T0,
          link=""):
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid, info.mtime = kind, mode, uid, gid, mtime
    info.size = len(body) if isinstance(body, bytes) else 0
    info.linkname = link
    return info, body


def big_entry(name, size, mtime=T0):
    info, _ = entry(name, mtime=mtime)
    info.size = size

    def chunks():
        block = bytes(range(256)) * 4096  # 1 MiB, not all zeros
        left = size
        while left:
            yield block[:min(left, len(block))]
            left -= min(left, len(block))
    return info, chunks()


def snapshot(client, copy, volume):
    """Every entry of a volume, root included: type, mode, owner, size, mtime, link, sha256."""
    box = helper(client, copy, volume)
    try:
        chunks, _ = box.get_archive("/v")
        raw = io.BufferedReader(_ChunkReader(chunks), 1 << 20)
        out = {}
        with tarfile.open(fileobj=raw, mode="r|", encoding="utf-8",
                          errors="surrogateescape") as tar:
            for member in tar:
                digest = hashlib.sha256()
                if member.isfile():
                    source = tar.extractfile(member)
                    for block in iter(lambda: source.read(1 << 20), b""):
                        digest.update(block)
                out[member.name] = (member.type, member.mode & 0o7777, member.uid, member.gid,
                                    member.size, member.mtime, member.linkname,
                                    digest.hexdigest() if member.isfile() else "")
        return out
    finally:
        box.remove()


class _ChunkReader(io.RawIOBase):
    def __init__(self, chunks):
        self.chunks, self.pending = chunks, b""

    def readable(self):
        return True

    def readinto(self, buffer):
        while not self.pending:
            self.pending = next(self.chunks, b"")
            if not self.pending:
                return 0
        n = min(len(buffer), len(self.pending))
        buffer[:n], self.pending = self.pending[:n], self.pending[n:]
        return n


def engine_state(client, *copies):
    """What must not change when a task refuses: the copies' containers and volumes."""
    state = {}
    for copy in copies:
        filters = {"label": f"{LABEL}.project={copy.project}"}
        state[copy.project] = (
            sorted((c.name, c.status) for c in client.containers.list(all=True, filters=filters)),
            sorted(v.name for v in client.volumes.list(filters=filters)),
            sorted(p.name for p in (copy.root / "backups").glob("*"))
            if (copy.root / "backups").exists() else [])
    return state


# --- a volume as users have them -----------------------------------------------------------------

SMALL_FILES = 600
ODD_NAMES = ["with space.txt", "caf\u00e9 \u65e5\u672c \U0001F389.md", "tab\there", "new\nline",
             "bytes-\udcff\udcfe", "-rf", "$(id)", "a;b"]


def rich_volume():
    members = [entry(".", tarfile.DIRTYPE, mode=0o755, mtime=T0 + 5)]
    members.append(big_entry("big.bin", 32 << 20, mtime=T0 + 7))
    members.append(entry("data", tarfile.DIRTYPE, mode=0o750, mtime=T0 + 9))
    for i in range(SMALL_FILES):
        body = hashlib.sha256(str(i).encode()).digest() * (1 + i % 40)
        members.append(entry(f"data/f{i:04}.txt", body=body, mode=0o600 if i % 7 else 0o640,
                             mtime=T0 + i))
    members.append(entry("data/medium.bin", body=os.urandom(3 << 20), mtime=T0 + 11))
    members.append(entry("empty", tarfile.DIRTYPE, mode=0o700, mtime=T0 + 13))
    members.append(entry("empty/deeper", tarfile.DIRTYPE, mode=0o755, mtime=T0 + 14))
    members.append(entry("hard", tarfile.LNKTYPE, link="data/medium.bin", mtime=T0 + 11))
    members.append(entry("link-to-data", tarfile.SYMTYPE, mode=0o777, link="data/f0001.txt"))
    members.append(entry("link-up", tarfile.SYMTYPE, mode=0o777, link="empty/deeper/.."))
    members.append(entry("dangling", tarfile.SYMTYPE, mode=0o777, link="not/there"))
    members.append(entry("root-owned", body=b"root's\n", uid=0, gid=0, mtime=T0 + 3))
    members.append(entry("shared", tarfile.DIRTYPE, mode=0o1777, mtime=T0 + 4))
    for i, name in enumerate(ODD_NAMES):
        members.append(entry(name, body=name.encode("utf-8", "surrogateescape"), mtime=T0 + i))
    return members


@pytest.fixture(scope="module")
def alice(docker_client, p1):
    volume = volume_name(p1, "alice")
    put(docker_client, p1, volume, rich_volume(), labelled_user="alice")
    return volume


@pytest.fixture(scope="module")
def alice_archive(p1, alice):
    result = p1.inv_ok("backup", "--user", "alice")
    [(path, size, digest)] = backed_up(result)
    return p1.root / path, size, digest, result


# --- round trips -----------------------------------------------------------------------------------

def test_backup_prints_path_size_and_checksum_of_a_complete_archive(p1, alice_archive):
    path, size, digest, result = alice_archive
    print(f"inv backup of a {SMALL_FILES + 20}-entry, 36 MB volume: {result.seconds:.1f} s")
    assert path.parent == p1.root / "backups" and path.name.startswith(f"{p1.project}-user-alice-")
    assert path.stat().st_size == size and file_sha256(path) == digest
    sidecar = path.with_name(path.name + ".sha256")
    assert sidecar.read_text() == f"{digest}  {path.name}\n"
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)
    assert oct((p1.root / "backups").stat().st_mode & 0o777) == oct(0o700)
    assert not list((p1.root / "backups").glob("*.partial"))
    with tarfile.open(path, encoding="utf-8", errors="surrogateescape") as tar:
        names = tar.getnames()
        meta = json.loads(tar.extractfile("jupyterhub-deploy-backup.json").read())
    assert names[0] == "jupyterhub-deploy-backup.json" and names[-1] == "manifest.jsonl"
    assert meta["kind"] == "user" and meta["user"] == "alice"
    assert meta["volume"] == f"{p1.project}-user-alice" and meta["project"] == p1.project
    assert meta["tool"].startswith("jupyterhub-deploy ") and meta["created"].endswith("Z")
    manifest = archives.manifest_lines(path.read_bytes())
    assert len(manifest) == len(names) - 2 + 1  # every data entry, and the end line
    assert {"path": "root-owned", "type": "file", "size": 7, "mode": "0644", "uid": 0,
            "gid": 0, "mtime": T0 + 3,
            "sha256": hashlib.sha256(b"root's\n").hexdigest()} in manifest
    listing = p1.inv_ok("backup", "--list").stdout
    assert path.name in listing and "user alice" in listing


def test_round_trip_onto_another_deployment_is_byte_identical(docker_client, p1, p2, alice,
                                                               alice_archive):
    """Restoring onto another project is moving a user: the volume is made (labelled),
    and holds exactly what alice's held: content, modes, owners (1000 stays 1000), times,
    symlinks, the hardlink, empty folders, odd names."""
    path = alice_archive[0]
    result = p2.inv_ok("restore", "--user", "alice", "--from", str(path))
    print(f"inv restore of the same volume: {result.seconds:.1f} s")
    assert f"restored user alice (volume {p2.project}-user-alice)" in result.stdout
    source, copy = snapshot(docker_client, p1, alice), snapshot(docker_client, p2,
                                                                 volume_name(p2, "alice"))
    assert copy == source
    assert source["v/root-owned"][2:4] == (0, 0) and source["v/data/f0001.txt"][2] == 1000
    assert source["v/hard"][0] == tarfile.LNKTYPE
    made = docker_client.volumes.get(volume_name(p2, "alice"))
    assert made.attrs["Labels"] == {f"{LABEL}.project": p2.project, f"{LABEL}.role": "user-volume",
                                    f"{LABEL}.user": "alice"}
    assert not docker_client.containers.list(all=True, filters={
        "label": f"{LABEL}.project={p2.project}"})  # the helper is gone


def test_restore_refuses_a_volume_with_files_unless_forced(docker_client, p1, alice,
                                                            alice_archive):
    path = alice_archive[0]
    before = snapshot(docker_client, p1, alice)
    result = p1.inv("restore", "--user", "alice", "--from", path.name)
    assert result.returncode != 0 and "already holds files" in result.output
    assert "--force" in result.output and "Traceback" not in result.output
    assert snapshot(docker_client, p1, alice) == before
    # Changed work is replaced as a whole by --force: extra files go, changed ones come back.
    put(docker_client, p1, alice, [entry("extra.txt", body=b"new"),
                                   entry("data/f0002.txt", body=b"changed", mtime=T0 + 99)])
    p1.inv_ok("restore", "--user", "alice", "--force", "--from", path.name)
    assert snapshot(docker_client, p1, alice) == before


def test_compressed_round_trip(docker_client, p1, p2, alice):
    result = p1.inv_ok("backup", "--user", "alice", "--compress")
    [(path, size, _)] = backed_up(result)
    assert path.endswith(".tar.gz") and (p1.root / path).read_bytes()[:2] == b"\x1f\x8b"
    p2.inv_ok("restore", "--user", "alice", "--force", "--from", str(p1.root / path))
    assert snapshot(docker_client, p2, volume_name(p2, "alice")) == snapshot(docker_client, p1,
                                                                             alice)


def test_restore_refused_while_the_users_server_runs_unless_forced(docker_client, p1, alice,
                                                                    alice_archive):
    path = alice_archive[0]
    server = docker_client.containers.run(
        "jupyterhub-deploy-base:bookworm", ["sleep", "300"], detach=True,
        name=f"{p1.project}-user-alice", labels={
            f"{LABEL}.project": p1.project, f"{LABEL}.role": "user-server",
            f"{LABEL}.user": "alice"})
    try:
        before = snapshot(docker_client, p1, alice)
        result = p1.inv("restore", "--user", "alice", "--from", path.name)
        assert result.returncode != 0 and "alice's server" in result.output
        assert "is running" in result.output and "--force" in result.output
        assert snapshot(docker_client, p1, alice) == before
        result = p1.inv_ok("restore", "--user", "alice", "--force", "--from", path.name)
        assert "restart it" in result.stdout
        assert snapshot(docker_client, p1, alice) == before
    finally:
        server.remove(force=True)


def run_in(client, copy, volume, script):
    """`sh -c script` in a container that mounts the volume at /v; its output."""
    return client.containers.run(
        "jupyterhub-deploy-base:bookworm", ["sh", "-c", script], remove=True,
        labels={f"{LABEL}.project": copy.project}, network_disabled=True,
        mounts=[Mount("/v", volume, type="volume", no_copy=True)]).decode()


def precise_times(client, copy, volume):
    """Every entry's modification time with its fraction, as the file system holds it."""
    out = run_in(client, copy, volume, r"find /v -printf '%P\t%T@\n'")
    return {path or ".": float(when) for path, when in
            (line.split("\t") for line in out.splitlines())}


def test_times_come_back_as_the_manifest_records_them_before_1970_too(docker_client, p1, p2):
    """Times before 1970 come back (the engine alone would give 1970-01-01); a sub-second
    part never reaches a backup (the engine's archive API sends whole seconds), so what
    comes back is the whole second the manifest holds."""
    volume = volume_name(p1, "old")
    put(docker_client, p1, volume, [entry(".", tarfile.DIRTYPE, mode=0o755, mtime=T0)],
        labelled_user="old")
    run_in(docker_client, p1, volume, "cd /v && echo a > old.txt && mkdir olddir && "
           "echo b > olddir/in.txt && ln -s old.txt oldlink && echo c > frac.txt && "
           "touch -d '1969-12-31 23:59:59.5 UTC' old.txt && "
           "touch -d '1960-05-01 12:00:00 UTC' olddir/in.txt && "
           "touch -h -d '1955-01-01 UTC' oldlink && "
           "touch -d '2020-01-01 00:00:00.75 UTC' frac.txt && "
           "touch -d '1950-01-01 UTC' olddir && touch -d '1940-01-01 UTC' .")
    result = p1.inv_ok("backup", "--user", "old")
    [(path, _, _)] = backed_up(result)
    recorded = {line["path"]: line["mtime"] for line in
                archives.manifest_lines((p1.root / path).read_bytes()) if "path" in line}
    assert recorded == {".": -946771200, "frac.txt": 1577836800, "old.txt": -1,
                        "olddir": -631152000, "olddir/in.txt": -305121600,
                        "oldlink": -473385600}
    p2.inv_ok("restore", "--user", "old", "--from", str(p1.root / path))
    assert precise_times(docker_client, p2, volume_name(p2, "old")) == {
        key: float(value) for key, value in recorded.items()}


# --- hostile archives ---------------------------------------------------------------------------------

def _other(kind="user", user="bob", **meta):
    return archives.make_archive(archives.volume(), meta=archives.metadata(kind, user, **meta))


HOSTILE = {name: (data, words, ()) for name, (data, words) in archives.HOSTILE.items()}
HOSTILE.update({
    "too-big-for-the-cap": (archives.oversized(5 << 20), "past the size limit",
                            ("--max-size", "5M")),
    "hub-archive-as-user": (_other("hub", None, volume="p-hub-data"),
                            "restore it with --hub", ()),
    "someone-elses-archive": (_other(), "bob's backup, not alice's", ()),
})


@pytest.fixture(scope="module")
def p3(tmp_path_factory, docker_client, copies):
    return new_copy(tmp_path_factory, docker_client, copies)


@pytest.fixture(scope="module")
def target(docker_client, p3):
    """alice's volume in a third copy, which every hostile archive (all alice's) is aimed
    at: (name, its snapshot); it must come out untouched every time."""
    volume = volume_name(p3, "alice")
    put(docker_client, p3, volume, [entry(".", tarfile.DIRTYPE, mode=0o755, mtime=T0),
                                    entry("keep.txt", body=b"precious\n", mtime=T0 + 1),
                                    entry("sub", tarfile.DIRTYPE, mtime=T0 + 2),
                                    entry("sub/x", body=b"x", mtime=T0 + 3)],
        labelled_user="alice")
    return volume, snapshot(docker_client, p3, volume)


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archive_is_refused_and_the_target_untouched(docker_client, p3, target, case):
    data, words, flags = HOSTILE[case]
    target, before = target
    folder = p3.root / "backups"
    folder.mkdir(exist_ok=True)
    name = f"hostile-{case}.tar"
    (folder / name).write_bytes(data)
    (folder / f"{name}.sha256").write_text(archives.sidecar(data, name))
    state = engine_state(docker_client, p3)
    result = p3.inv("restore", "--user", "alice", "--force", "--from", name, *flags)
    assert result.returncode != 0, result.output
    assert words in result.output, result.output
    assert "Traceback" not in result.output
    assert snapshot(docker_client, p3, target) == before
    assert engine_state(docker_client, p3) == state


def test_a_changed_archive_or_a_missing_checksum_file_is_refused(docker_client, p3, target):
    target, before = target
    good = archives.make_archive(archives.volume())
    folder = p3.root / "backups"
    folder.mkdir(exist_ok=True)
    (folder / "changed.tar").write_bytes(good)
    (folder / "changed.tar.sha256").write_text(archives.sidecar(good + b"x", "changed.tar"))
    (folder / "lonely.tar").write_bytes(good)
    for name, words in [("changed.tar", "changed or is damaged"),
                        ("lonely.tar", "has no checksum file lonely.tar.sha256"),
                        ("nowhere.tar", "No backup nowhere.tar")]:
        result = p3.inv("restore", "--user", "alice", "--force", "--from", name)
        assert result.returncode != 0 and words in result.output, result.output
        assert "Traceback" not in result.output
    assert snapshot(docker_client, p3, target) == before
    # The same archive with a true checksum file goes through: the refusals above were
    # about the checksum alone.
    (folder / "changed.tar.sha256").write_text(archives.sidecar(good, "changed.tar"))
    p3.inv_ok("restore", "--user", "alice", "--force", "--from", "changed.tar")
    after = snapshot(docker_client, p3, target)
    assert sorted(after) == ["v", "v/notes.txt", "v/sub", "v/sub/a.py"]


TERMINAL_TRAPS = "\x1b]0;pwned\x07\x1b[2J"  # retitles the window, then clears the screen


def test_names_from_archives_and_volumes_reach_the_terminal_escaped(docker_client, p3, target):
    """A crafted archive's user and member names, and a volume's file names, are shown
    with their control characters escaped: no raw ESC reaches the operator's terminal."""
    target = target[0]
    before = snapshot(docker_client, p3, target)  # an earlier test restored into it
    folder = p3.root / "backups"
    folder.mkdir(exist_ok=True)
    crafted = {
        f"{p3.project}-user-x-20260101T000000Z.tar": archives.make_archive(
            archives.volume(), meta=archives.metadata(user=TERMINAL_TRAPS)),
        "member.tar": archives.make_archive(archives.volume(archives.Member(
            f"data/{TERMINAL_TRAPS}", data=b"#!", mode=0o4755))),
    }
    for name, data in crafted.items():
        (folder / name).write_bytes(data)
        (folder / f"{name}.sha256").write_text(archives.sidecar(data, name))
    escaped = "\\x1b]0;pwned\\x07\\x1b[2J"
    listing = p3.inv_ok("backup", "--list")
    assert f"user {escaped}" in listing.stdout
    wrong_user = p3.inv("restore", "--user", "alice", "--force", "--from", next(iter(crafted)))
    assert wrong_user.returncode != 0 and f"{escaped}'s backup, not alice's" in wrong_user.output
    setuid = p3.inv("restore", "--user", "alice", "--force", "--from", "member.tar")
    assert setuid.returncode != 0 and f"{escaped}: a setuid or setgid bit" in setuid.output
    assert snapshot(docker_client, p3, target) == before
    # A file name in a volume, in the note a backup prints about what it left out.
    volume = volume_name(p3, "esc")
    put(docker_client, p3, volume, [entry(TERMINAL_TRAPS, tarfile.SYMTYPE, mode=0o777,
                                          link="/etc/passwd")], labelled_user="esc")
    noted = p3.inv_ok("backup", "--user", "esc")
    assert f"left out a symlink pointing outside the volume: 1 ('{escaped}')" in noted.stdout
    for result in (listing, wrong_user, setuid, noted):
        assert "\x1b" not in result.output, result.output


# --- hostile names --------------------------------------------------------------------------------------

REFUSED_NAMES = ["../etc", "a;rm -rf /", "$(id)", "-rf", "a" * 65, "x" * 300, "Alice",
                 "j\u00fcrgen", "\u65e5\u672c", "a b", "a/b", "", ".hidden", "a\nb"]
MAPPED_NAMES = {"a.b": "a-2eb", "x_y": "x-5fy", "a-b": "a-2db", "0day": "0day",
                "z" * 64: "z" * 64}


@pytest.mark.parametrize("name", REFUSED_NAMES)
def test_a_hostile_name_is_refused_before_anything_changes(docker_client, p1, alice_archive,
                                                             name):
    state = engine_state(docker_client, p1)
    for args in (["backup", f"--user={name}"], ["restore", f"--user={name}", "--force",
                                                 "--from", alice_archive[0].name]):
        result = p1.inv(*args)
        assert result.returncode != 0
        if name:
            assert "is not a valid user name" in result.output, result.output
        assert "Traceback" not in result.output
    assert engine_state(docker_client, p1) == state


def test_a_name_that_looks_like_a_flag_is_refused(docker_client, p1):
    state = engine_state(docker_client, p1)
    result = p1.inv("backup", "--user", "-rf")
    # Taken as the name (not as flags) and refused by the name check, before anything runs.
    assert (result.returncode, result.output.splitlines()) == (1, [
        "'-rf' is not a valid user name: lowercase letters, digits, '.', '_' or '-', starting "
        "with a letter or digit, at most 64 characters."])
    assert engine_state(docker_client, p1) == state


def test_valid_names_map_to_dockerspawners_volumes_and_nothing_else(docker_client, p1):
    for name, escaped in MAPPED_NAMES.items():
        put(docker_client, p1, f"{p1.project}-user-{escaped}",
            [entry("who", body=name.encode())], labelled_user=name)
    # Decoys: the names unescaped. A backup must never read them.
    for name in ("a.b", "x_y"):
        put(docker_client, p1, f"{p1.project}-user-{name}", [entry("who", body=b"decoy")])
    for name, escaped in MAPPED_NAMES.items():
        result = p1.inv_ok("backup", f"--user={name}")
        [(path, _, _)] = backed_up(result)
        with tarfile.open(p1.root / path) as tar:
            assert tar.extractfile("data/who").read() == name.encode()
            meta = json.loads(tar.extractfile("jupyterhub-deploy-backup.json").read())
        assert meta["volume"] == f"{p1.project}-user-{escaped}" and meta["user"] == name
    # A name with no volume: a clear message, nothing made.
    state = engine_state(docker_client, p1)
    result = p1.inv("backup", "--user", "nobody")
    assert result.returncode != 0 and f"No volume {p1.project}-user-nobody" in result.output
    assert engine_state(docker_client, p1) == state


# --- interruptions and two at once --------------------------------------------------------------------

def start_inv(copy, *args):
    env = {**os.environ, **copy.env}
    return subprocess.Popen([sys.executable, "-m", "invoke", *args], cwd=copy.root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def wait_for(what, check, deadline_s=60, interval=0.02):
    end = time.monotonic() + deadline_s
    last = None
    while time.monotonic() < end:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"waited {deadline_s} s for {what}; last saw {last!r}")


@pytest.fixture(scope="module")
def big(docker_client, p1):
    volume = volume_name(p1, "big")
    put(docker_client, p1, volume, [entry(".", tarfile.DIRTYPE, mode=0o755, mtime=T0),
                                    big_entry("one.bin", 160 << 20),
                                    entry("small.txt", body=b"small", mtime=T0 + 1)],
        labelled_user="big")
    return volume


def test_a_backup_killed_mid_stream_leaves_nothing_complete_and_the_next_run_succeeds(
        docker_client, p1, big):
    folder = p1.root / "backups"
    folder.mkdir(exist_ok=True)
    pattern = f"{p1.project}-user-big-*"
    running = start_inv(p1, "backup", "--user", "big")
    try:
        partial = wait_for("a growing .partial file", lambda: [
            p for p in folder.glob(pattern + ".partial") if p.stat().st_size > (20 << 20)])
        # Frozen mid-stream, it holds the lock: a second operation on the volume is refused,
        # and says by whom.
        os.killpg(running.pid, signal.SIGSTOP)
        second = p1.inv("backup", "--user", "big")
        assert second.returncode != 0, second.output
        assert "Another backup or restore of user big" in second.output
        assert f"process {running.pid}" in second.output and "Traceback" not in second.output
        os.killpg(running.pid, signal.SIGKILL)
        running.wait(timeout=30)
    finally:
        if running.poll() is None:
            os.killpg(running.pid, signal.SIGKILL)
    assert not [p for p in folder.glob(pattern) if not p.name.endswith(".partial")]
    assert partial[0].exists()  # unmistakably unfinished
    # The next run finds the dead process's lock and file, says so, and succeeds.
    result = p1.inv_ok("backup", "--user", "big")
    assert "removed a stale lock" in result.stdout and "no longer running" in result.stdout
    assert f"removed {partial[0].name}, left by an interrupted backup" in result.stdout
    [(path, size, digest)] = backed_up(result)
    assert file_sha256(p1.root / path) == digest
    assert sorted(p.name for p in folder.glob(pattern)) == sorted(
        [os.path.basename(path), os.path.basename(path) + ".sha256"])


def test_a_restore_killed_mid_stream_is_undone_and_the_volume_is_as_before(docker_client, p1,
                                                                           big):
    """Kill `inv restore` while it uploads, long before its commit marker: the next
    operation on the volume undoes it, and the volume is exactly as before. (A swap cut
    short after the commit is finished: the test after this one.)"""
    archive = sorted((p1.root / "backups").glob(f"{p1.project}-user-big-*.tar"))[-1]
    # Make the volume differ from the archive, so "before" and "after" are told apart.
    put(docker_client, p1, big, [entry("small.txt", body=b"changed", mtime=T0 + 5),
                                 entry("new.txt", body=b"new")])
    before = snapshot(docker_client, p1, big)
    probe = helper(docker_client, p1, big)
    try:
        def staging_started():
            try:
                probe.get_archive("/v/.jupyterhub-deploy-restore/staging")[0].close()
                return True
            except docker.errors.NotFound:
                return False
        running = start_inv(p1, "restore", "--user", "big", "--force", "--from", archive.name)
        try:
            # The 160 MiB upload has only begun: no commit marker can have been written.
            wait_for("the restore to start staging", staging_started)
            os.killpg(running.pid, signal.SIGKILL)
            running.wait(timeout=30)
        finally:
            if running.poll() is None:
                os.killpg(running.pid, signal.SIGKILL)
    finally:
        probe.remove()
    result = p1.inv_ok("backup", "--user", "big")
    assert "undid an interrupted restore of user big (volume" in result.stdout, result.stdout
    assert snapshot(docker_client, p1, big) == before


def test_an_interrupted_swap_is_finished_by_the_next_operation(docker_client, p1):
    """The state a swap cut short after its commit leaves (staged copy complete, the root
    half moved): the next operation finishes it."""
    volume = volume_name(p1, "halfway")
    put(docker_client, p1, volume, [
        entry(".", tarfile.DIRTYPE, mode=0o755, mtime=T0),
        entry("old.txt", body=b"old"),
        entry(".jupyterhub-deploy-restore", tarfile.DIRTYPE, mode=0o700, uid=0, gid=0),
        entry(".jupyterhub-deploy-restore/commit", uid=0, gid=0),
        entry(".jupyterhub-deploy-restore/root.json", uid=0, gid=0, body=json.dumps(
            {"mode": 0o750, "uid": 1000, "gid": 100, "mtime": T0 + 42}).encode()),
        entry(".jupyterhub-deploy-restore/old", tarfile.DIRTYPE, mode=0o700, uid=0, gid=0),
        entry(".jupyterhub-deploy-restore/old/moved-already.txt", body=b"old too"),
        entry(".jupyterhub-deploy-restore/incoming", tarfile.DIRTYPE, mode=0o700, uid=0, gid=0),
        entry(".jupyterhub-deploy-restore/incoming/restored.txt", body=b"restored"),
    ], labelled_user="halfway")
    result = p1.inv_ok("backup", "--user", "halfway")
    assert "finished the interrupted restore of user halfway" in result.stdout
    after = snapshot(docker_client, p1, volume)
    assert sorted(after) == ["v", "v/restored.txt"]
    assert after["v"][1:4] == (0o750, 1000, 100) and after["v"][5] == T0 + 42


# --- a full disk, and --all past a failure ---------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A real 2 MiB file system (tmpfs) as the backup folder."""
    folder = tmp_path / "small-disk"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(folder)],
                   check=True)
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def roomy_volume():
    """6 MiB, 4 of them random (so they do not shrink with --compress): more than
    small_disk holds."""
    return [entry(".", tarfile.DIRTYPE, mode=0o755, mtime=T0),
            entry("random.bin", body=os.urandom(4 << 20), mtime=T0 + 1),
            big_entry("zpattern.bin", 2 << 20, mtime=T0 + 2)]


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_a_full_backup_folder_ends_in_a_message_and_leaves_nothing(docker_client, p1,
                                                                   small_disk, compress):
    put(docker_client, p1, volume_name(p1, "roomy"), roomy_volume(), labelled_user="roomy")
    result = p1.inv("backup", "--user", "roomy", "--dir", str(small_disk),
                    *(["--compress"] if compress else []))
    assert result.returncode != 0, result.output
    assert "Traceback" not in result.output, result.output
    assert f"Backup of user roomy failed: the backup folder {small_disk} is full" in result.output
    assert re.search(r"ran out after [\d.]+ MB of the archive", result.output), result.output
    assert re.search(r"with [\d.]+ MB of the volume read", result.output), result.output
    assert "The volume's files hold 6.3 MB: the archive needs about that much" in result.output
    assert os.listdir(small_disk) == []  # no archive, no .sha256, no .partial


def _hub_volume(client, copy):
    client.volumes.create(f"{copy.project}-hub-data",
                          labels={f"{LABEL}.project": copy.project, f"{LABEL}.role": "hub-data"})
    put(client, copy, f"{copy.project}-hub-data", [entry("jupyterhub_cookie_secret", body=b"s")])


def test_backup_all_goes_on_past_a_full_disk_and_lists_the_failure_last(
        docker_client, tmp_path_factory, copies, small_disk):
    copy = new_copy(tmp_path_factory, docker_client, copies)
    put(docker_client, copy, volume_name(copy, "aa"), roomy_volume(), labelled_user="aa")
    put(docker_client, copy, volume_name(copy, "zz"), [entry("notes.txt", body=b"zz\n")],
        labelled_user="zz")
    _hub_volume(docker_client, copy)
    result = copy.inv("backup", "--all", "--dir", str(small_disk))
    assert result.returncode != 0 and "Traceback" not in result.output, result.output
    written = sorted(name for name in os.listdir(small_disk) if name.endswith(".tar"))
    assert [name.rsplit("-", 1)[0] for name in written] == [
        f"{copy.project}-hub-data", f"{copy.project}-user-zz"], result.output
    last = result.stderr.strip().splitlines()
    assert last[0] == "2 of 3 backed up; these failed:", result.output
    assert last[1].startswith("  user aa: the backup folder") and "is full" in last[1]


def test_backup_all_backs_up_the_users_when_the_hub_has_no_volume(
        docker_client, tmp_path_factory, copies):
    copy = new_copy(tmp_path_factory, docker_client, copies)
    put(docker_client, copy, volume_name(copy, "aa"), [entry("notes.txt", body=b"aa\n")],
        labelled_user="aa")
    result = copy.inv("backup", "--all")
    assert result.returncode != 0 and "Traceback" not in result.output, result.output
    [(path, _, _)] = backed_up(result)
    assert os.path.basename(path).startswith(f"{copy.project}-user-aa-")
    assert result.stderr.strip().splitlines() == [
        "1 of 2 backed up; these failed:",
        f"  the hub's data: No volume {copy.project}-hub-data for the hub's data: run `inv build` "
        "to make it. `inv backup --all` backs up every user volume there is."]


# --- sparse files ---------------------------------------------------------------------------------

def test_a_sparse_file_is_left_out_with_a_note_and_the_backup_stays_small(docker_client, p1, p2):
    """A 10 TiB sparse file (`truncate -s 10T`) would stream 10 TiB of zeros from the
    engine; the backup leaves it out, says so, and archives everything around it."""
    files = [entry(".", tarfile.DIRTYPE, mode=0o755, mtime=T0),
             entry("a.txt", body=b"a\n", mtime=T0 + 1),
             entry("deep", tarfile.DIRTYPE, mode=0o750, mtime=T0 + 2),
             entry("deep/data.bin", body=os.urandom(1 << 20), mtime=T0 + 3),
             entry("deep/inner", tarfile.DIRTYPE, mode=0o755, mtime=T0 + 4),
             entry("deep/inner/x.txt", body=b"x\n", mtime=T0 + 5),
             entry("deep/zz.txt", body=b"zz\n", mtime=T0 + 6),
             entry("z\udcff", tarfile.DIRTYPE, mode=0o755, mtime=T0 + 7),
             entry("z\udcff/k.txt", body=b"k\n", mtime=T0 + 8)]
    volume, reference = volume_name(p1, "sparse"), volume_name(p1, "sparse-ref")
    put(docker_client, p1, volume, files, labelled_user="sparse")
    put(docker_client, p1, reference, files)
    run_in(docker_client, p1, volume, f"truncate -s 10T /v/deep/big && truncate -s 1T /v/top && "
           f"touch -d @{T0 + 2} /v/deep && touch -d @{T0} /v")
    run_in(docker_client, p1, reference, f"touch -d @{T0} /v")  # put_archive leaves the root's
    # Streaming the 10 TiB would take a day (and fill the disk): 2 minutes is failure.
    result = p1.inv("backup", "--user", "sparse", timeout=120)
    print(f"inv backup of a volume holding a 10 TiB sparse file: {result.seconds:.1f} s")
    assert result.returncode == 0, result.output
    [(path, size, _)] = backed_up(result)
    assert size < 2 << 20, size  # the 1 MiB of data and headers, not the 11 TB
    assert ("note:    left out a sparse file: 2 ('deep/big' (11.0 TB long, 0 B of data), "
            "'top' (1.1 TB long, 0 B of data))") in result.stdout, result.stdout
    p2.inv_ok("restore", "--user", "sparse", "--from", str(p1.root / path))
    assert snapshot(docker_client, p2, volume_name(p2, "sparse")) == snapshot(
        docker_client, p1, reference)


def test_a_sparse_file_the_engine_cannot_name_is_refused_by_name(docker_client, p1):
    volume = volume_name(p1, "sparse-odd")
    put(docker_client, p1, volume, [entry("keep.txt", body=b"k")], labelled_user="sparse-odd")
    run_in(docker_client, p1, volume, "truncate -s 1T \"/v/big$(printf '\\377')\"")
    result = p1.inv("backup", "--user", "sparse-odd", timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.output, result.output
    assert ("Backup of user sparse-odd refused: the sparse file 'big\\xff' has a name that is "
            "not UTF-8") in result.output, result.output


def test_a_backup_stops_at_twice_the_data_its_files_hold(docker_client, p1):
    """Files with holes below the sparse rule still count: 70 files of 1 MiB holding 4 KiB
    each make 70 MiB of file data against 280 KiB held, past the cap (twice the data
    held, plus 64 MiB): the backup stops, says why, and leaves nothing."""
    volume = volume_name(p1, "holey")
    put(docker_client, p1, volume, [entry(".", tarfile.DIRTYPE, mode=0o755, mtime=T0)],
        labelled_user="holey")
    run_in(docker_client, p1, volume,
           "cd /v && for i in $(seq 10 79); do printf x > f$i && truncate -s 1M f$i; done")
    folder = p1.root / "backups"
    before = sorted(folder.glob(f"{p1.project}-user-holey-*"))
    result = p1.inv("backup", "--user", "holey")
    assert result.returncode != 0 and "Traceback" not in result.output, result.output
    assert "Backup of user holey stopped: with 'f7" in result.output, result.output
    assert re.search(r"its file data would pass 6[4-9]\.\d MB, twice the 2[0-9]{2}\.\d KB of "
                     r"data the volume's files held", result.output), result.output
    assert sorted(folder.glob(f"{p1.project}-user-holey-*")) == before


# --- the hub's data -------------------------------------------------------------------------------------

def test_hub_backed_up_while_serving_restores_into_a_fresh_deployment(
        docker_client, deployment, tmp_path_factory, copies):
    d = deployment
    d.inv_ok("build", "up")
    admin = HubClient(d.url, d.cafile)
    assert admin.login("admin", d.password("admin")).status_code == 302
    token = admin.make_token("admin")
    # alice's work, in a volume labelled as the hub labels them, for `--all`.
    put(docker_client, d, volume_name(d, "alice"), [entry("notes.txt", body=b"alice's\n")],
        labelled_user="alice")
    # Bulk after the database in the walk order: the engine is still streaming the volume
    # when the backup reaches the database and reads the snapshot (a second archive of
    # the same helper would then wait forever: the engine locks a container per stream).
    put(docker_client, d, f"{d.project}-hub-data", [big_entry("zz-bulk.bin", 4 << 20)])

    # Requests keep coming while the backup runs: reads, and writes (new tokens).
    stop, seen = threading.Event(), []

    def traffic():
        session = requests.Session()
        headers = {"Authorization": f"token {token}"}
        while not stop.is_set():
            read = session.get(f"{d.url}/hub/api/users", headers=headers, verify=d.cafile,
                               timeout=10)
            made = session.post(f"{d.url}/hub/api/users/admin/tokens", headers=headers,
                                json={"note": "during backup", "expires_in": 600},
                                verify=d.cafile, timeout=10)
            seen.append((read.status_code, made.status_code))

    worker = threading.Thread(target=traffic)
    worker.start()
    try:
        time.sleep(0.5)
        result = d.inv_ok("backup", "--all")
        time.sleep(0.5)
    finally:
        stop.set()
        worker.join()
    print(f"inv backup --all with the hub serving {len(seen)} request pairs: {result.seconds:.1f} s")
    assert len(seen) >= 5 and set(seen) == {(200, 201)}, seen[:10]
    written = {os.path.basename(path): path for path, _, _ in backed_up(result)}
    hub_name = next(name for name in written if name.startswith(f"{d.project}-hub-data-"))
    alice_name = next(name for name in written if name.startswith(f"{d.project}-user-alice-"))
    hub_path = d.root / written[hub_name]

    # The archive holds a whole, consistent database and the cookie secret, no journal.
    with tarfile.open(hub_path) as tar:
        names = tar.getnames()
        meta = json.loads(tar.extractfile("jupyterhub-deploy-backup.json").read())
        db = tmp_path_factory.mktemp("db") / "jupyterhub.sqlite"
        db.write_bytes(tar.extractfile("data/jupyterhub.sqlite").read())
    assert "data/jupyterhub_cookie_secret" in names and "data/zz-bulk.bin" in names
    assert not [n for n in names if n.endswith(("-journal", "-wal", "-shm"))]
    assert not [n for n in names if ".jupyterhub-deploy-" in n]
    assert meta["kind"] == "hub" and meta["hub_database"] == "online-backup"
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        users = {row[0] for row in con.execute("SELECT name FROM users")}
    assert {"admin", "alice"} <= users
    # The snapshot folder is gone from the live volume again.
    hub = d.hub_container(docker_client)
    assert hub.exec_run(["ls", "-a", "/data"]).output.decode().split().count(
        ".jupyterhub-deploy-backup") == 0

    # A running hub's data cannot be restored over it.
    refused = d.inv("restore", "--hub", "--force", "--from", hub_name)
    assert refused.returncode != 0 and "is running and holds its database open" in refused.output

    # A fresh deployment (another project, another port): build, restore, up.
    fresh = new_copy(tmp_path_factory, docker_client, copies)
    fresh.inv_ok("build")
    fresh.inv_ok("restore", "--hub", "--from", str(hub_path))
    fresh.inv_ok("restore", "--user", "alice", "--from", str(d.root / written[alice_name]))
    try:
        fresh.inv_ok("up")
        # The users are there, alice's work is there, and the token made before the backup
        # works against the new hub.
        me = requests.get(f"{fresh.url}/hub/api/user", headers={"Authorization": f"token {token}"},
                          verify=fresh.cafile, timeout=10)
        assert me.status_code == 200 and me.json()["name"] == "admin"
        listed = requests.get(f"{fresh.url}/hub/api/users",
                              headers={"Authorization": f"token {token}"},
                              verify=fresh.cafile, timeout=10)
        assert {"admin", "alice"} <= {u["name"] for u in listed.json()}
        # The admin's password is the old deployment's, from the restored database.
        again = HubClient(fresh.url, fresh.cafile)
        assert again.login("admin", d.password("admin")).status_code == 302
        assert snapshot(docker_client, fresh, volume_name(fresh, "alice"))["v/notes.txt"][-1] == \
            hashlib.sha256(b"alice's\n").hexdigest()
    finally:
        fresh.inv("down")
