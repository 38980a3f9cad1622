"""tasks.backup's archive, reading, rules, tarstream, store, streams and swap: the archive
format, every check a restore makes, the streams, and the swap's crash recovery, with no
engine."""
import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings, strategies as st

from tasks.backup import archive as fmt
from tasks.backup import reading, rules, store, streams, survey, tarstream
from tasks.backup import swap as restore_swap
from tests.archives import HOSTILE, Member, make_archive, metadata, oversized, volume

E = fmt.Entry
T0 = 1_700_000_000


def read_all(data: bytes, limits=fmt.Limits(), verify=True):
    """Walk an archive as a restore's check does; returns (summary, entries, contents)."""
    reader = reading.ArchiveReader(streams.open_chunks([data[i:i + 7000]
                                                        for i in range(0, len(data), 7000)]),
                                   limits, verify)
    entries, contents = [], {}
    for entry, chunks in reader.entries():
        entries.append(entry)
        if entry.kind == fmt.FILE:
            contents[entry.path] = b"".join(bytes(c) for c in chunks)
    return reader.summary, entries, contents


def write(entries_and_data, meta=None, compress=False) -> bytes:
    out = io.BytesIO()
    sink = gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1, mtime=0) if compress else out
    writer = fmt.ArchiveWriter(sink, meta or metadata())
    for entry, data in entries_and_data:
        pieces = [data[i:i + 1000] for i in range(0, len(data), 1000)]
        writer.add(entry, pieces)
    writer.close(T0)
    if compress:
        sink.close()
    return out.getvalue()


ODD = "caf\u00e9 \u65e5\u672c \U0001F389"  # unicode and spaces
NOT_UTF8 = "bad\udcff\udcfe"  # a Linux file name that is not UTF-8, as Python sees it
LONG = "d" * 120 + "/" + "f" * 200  # longer than the 100 bytes of a plain tar name

TREE = [  # in the engine's walk order: each folder's entries sorted by their bytes
    (E(".", fmt.DIR, 0o755, 1000, 100, T0), b""),
    (E("a file", fmt.FILE, 0o644, 1000, 100, T0 + 1, size=5), b"hello"),
    (E(NOT_UTF8, fmt.FILE, 0o644, 1000, 100, T0, size=1), b"x"),
    (E("big", fmt.FILE, 0o600, 1000, 100, T0 + 2, size=300_000), os.urandom(300_000)),
    (E(ODD, fmt.DIR, 0o755, 1000, 100, T0), b""),
    (E(ODD + "/x", fmt.FILE, 0o640, 1000, 100, T0, size=3), b"abc"),
    (E(ODD + "/y", fmt.SYMLINK, 0o777, 1000, 100, T0, link="../a file"), b""),
    (E("d" * 120, fmt.DIR, 0o700, 1000, 100, T0), b""),
    (E(LONG, fmt.FILE, 0o644, 1000, 100, T0, size=0), b""),
    (E("empty", fmt.DIR, 0o755, 0, 0, T0 + 3), b""),
    (E("hard", fmt.HARDLINK, 0o644, 1000, 100, T0, link="a file"), b""),
    (E("link", fmt.SYMLINK, 0o777, 1000, 100, T0, link=ODD + "/x"), b""),
]


# --- the format, round trip ---------------------------------------------------------------------

@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_round_trip_keeps_every_entry_and_byte(compress):
    data = write(TREE, compress=compress)
    summary, entries, contents = read_all(data)
    assert [e.path for e in entries] == [e.path for e, _ in TREE]
    for (want, body), got in zip(TREE, entries):
        assert (got.kind, got.mode, got.uid, got.gid, got.mtime, got.size, got.link) == (
            want.kind, want.mode, want.uid, want.gid, want.mtime, want.size, want.link)
        if want.kind == fmt.FILE:
            assert contents[want.path] == body
    assert summary.entries == len(TREE)
    assert summary.bytes == sum(len(body) for _, body in TREE)
    assert summary.metadata["user"] == "alice"


def test_archive_is_a_plain_tar_with_metadata_first_and_manifest_last():
    data = write(TREE)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
        manifest = tar.extractfile(fmt.MANIFEST).read().decode().splitlines()
        meta = json.loads(tar.extractfile(fmt.METADATA).read())
        hard = tar.getmember("data/hard")
    assert names[0] == fmt.METADATA and names[-1] == fmt.MANIFEST
    assert names[1] == "data" and all(n.startswith("data/") for n in names[2:-1])
    assert hard.linkname == "data/a file"
    lines = [json.loads(line) for line in manifest]
    assert lines[1] == {"path": "a file", "type": "file", "size": 5, "mode": "0644",
                        "uid": 1000, "gid": 100, "mtime": T0 + 1,
                        "sha256": hashlib.sha256(b"hello").hexdigest()}
    assert {"path": "hard", "type": "hardlink", "size": 0, "mode": "0644", "uid": 1000,
            "gid": 100, "mtime": T0, "link": "a file"} in lines
    assert lines[-1]["end"] is True and lines[-1]["entries"] == len(TREE)
    assert meta["kind"] == "user" and meta["format"] == fmt.FORMAT


