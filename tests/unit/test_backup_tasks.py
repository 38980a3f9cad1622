"""tasks.backup without an engine: every refusal that comes before the engine is asked
anything, the backup folder, the lock's staleness, and the progress line."""
import hashlib
import io
from pathlib import Path

import pytest
from invoke import Config, MockContext
from invoke.exceptions import Exit

from tasks.backup import commands as backup
from tasks.backup.archive import Limits
from tasks.backup.restoring import verify
from tasks.backup import helper as volume_helper
from tasks.backup import store
from tests.archives import Member, make_archive, metadata, sidecar, volume


def context(tmp_path, **backup_config):
    overrides = {"project_dir": str(tmp_path)}
    if backup_config:
        overrides["backup"] = backup_config
    # No `run` answers: any command (compose, docker) would fail the test.
    return MockContext(config=Config(overrides=overrides))


@pytest.mark.parametrize("kwargs, words", [
    ({}, "Say what to back up: --user NAME, --share NAME, --hub or --all"),
    ({"share": "physics", "hub": True}, "not --hub and --share together"),
    ({"share": "../x"}, "'../x' is not a valid group name"),
    ({"user": "alice", "hub": True}, "not --user and --hub together"),
    ({"all_": True, "list_": True}, "not --all and --list together"),
    ({"user": "../etc"}, "'../etc' is not a valid user name"),
    ({"user": "$(id)"}, "is not a valid user name"),
    ({"user": "Alice"}, "is not a valid user name"),
])
def test_backup_refuses_bad_input_before_the_engine(tmp_path, kwargs, words):
    with pytest.raises(Exit) as caught:
        backup.backup(context(tmp_path), **kwargs)
    assert words in caught.value.message
    assert not (tmp_path / "backups").exists()


@pytest.mark.parametrize("kwargs, words", [
    ({"from_": "x.tar"}, "Say what to restore: --user NAME, --share NAME or --hub"),
    ({"share": "physics", "user": "alice", "from_": "x.tar"}, "Say what to restore"),
    ({"share": "Phys ics", "from_": "x.tar"}, "'Phys ics' is not a valid group name"),
    ({"user": "alice", "hub": True, "from_": "x.tar"}, "Say what to restore"),
    ({"user": "alice"}, "Say which archive to restore with --from FILE"),
    ({"user": "a;rm -rf /", "from_": "x.tar"}, "is not a valid user name"),
    ({"user": "alice", "from_": "missing.tar"}, "No backup missing.tar"),
    ({"user": "alice", "from_": "x.tar", "max_size": "lots"}, "--max-size: 'lots' is not a size"),
])
def test_restore_refuses_bad_input_before_the_engine(tmp_path, kwargs, words):
    with pytest.raises(Exit) as caught:
        backup.restore(context(tmp_path), **kwargs)
    assert words in caught.value.message


def write_archive(folder: Path, name: str, data: bytes, with_sidecar=True) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes(data)
    if with_sidecar:
        (folder / f"{name}.sha256").write_text(sidecar(data, name))
    return folder / name


def test_restore_needs_the_checksum_file_beside_the_archive(tmp_path):
    write_archive(tmp_path / "backups", "a.tar", make_archive(volume()), with_sidecar=False)
    with pytest.raises(Exit) as caught:
        backup.restore(context(tmp_path), user="alice", from_="a.tar")
    assert "has no checksum file a.tar.sha256 beside it" in caught.value.message


def test_restore_refuses_the_wrong_kind_or_user_before_the_engine(tmp_path):
    write_archive(tmp_path / "backups", "a.tar", make_archive(volume()))
    with pytest.raises(Exit) as caught:
        backup.restore(context(tmp_path), user="bob", from_="a.tar")
    assert "alice's backup, not bob's: restore it with --user alice" in caught.value.message
    with pytest.raises(Exit) as caught:
        backup.restore(context(tmp_path), hub=True, from_="a.tar")
    assert "restore it with --user alice" in caught.value.message


def test_a_shared_folders_archive_restores_only_as_that_groups_share(tmp_path):
    meta = metadata(kind="share", volume="proj-share-physics", group="physics")
    write_archive(tmp_path / "backups", "s.tar", make_archive(volume(), meta=meta))
    for kwargs, says in [({"share": "chem"}, "the shared folder of physics, not of chem: "
                                             "restore it with --share physics"),
                         ({"user": "alice"}, "is a backup of a shared folder: restore it with "
                                             "--share physics"),
                         ({"hub": True}, "restore it with --share physics")]:
        with pytest.raises(Exit) as caught:
            backup.restore(context(tmp_path), from_="s.tar", **kwargs)
        assert says in caught.value.message
    write_archive(tmp_path / "backups", "a.tar", make_archive(volume()))
    with pytest.raises(Exit, match="restore it with --user alice"):
        backup.restore(context(tmp_path), share="physics", from_="a.tar")


def test_a_share_archive_without_its_group_is_refused(tmp_path):
    meta = metadata(kind="share", volume="proj-share-physics")
    write_archive(tmp_path / "backups", "s.tar", make_archive(volume(), meta=meta))
    with pytest.raises(Exit, match="shared folder's archive whose metadata names no group"):
        backup.restore(context(tmp_path), share="physics", from_="s.tar")


