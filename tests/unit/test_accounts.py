"""tasks.accounts: initial passwords, added for new names only, in a file only we can read."""
import stat
from itertools import count

import pytest

from tasks.accounts import (
    HEADER, PASSWORDS_FILE, ensure_initial_passwords, parse_passwords, plan_passwords,
)


def numbered():
    """A `make` giving pw1, pw2, ... so plans are predictable."""
    numbers = count(1)
    return lambda: f"pw{next(numbers)}"


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_new_file_gets_the_header_and_one_line_per_name():
    text, added, removed = plan_passwords("", ["ann", "bob"], make=numbered())
    assert (added, removed) == (["ann", "bob"], [])
    assert text == HEADER + "ann pw1\nbob pw2\n"
    assert HEADER.startswith("#") and all(line.startswith("# ") for line in HEADER.splitlines())


def test_existing_lines_are_kept_and_only_missing_names_added():
    before = "# mine\nann old-secret\n\nbob  spaced out  \n"
    text, added, _ = plan_passwords(before, ["ann", "bob", "cy", "dee"], make=numbered())
    assert added == ["cy", "dee"]
    assert text == before + "cy pw1\ndee pw2\n"


def test_a_file_without_final_newline_gets_one_before_new_lines():
    assert plan_passwords("ann secret", ["ann", "bob"], make=numbered()) == (
        "ann secret\nbob pw1\n", ["bob"], [])


def test_nothing_to_add_returns_the_text_untouched():
    before = "ann secret"  # not even the final newline is added
    assert plan_passwords(before, ["ann"], make=lambda: pytest.fail("no password needed")) == (
        before, [], [])


def test_a_name_no_longer_in_userlist_loses_its_line_and_comments_stay():
    before = "# mine\nann a\n  gone g\n\ngone2\tg2\n# end\n"
    assert plan_passwords(before, ["ann"]) == ("# mine\nann a\n\n# end\n", [], ["gone", "gone2"])


def test_a_name_listed_again_gets_a_new_password():
    text, _, removed = plan_passwords(HEADER + "ann a\ngone old\n", ["ann"])
    assert removed == ["gone"]
    again, added, _ = plan_passwords(text, ["ann", "gone"], make=numbered())
    assert (added, parse_passwords(again)["gone"]) == (["gone"], "pw1")


def test_removing_every_name_keeps_the_header():
    assert plan_passwords(HEADER + "gone g\n", []) == (HEADER, [], ["gone"])


def test_default_passwords_are_random_and_long_enough():
    text, _, _ = plan_passwords("", ["ann", "bob"])
    passwords = parse_passwords(text)
    assert passwords.keys() == {"ann", "bob"}
    assert passwords["ann"] != passwords["bob"]
    assert all(len(p) >= 16 and " " not in p for p in passwords.values())


def test_parse_passwords():
    text = "# comment\n\n  ann  secret one \nbob x\n   # indented comment\ncy\n"
    assert parse_passwords(text) == {"ann": "secret one", "bob": "x", "cy": ""}


def test_parse_passwords_agrees_with_the_hub_on_tabs():
    # hub/hubauth.py splits on any whitespace; otherwise `inv up` would append a second
    # line for "ann" and the hub would take that one.
    assert parse_passwords("ann\tsecret\n") == {"ann": "secret"}
    assert plan_passwords("ann\tsecret\n", ["ann"]) == ("ann\tsecret\n", [], [])


def test_ensure_writes_a_private_file_in_a_private_new_folder(tmp_path):
    secrets_dir = tmp_path / "secrets"
    assert ensure_initial_passwords(secrets_dir, ("ann", "bob")) == (["ann", "bob"], [])
    path = secrets_dir / PASSWORDS_FILE
    assert mode(path) == 0o600
    assert mode(secrets_dir) == 0o700
    assert parse_passwords(path.read_text()).keys() == {"ann", "bob"}
    assert path.read_text().startswith(HEADER)
    assert sorted(p.name for p in secrets_dir.iterdir()) == [PASSWORDS_FILE], "no temp file left"


def test_second_call_adds_nothing_and_leaves_bytes_alone(tmp_path):
    ensure_initial_passwords(tmp_path, ("ann", "bob"))
    path = tmp_path / PASSWORDS_FILE
    before, inode = path.read_bytes(), path.stat().st_ino
    assert ensure_initial_passwords(tmp_path, ("ann", "bob")) == ([], [])
    assert path.read_bytes() == before
    assert path.stat().st_ino == inode, "not even rewritten"
    assert mode(path) == 0o600


def test_new_name_is_appended_and_old_passwords_kept(tmp_path):
    ensure_initial_passwords(tmp_path, ("ann",))
    path = tmp_path / PASSWORDS_FILE
    before = path.read_text()
    assert ensure_initial_passwords(tmp_path, ("ann", "bob")) == (["bob"], [])
    after = path.read_text()
    assert after.startswith(before)
    assert parse_passwords(after)["ann"] == parse_passwords(before)["ann"]
    assert mode(path) == 0o600


def test_a_removed_name_goes_from_the_file(tmp_path):
    ensure_initial_passwords(tmp_path, ("ann", "bob"))
    path = tmp_path / PASSWORDS_FILE
    kept = parse_passwords(path.read_text())["ann"]
    assert ensure_initial_passwords(tmp_path, ("ann",)) == ([], ["bob"])
    assert parse_passwords(path.read_text()) == {"ann": kept}
    assert mode(path) == 0o600


def test_a_private_file_is_not_touched(tmp_path):
    path = tmp_path / PASSWORDS_FILE
    path.write_text("ann secret\n")
    path.chmod(0o400)  # stricter than 0600 is the operator's choice
    assert ensure_initial_passwords(tmp_path, ("ann",)) == ([], [])
    assert mode(path) == 0o400