def test_writer_refuses_a_file_whose_content_falls_short():
    writer = fmt.ArchiveWriter(io.BytesIO(), metadata())
    writer.add(E(".", fmt.DIR, 0o755, 0, 0, T0))
    with pytest.raises(fmt.ArchiveError, match="3 bytes arrived, 5 announced"):
        writer.add(E("f", fmt.FILE, 0o644, 0, 0, T0, size=5), [b"abc"])


def test_manifest_memory_is_spooled_not_held():
    writer = fmt.ArchiveWriter(io.BytesIO(), metadata())
    writer.add(E(".", fmt.DIR, 0o755, 0, 0, T0))
    for i in range(2000):
        writer.add(E(f"f{i:05}", fmt.FILE, 0o644, 0, 0, T0, size=0))
    assert writer.spool.tell() > 100_000  # on disk, in the temporary file
    writer.close(T0)


# --- hostile archives: each refused by its own check --------------------------------------------

@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archive_is_refused(case):
    data, words = HOSTILE[case]
    with pytest.raises(fmt.ArchiveError) as caught:
        read_all(data)
    assert words in str(caught.value)


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archive_is_refused_when_compressed_too(case):
    data, words = HOSTILE[case]
    with pytest.raises(fmt.ArchiveError) as caught:
        read_all(gzip.compress(data, 1))
    assert words in str(caught.value)


def test_the_well_formed_base_of_the_hostile_cases_is_accepted():
    summary, entries, _ = read_all(make_archive(volume()))
    assert [e.path for e in entries] == [".", "notes.txt", "sub", "sub/a.py"]


def test_size_beyond_the_cap_is_refused_without_inflating_it():
    data = oversized(50_000_000)
    assert len(data) < 500_000  # a "zip bomb" of zeros, 100 times smaller than it inflates
    with pytest.raises(fmt.ArchiveError) as caught:
        read_all(data, fmt.Limits(max_bytes=50_000_000))
    assert "past the size limit" in str(caught.value) and "--max-size" in caught.value.fix


def test_too_many_entries_are_refused():
    many = volume(*(Member(f"data/z{i:03}", data=b"") for i in range(20)))
    with pytest.raises(fmt.ArchiveError, match="more than 10 entries"):
        read_all(make_archive(many), fmt.Limits(max_entries=10))


@settings(max_examples=60, deadline=None, database=None)
@given(st.data())
def test_any_truncation_before_the_end_is_refused(data):
    whole = make_archive(volume(Member("data/zbig", data=os.urandom(3000))))
    # Up to the manifest's last byte plus the first end-of-archive block, every cut is
    # detected; after it, only zero padding is missing (the checksum file catches that).
    cut = data.draw(st.integers(0, len(whole) - 2 * fmt.BLOCK - 1))
    with pytest.raises(fmt.ArchiveError):
        read_all(whole[:cut])


@settings(max_examples=60, deadline=None, database=None)
@given(st.data())
def test_any_flipped_byte_in_data_or_headers_is_refused_or_harmless(data):
    whole = make_archive(volume(Member("data/zbig", data=os.urandom(3000))))
    at = data.draw(st.integers(0, len(whole) - 2 * fmt.BLOCK - 1))
    flipped = bytearray(whole)
    flipped[at] ^= 0x01
    try:
        _, entries, contents = read_all(bytes(flipped))
    except fmt.ArchiveError:
        return
    # Accepted only if the flip hit padding or a field the manifest does not record.
    _, want_entries, want_contents = read_all(whole)
    assert contents == want_contents
    assert [e.record() for e in entries] == [e.record() for e in want_entries]