def test_restore_refuses_what_is_not_an_archive(tmp_path):
    write_archive(tmp_path / "backups", "notes.tar", b"just some text\n" * 100)
    with pytest.raises(Exit) as caught:
        backup.restore(context(tmp_path), user="alice", from_="notes.tar")
    assert "Refused notes.tar" in caught.value.message and "Nothing was changed" in caught.value.message


def test_backup_folder_flag_beats_config_beats_default(tmp_path):
    assert backup.backup_folder(context(tmp_path)) == tmp_path / "backups"
    assert backup.backup_folder(context(tmp_path, dir="/srv/b")) == Path("/srv/b")
    assert backup.backup_folder(context(tmp_path, dir="/srv/b"), "rel") == tmp_path / "rel"
    (tmp_path / "afile").write_text("")
    with pytest.raises(Exit, match="is a file"):
        backup.backup_folder(context(tmp_path), "afile")


def test_backup_folder_is_made_private(tmp_path):
    folder = tmp_path / "deep" / "backups"
    backup.ensure_folder(folder)
    assert oct(folder.stat().st_mode & 0o777) == oct(0o700)


def test_listing_an_empty_or_missing_folder(tmp_path, capsys):
    backup.backup(context(tmp_path), list_=True)
    assert "no backups in" in capsys.readouterr().out
    write_archive(tmp_path / "backups", "p-user-alice-20260101T000000Z.tar", make_archive(volume()))
    (tmp_path / "backups" / "p-user-bob-20260101T000000Z.tar.partial").write_bytes(b"")
    backup.backup(context(tmp_path), list_=True)
    out = capsys.readouterr().out
    assert "2023-11-14 22:13:20" in out and "user alice" in out and "1 unfinished" in out


TERMINAL_TRAPS = "\x1b]0;pwned\x07\x1b[2J"  # retitles the window, then clears the screen


def test_listing_shows_what_an_archive_says_escaped(tmp_path, capsys):
    crafted = make_archive(volume(), meta=metadata(user=TERMINAL_TRAPS,
                                                   project="p\x1b[31m", created="\r2023"))
    write_archive(tmp_path / "backups", "p-user-x-20260101T000000Z.tar", crafted)
    backup.backup(context(tmp_path), list_=True)
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out
    assert "user \\x1b]0;pwned\\x07\\x1b[2J" in out and "p\\x1b[31m" in out


def test_restore_names_the_archives_user_escaped(tmp_path):
    crafted = make_archive(volume(), meta=metadata(user=TERMINAL_TRAPS))
    write_archive(tmp_path / "backups", "a.tar", crafted)
    with pytest.raises(Exit) as caught:
        backup.restore(context(tmp_path), user="alice", from_="a.tar")
    assert "\x1b" not in caught.value.message
    assert "\\x1b]0;pwned\\x07\\x1b[2J's backup, not alice's" in caught.value.message


@pytest.mark.parametrize("member", [
    Member(f"data/{TERMINAL_TRAPS}", data=b"#!", mode=0o4755),  # refused: setuid
    Member(f"data/{TERMINAL_TRAPS}", "symlink", mode=0o777, link=f"/{TERMINAL_TRAPS}"),
    Member(f"data/{TERMINAL_TRAPS}", "hardlink", link="data/sub"),
    Member(f"{TERMINAL_TRAPS}/x", data=b"x"),  # outside data/
], ids=["setuid", "symlink-outside", "hardlink-to-folder", "outside"])
def test_restore_names_a_refused_member_escaped(tmp_path, member):
    path = write_archive(tmp_path / "backups", "a.tar", make_archive(volume(member)))
    with pytest.raises(Exit) as caught:
        verify(path, hashlib.sha256(path.read_bytes()).hexdigest(), Limits())
    assert "Refused a.tar" in caught.value.message
    assert "\x1b" not in caught.value.message and "\\x1b]0;pwned\\x07" in caught.value.message


def test_lock_name_cannot_be_another_objects_name():
    # "." is in no project name (settings refuse it) and in no escaped user name.
    assert volume_helper.lock_name("proj-user-a-2eb") == "proj-user-a-2eb.lock"


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_shows_bytes_and_rate_on_a_terminal_only():
    shown = Tty()
    progress = store.Progress("backing up user alice", stream=shown)
    progress.shown = -1.0  # as if the last line was long ago
    progress.add(5_000_000)
    progress.close()
    assert "backing up user alice: 5.0 MB" in shown.getvalue() and "/s" in shown.getvalue()
    quiet = io.StringIO()
    progress = store.Progress("x", stream=quiet)
    progress.add(5_000_000)
    progress.close()
    assert quiet.getvalue() == ""


@pytest.mark.parametrize("text, ns", [
    ("2026-11-26T09:22:47.04580277Z", 1795684967045802770),
    ("2018-10-01T15:37:48-07:00", 1538433468000000000),
    ("yesterday", None), ("", None),
])
def test_engine_times_parse_to_nanoseconds(text, ns):
    assert volume_helper.parse_engine_time(text) == ns