def test_corrupt_gzip_is_refused():
    data = bytearray(make_archive(volume(), compress=True))
    data[len(data) // 2] ^= 0xFF
    with pytest.raises(fmt.ArchiveError):
        read_all(bytes(data))


def test_data_after_the_gzip_stream_is_refused():
    data = make_archive(volume(), compress=True) + b"extra"
    with pytest.raises(fmt.ArchiveError, match="after the end of the compressed archive"):
        read_all(data)


def test_pax_header_larger_than_the_cap_is_refused():
    member = Member("data/zfile", data=b"x", pax={"comment": "c" * (fmt.MAX_HEADER + 10)})
    with pytest.raises(fmt.ArchiveError, match="extended header of"):
        read_all(make_archive(volume(member)))


def test_header_checksum_is_checked():
    data = bytearray(make_archive(volume()))
    data[512 * 2 + 100] ^= 0x04  # the mode field of the first data member's header
    with pytest.raises(fmt.ArchiveError, match="checksum"):
        read_all(bytes(data))


# --- the checker's rules, one by one ----------------------------------------------------------------

@pytest.mark.parametrize("path, ok", [
    (".", True), ("a", True), ("a/b c/d", True), (NOT_UTF8, True),
    ("/a", False), ("a/../b", False), ("..", False), ("a//b", False), ("./a", False),
    ("a/.", False), ("", False), ("x" * 256, False), ("a/" * 2049, False),
])
def test_split_path(path, ok):
    if ok:
        rules.split_path(path)
    else:
        with pytest.raises(fmt.ArchiveError):
            rules.split_path(path)


@pytest.mark.parametrize("parent, target, inside", [
    ((), "a", True), ((), "./a/../b", True), ((b"d",), "..", True), ((b"d",), "../x", True),
    ((), "..", False), ((b"d",), "../..", False), ((), "/etc", False), ((), "", False),
    ((b"a", b"b"), "../../../x", False), ((b"a", b"b"), "x/../../../../y", False), ((b"a", b"b"), "x/../../../y", True),
    ((b"a",), "b/../../c", True),
])
def test_link_stays_inside(parent, target, inside):
    assert rules.link_stays_inside(parent, target) is inside


def check_all(*entries, limits=fmt.Limits()):
    checker = rules.TreeChecker(limits)
    for entry in entries:
        checker.check(entry)
    return checker


ROOT = E(".", fmt.DIR, 0o755, 0, 0, T0)


def d(path):
    return E(path, fmt.DIR, 0o755, 0, 0, T0)


def f(path, size=0, mode=0o644):
    return E(path, fmt.FILE, mode, 0, 0, T0, size=size)


def test_checker_accepts_the_engines_walk_order():
    # Siblings by their bytes, each folder's entries right after it: "a", "a/x", "a b".
    check_all(ROOT, d("a"), f("a/x"), f("a b"), d("b"), d("b/c"), f("b/c/d"), f("b/e"), f("c"))


@pytest.mark.parametrize("entries, words", [
    ([f("a")], "first entry must be the volume's root"),
    ([ROOT, ROOT], "root folder appears twice"),
    ([ROOT, f("b"), f("a")], "listed twice or out of order"),
    ([ROOT, f("a"), f("a")], "listed twice or out of order"),
    ([ROOT, f("a/x")], "without its folder before it"),
    ([ROOT, f("a"), f("a/x")], "without its folder before it"),
    ([ROOT, d("a"), f("b"), f("a/x")], "without its folder before it"),
    ([ROOT, E("l", fmt.SYMLINK, 0o777, 0, 0, T0, link="."), f("l/x")],
     "without its folder before it"),
    ([ROOT, f("a", mode=0o4755)], "setuid or setgid"),
    ([ROOT, E("a", 7, 0o644, 0, 0, T0)], "not allowed"),
    ([ROOT, E("a", fmt.DIR, 0o10755, 0, 0, T0)], "bits beyond the permissions"),
    ([ROOT, E("a", fmt.SYMLINK, 0o777, 0, 0, T0, size=3, link="b")], "with a size"),
    ([ROOT, f("a"), E("b", fmt.HARDLINK, 0o644, 0, 0, T0, link="c")], "not an earlier entry"),
    ([ROOT, d("a"), E("a/h", fmt.HARDLINK, 0o644, 0, 0, T0, link="a")], "its own folder"),
    ([ROOT, E("a", fmt.SYMLINK, 0o777, 0, 0, T0, link="d"), d("d"), f("d/f"),
      E("h", fmt.HARDLINK, 0o644, 0, 0, T0, link="a/f")], "through a symlink"),
    ([ROOT, E(".jupyterhub-deploy-backup", fmt.DIR, 0o700, 0, 0, T0)], "keeps for itself"),
])
def test_checker_refuses(entries, words):
    with pytest.raises(fmt.ArchiveError, match=words):
        check_all(*entries)


def test_checker_memory_is_the_path_depth_not_the_entry_count():
    checker = check_all(ROOT, *(f(f"f{i:06}") for i in range(5000)))
    assert len(checker.stack) == 1 and checker.entries == 5001


def test_a_hardlink_to_an_earlier_file_and_to_a_symlink_itself_are_fine():
    check_all(ROOT, f("a"), E("l", fmt.SYMLINK, 0o777, 0, 0, T0, link="a"),
              E("m", fmt.HARDLINK, 0o644, 0, 0, T0, link="a"),
              E("n", fmt.HARDLINK, 0o777, 0, 0, T0, link="l"))


@pytest.mark.parametrize("earlier, kind", [(d("a"), "a folder"), (f("b"), "not in the archive")])
def test_a_hardlink_must_point_to_an_earlier_file(earlier, kind):
    links = rules.LinkTargets()
    entries = [ROOT, earlier, f("a/x") if earlier.kind == fmt.DIR else f("c"),
               E("h", fmt.HARDLINK, 0o644, 0, 0, T0, link="a")]
    for entry in entries:
        links.want(entry)
    with pytest.raises(fmt.ArchiveError, match=f"h: a hardlink to 'a', which is {kind}"):
        for entry in entries:
            links.see(entry.path, entry.kind, entry.link)


def test_hardlinks_to_a_file_a_symlink_and_a_hardlink_pass_the_second_look():
    links = rules.LinkTargets()
    entries = [ROOT, f("a"), E("l", fmt.SYMLINK, 0o777, 0, 0, T0, link="a"),
               E("m", fmt.HARDLINK, 0o644, 0, 0, T0, link="a"),
               E("n", fmt.HARDLINK, 0o777, 0, 0, T0, link="l"),
               E("o", fmt.HARDLINK, 0o644, 0, 0, T0, link="m")]
    for entry in entries:
        links.want(entry)
    for entry in entries:
        links.see(entry.path, entry.kind, entry.link)
    assert links.kinds == {"a": fmt.FILE, "l": fmt.SYMLINK, "m": fmt.HARDLINK}


# --- what a backup writes for what the engine reports ---------------------------------------------

def test_backup_clears_setuid_and_setgid_and_says_so():
    entry, note = rules.plan_backup_entry(f("run.sh", mode=0o6755))
    assert entry.mode == 0o755 and note == "cleared a setuid/setgid bit"


def test_backup_leaves_out_links_pointing_outside_and_our_own_folders():
    outside = E("l", fmt.SYMLINK, 0o777, 0, 0, T0, link="/etc/passwd")
    assert rules.plan_backup_entry(outside) == (None, "left out a symlink pointing outside the volume")
    assert rules.plan_backup_entry(d(".jupyterhub-deploy-restore")) == (None, None)
    assert rules.plan_backup_entry(f(".jupyterhub-deploy-backup/jupyterhub.sqlite")) == (None, None)
    hard = E("h", fmt.HARDLINK, 0o644, 0, 0, T0, link="pipe")
    assert rules.plan_backup_entry(hard, left_out={"pipe"})[0] is None


def test_backup_drops_file_capabilities():
    entry, note = rules.plan_backup_entry(f("ping"), "file capabilities (as powerful as setuid)")
    assert entry == f("ping") and note.startswith("dropped file capabilities")


def engine_header(name, kind=b"0", size=0, link="", pax=None, mode=0o100644):
    return tarstream.Header(name=name, type=kind, mode=mode, uid=1000, gid=100, size=size,
                            mtime=T0, linkname=link, pax=pax or {})


def test_header_entry_rebases_the_engines_names():
    root = ".jupyterhub-deploy-volume"
    assert tarstream.header_entry(engine_header(root + "/", b"5", mode=0o40755), root)[0].path == "."
    entry, problem = tarstream.header_entry(engine_header(root + "/a b", size=3), root)
    assert (entry.path, entry.mode, entry.size, problem) == ("a b", 0o644, 3, None)
    entry, _ = tarstream.header_entry(engine_header(root + "/h", b"1", link=root + "/a b"), root)
    assert entry.link == "a b"
    assert tarstream.header_entry(engine_header(root + "/p", b"6"), root) == (None, "a named pipe (FIFO)")
    _, problem = tarstream.header_entry(engine_header(
        root + "/x", pax={"SCHILY.xattr.security.capability": b"\x01"}), root)
    assert problem.startswith("file capabilities")
    with pytest.raises(fmt.ArchiveError, match="outside"):
        tarstream.header_entry(engine_header("elsewhere/x"), root)


def test_reader_understands_what_the_engine_writes():
    """Go's archive/tar as Docker uses it: ustar, mode with type bits, long names as pax,
    GNU long names, a trailing zero record."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, kind in [("v", tarfile.DIRTYPE), ("v/" + "n" * 150, tarfile.REGTYPE)]:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.mode = 0o40755 if kind == tarfile.DIRTYPE else 0o100600
            info.size = 4 if kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(b"data") if info.size else None)
    reader = tarstream.TarReader(streams.Chunks([out.getvalue()]))
    names = []
    while (header := reader.next()) is not None:
        names.append(header.name)
        entry, _ = tarstream.header_entry(header, "v")
        assert entry.mode in (0o755, 0o600)
    assert names == ["v/", "v/" + "n" * 150]


# --- names, checksum files, sizes ---------------------------------------------------------------------

def test_archive_names_sort_by_time_and_parse_back():
    when = datetime(2026, 11, 26, 10, 15, 0, tzinfo=timezone.utc)
    name = store.archive_name("proj-user-a-2eb", when)
    assert name == "proj-user-a-2eb-20261126T101500Z.tar"
    assert store.parse_archive_name(name) == ("proj-user-a-2eb", when)
    assert store.archive_name("proj-hub-data", when, True, 2) == "proj-hub-data-20261126T101500Z-2.tar.gz"
    assert store.parse_archive_name("proj-hub-data-20261126T101500Z-2.tar.gz")[0] == "proj-hub-data"
    assert store.parse_archive_name("../etc/passwd") is None
    assert store.parse_archive_name("x-20261126T101500Z.tar.partial") is None


def test_leftovers_are_only_this_volumes_unfinished_files():
    names = ["p-user-a-20260101T000000Z.tar.partial",
             "p-user-a-20260101T000001Z.tar.sha256",  # its archive never appeared
             "p-user-a-20260101T000002Z.tar", "p-user-a-20260101T000002Z.tar.sha256",
             "p-user-a-2eb-20260101T000000Z.tar.partial",  # another user's ("a.b")
             "p-user-a-20260101T000003Z.tar.sha256.partial", "notes.txt"]
    assert store.leftover_names("p-user-a", names) == [
        "p-user-a-20260101T000000Z.tar.partial", "p-user-a-20260101T000001Z.tar.sha256",
        "p-user-a-20260101T000003Z.tar.sha256.partial"]


def test_sidecar_is_sha256sum_format():
    text = store.sidecar_text("a" * 64, "x.tar")
    assert text == "a" * 64 + "  x.tar\n"
    assert store.parse_sidecar(text) == "a" * 64
    for bad in ["", "abc  x.tar\n", "a" * 64 + "\n", "A" * 64 + "  x\n"]:
        with pytest.raises(fmt.ArchiveError):
            store.parse_sidecar(bad)


@pytest.mark.parametrize("text, value", [("100G", 100 << 30), ("512M", 512 << 20),
                                         ("1t", 1 << 40), ("1500", 1500), ("2GiB", 2 << 30)])
def test_parse_size(text, value):
    assert fmt.parse_size(text) == value


@pytest.mark.parametrize("text", ["", "-1G", "1.5G", "ten", "1P"])
def test_parse_size_refuses(text):
    with pytest.raises(ValueError):
        fmt.parse_size(text)


def test_metadata_round_trips_and_is_checked():
    meta = fmt.make_metadata("hub", "p-hub-data", "p", "tool", datetime(2026, 1, 1, tzinfo=timezone.utc))
    assert fmt.check_metadata(meta)["created"] == "2026-01-01T00:00:00Z" and meta["user"] is None
    with pytest.raises(fmt.ArchiveError, match="names no user"):
        fmt.check_metadata({**meta, "kind": "user"})
    with pytest.raises(fmt.ArchiveError, match="kind"):
        fmt.check_metadata({**meta, "kind": "other"})


# --- sparse files: the survey ------------------------------------------------------------------------

def run_survey(root) -> survey.Findings:
    out = io.StringIO()
    survey.Survey(os.fsencode(root), out).run()
    return survey.Findings.parse(out.getvalue())


def test_survey_finds_sparse_files_and_counts_each_files_data_once(tmp_path):
    root = tmp_path / "vol"
    make_volume(root, {"a.txt": b"hello", "sub": None, "sub/in.txt": b"x"})
    with open(root / "sub" / "big", "wb") as big:
        big.truncate(1 << 40)  # 1 TiB, no data
    os.link(root / "sub" / "big", root / "sub" / "big2")
    os.link(root / "a.txt", root / "b.txt")
    with open(root / "half", "wb") as half:  # 1 MiB of data in 3 MiB: holes, yet not sparse
        half.write(os.urandom(1 << 20))
        half.truncate(3 << 20)
    found = run_survey(root)
    assert found.sparse == {"sub/big": (1 << 40, 0), "sub/big2": (1 << 40, 0)}
    assert (found.data, found.files, found.complete) == (5 + (1 << 20) + 1, 4, True)
    assert found.data_cap == 2 * found.data + (64 << 20)


def test_survey_says_when_it_could_not_list_every_sparse_file(tmp_path, monkeypatch):
    root = tmp_path / "vol"
    root.mkdir()
    for name in ("s1", "s2"):
        with open(root / name, "wb") as file:
            file.truncate(10 << 20)
    monkeypatch.setattr(survey, "MAX_SPARSE", 1)
    found = run_survey(root)
    assert found.complete is False and list(found.sparse) == ["s1"]


def test_survey_names_that_are_not_utf8_keep_their_bytes(tmp_path):
    root = tmp_path / "vol"
    root.mkdir()
    with open(os.fsencode(root) + b"/big\xff", "wb") as big:
        big.truncate(10 << 20)
    assert run_survey(root).sparse == {"big\udcff": (10 << 20, 0)}


def test_survey_findings_need_the_totals_line():
    with pytest.raises(ValueError, match="no totals"):
        survey.Findings.parse('{"sparse": ["big", 1, 0]}\n')


# --- the stream a restore sends --------------------------------------------------------------------

def test_staged_stream_puts_everything_under_the_work_folder():
    data = write(TREE)
    reader = reading.ArchiveReader(streams.open_chunks([data]), verify=False)
    staged = b"".join(bytes(p) for p in reading.staged_stream(reader, T0))
    with tarfile.open(fileobj=io.BytesIO(staged), encoding="utf-8",
                      errors="surrogateescape") as tar:
        members = tar.getmembers()
        root = json.loads(tar.extractfile(".jupyterhub-deploy-restore/root.json").read())
    names = [m.name for m in members]
    assert names[:3] == [".jupyterhub-deploy-restore", ".jupyterhub-deploy-restore/root.json",
                         ".jupyterhub-deploy-restore/staging"]
    assert all(n.startswith(".jupyterhub-deploy-restore/staging/") for n in names[3:-1])
    assert names[-1] == ".jupyterhub-deploy-restore/times.jsonl"
    assert len(names) == len(TREE) + 3
    assert root == {"mode": 0o755, "uid": 1000, "gid": 100, "mtime": T0}
    hard = next(m for m in members if m.name.endswith("/hard"))
    assert hard.linkname == ".jupyterhub-deploy-restore/staging/a file"
    assert reader.summary.entries == len(TREE)


def test_staged_stream_lists_the_times_the_engine_cannot_set():
    tree = [(E(".", fmt.DIR, 0o755, 1000, 100, -7), b""),
            (E("d", fmt.DIR, 0o755, 1000, 100, -631152000), b""),
            (E("d/f", fmt.FILE, 0o644, 1000, 100, T0, size=1), b"x"),
            (E("d/g", fmt.FILE, 0o644, 1000, 100, -1, size=1), b"y"),
            (E("l", fmt.SYMLINK, 0o777, 1000, 100, -473385600, link="d/f"), b""),
            (E("z", fmt.FILE, 0o644, 1000, 100, 1 << 40, size=0), b"")]
    reader = reading.ArchiveReader(streams.open_chunks([write(tree)]), verify=False)
    staged = b"".join(bytes(p) for p in reading.staged_stream(reader, T0))
    with tarfile.open(fileobj=io.BytesIO(staged)) as tar:
        listed = tar.extractfile(".jupyterhub-deploy-restore/times.jsonl").read()
        staged_times = {m.name.rsplit("/", 1)[-1]: m.mtime for m in tar.getmembers()}
    # The root's time travels in root.json; every other time out of the engine's reach here.
    assert [json.loads(line) for line in listed.splitlines()] == [
        ["d", -631152000], ["d/g", -1], ["l", -473385600], ["z", 1 << 40]]
    assert staged_times["g"] == -1  # the header says it too, for any other reader


def test_commit_marker_is_one_empty_file():
    with tarfile.open(fileobj=io.BytesIO(reading.commit_stream(T0))) as tar:
        assert [(m.name, m.size) for m in tar] == [(".jupyterhub-deploy-restore/commit", 0)]


# --- streams ----------------------------------------------------------------------------------------

def test_chunks_read_exact_across_chunks_and_some_without_copying():
    source = streams.Chunks([b"abc", b"", b"defg", b"h"])
    assert source.read_exact(5) == b"abcde"
    piece = source.read_some(10)
    assert isinstance(piece, memoryview) and bytes(piece) == b"fg"
    assert bytes(source.read_some(10)) == b"h" and source.read_some(10) == b""
    with pytest.raises(streams.StreamEnd):
        streams.Chunks([b"ab"]).read_exact(3)


def test_prefetch_hands_over_everything_in_order_and_raises_what_the_source_raised():
    chunks = [bytes([i]) * 40_000 for i in range(100)]
    seen = []
    assert list(streams.Prefetch(iter(chunks), seen.append, depth=2)) == chunks
    assert seen == chunks

    def failing():
        yield b"x" * 10
        raise OSError("engine went away")

    with pytest.raises(OSError, match="engine went away"):
        list(streams.Prefetch(failing()))


def test_write_behind_writes_in_order_and_hashes(tmp_path):
    path = tmp_path / "out"
    pieces = [os.urandom(n) for n in (10, 2_000_000, 512, 3, 1_500_000)] + [b"y"] * 3000
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    sink = streams.WriteBehind(fd, depth=2)
    for piece in pieces:
        sink.write(memoryview(piece))
    sink.close()
    os.close(fd)
    whole = b"".join(pieces)
    assert path.read_bytes() == whole
    assert sink.digest.hexdigest() == hashlib.sha256(whole).hexdigest() and sink.count == len(whole)


def test_writev_skips_empty_pieces_and_finishes_partial_writes(tmp_path):
    path = tmp_path / "out"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    pieces = [b"", b"a" * 10, memoryview(b""), b"b" * 3] + [b"c"] * 2500  # > IOV_MAX pieces
    streams._writev(fd, list(pieces))
    os.close(fd)
    assert path.read_bytes() == b"a" * 10 + b"b" * 3 + b"c" * 2500


def test_write_behind_reports_a_write_error(tmp_path):
    fd = os.open(tmp_path / "out", os.O_RDONLY | os.O_CREAT)  # not writable
    sink = streams.WriteBehind(fd)
    sink.write(b"x" * (2 << 20))
    with pytest.raises(OSError):
        sink.close()
    os.close(fd)


def test_gunzip_never_inflates_more_than_a_chunk_at_once():
    bomb = gzip.compress(bytes(20 << 20), 9)
    sizes = [len(piece) for piece in streams.gunzip([bomb], limit=1 << 20)]
    assert max(sizes) <= 1 << 20 and sum(sizes) == 20 << 20


def test_coalesce_joins_small_pieces_and_passes_big_ones():
    big = b"B" * 300_000
    out = list(streams.coalesce([b"a" * 10, b"b" * 10, big, b"c"], size=100))
    assert b"".join(out) == b"a" * 10 + b"b" * 10 + big + b"c"
    assert all(len(piece) >= 100 for piece in out[:-1])


# --- the swap and its crash recovery ------------------------------------------------------------------

OWNER = os.getuid()


def make_volume(root, files):
    root.mkdir(exist_ok=True)
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            path.mkdir()
        else:
            path.write_bytes(content)


def snapshot(root):
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root)
            out[rel] = None if os.path.isdir(path) else open(path, "rb").read()
    return out


def stage(root, new_files, commit=True, root_mode=0o750, root_mtime=T0):
    before_ns = os.stat(root).st_mtime_ns
    work = root / restore_swap.WORK
    work.mkdir(mode=0o700)
    (work / "root.json").write_text(json.dumps({"mode": root_mode, "uid": OWNER,
                                                "gid": os.getgid(), "mtime": root_mtime,
                                                "before_ns": before_ns}))
    make_volume(work / "staging", new_files)
    if commit:
        (work / "commit").write_bytes(b"")


OLD = {"old.txt": b"old", "dir": None, "dir/x": b"x", ".hidden": b"h"}
NEW = {"new.txt": b"new", "dir": None, "dir/y": b"y", "empty": None}


def test_swap_replaces_the_contents_as_a_whole(tmp_path):
    root = tmp_path / "vol"
    make_volume(root, OLD)
    stage(root, NEW)
    assert restore_swap.settle(str(root), OWNER) == "finished"
    assert snapshot(root) == NEW
    info = os.stat(root)
    assert stat.S_IMODE(info.st_mode) == 0o750 and info.st_mtime == T0


def test_swap_sets_the_times_the_engine_could_not_before_it_finishes(tmp_path):
    root = tmp_path / "vol"
    make_volume(root, OLD)
    stage(root, NEW)
    staging = root / restore_swap.WORK / "staging"
    os.symlink("new.txt", staging / "link")
    (root / restore_swap.WORK / "times.jsonl").write_text(
        '["new.txt", -1]\n["dir", -631152000]\n["link", -473385600]\n["dir/y", -86400]\n')
    assert restore_swap.settle(str(root), OWNER) == "finished"
    assert [os.lstat(root / path).st_mtime for path in ("new.txt", "dir", "link", "dir/y")] == [
        -1, -631152000, -473385600, -86400]
    assert os.stat(root / "empty").st_mtime > 0  # not listed: as the engine left it


def test_swap_undoes_an_upload_that_was_never_committed(tmp_path):
    root = tmp_path / "vol"
    make_volume(root, OLD)
    before = os.stat(root)
    stage(root, NEW, commit=False)
    assert restore_swap.settle(str(root), OWNER) == "undone"
    assert snapshot(root) == OLD
    after = os.stat(root)
    assert (stat.S_IMODE(after.st_mode), after.st_mtime_ns) == (
        stat.S_IMODE(before.st_mode), before.st_mtime_ns)


def test_swap_on_a_clean_volume_does_nothing(tmp_path):
    make_volume(tmp_path / "vol", OLD)
    assert restore_swap.settle(str(tmp_path / "vol"), OWNER) == "clean"
    assert snapshot(tmp_path / "vol") == OLD


def test_swap_leaves_a_work_folder_it_did_not_make_alone(tmp_path):
    root = tmp_path / "vol"
    make_volume(root, {**OLD, restore_swap.WORK: None})
    os.chmod(root / restore_swap.WORK, 0o755)  # a restore makes it 0700
    with pytest.raises(restore_swap.NotOurs):
        restore_swap.settle(str(root), OWNER)
    assert (root / "old.txt").exists()


class Crash(Exception):
    pass


# The renames and removals (rmtree's own included) a swap makes from what stage() leaves:
# the crash test below interrupts each of them, and only those.
SWAP_STEPS = {True: 14, False: 5}


def counting_steps(monkeypatch, crash_after=None) -> dict:
    """Count the swap's renames and removals; with `crash_after`, raise Crash instead of
    making the one after that many."""
    calls = {"n": 0}
    real_rename, real_rmtree, real_rmdir = os.rename, restore_swap.shutil.rmtree, os.rmdir

    def counting(real):
        def step(*args, **kwargs):
            if crash_after is not None and calls["n"] >= crash_after:
                raise Crash()
            calls["n"] += 1
            return real(*args, **kwargs)
        return step

    monkeypatch.setattr(restore_swap.os, "rename", counting(real_rename))
    monkeypatch.setattr(restore_swap.os, "rmdir", counting(real_rmdir))
    monkeypatch.setattr(restore_swap.shutil, "rmtree", counting(real_rmtree))
    return calls


@pytest.mark.parametrize("commit", [True, False], ids=["committed", "not-committed"])
def test_the_swap_makes_exactly_the_steps_the_crash_test_interrupts(tmp_path, monkeypatch,
                                                                    commit):
    root = tmp_path / "vol"
    make_volume(root, OLD)
    stage(root, NEW, commit=commit)
    calls = counting_steps(monkeypatch)
    restore_swap.settle(str(root), OWNER)
    assert calls["n"] == SWAP_STEPS[commit]


@pytest.mark.parametrize("commit, crash_after", [
    (commit, n) for commit in (True, False) for n in range(SWAP_STEPS[commit])],
    ids=lambda value: {True: "committed", False: "not-committed"}.get(value, value))
def test_swap_interrupted_anywhere_then_run_again_is_whole(tmp_path, monkeypatch, crash_after,
                                                           commit):
    """Crash the swap at each of its renames and removals, run it again: the volume holds
    the old contents (not committed) or the new ones (committed), never a mix."""
    root = tmp_path / "vol"
    make_volume(root, OLD)
    stage(root, NEW, commit=commit)
    counting_steps(monkeypatch, crash_after)
    with pytest.raises(Crash):
        restore_swap.settle(str(root), OWNER)
    monkeypatch.undo()
    # "cleaned": the crash came while removing what was left of a finished swap.
    assert restore_swap.settle(str(root), OWNER) in (
        ("finished", "cleaned") if commit else ("undone", "cleaned"))
    assert snapshot(root) == (NEW if commit else OLD)
    assert not (root / restore_swap.WORK).exists()


def test_swap_runs_as_a_program(tmp_path, capsys):
    root = tmp_path / "vol"
    make_volume(root, OLD)
    assert restore_swap.main(["swap", str(root)]) == 0
    assert json.loads(capsys.readouterr().out) == {"result": "clean"}
