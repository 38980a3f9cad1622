"""tasks.secretfiles: secrets/ and all it holds are the owner's alone, the certificate aside."""
import pytest
from invoke.exceptions import Exit

from tasks.secretfiles import open_to_others, require_private


@pytest.fixture
def root(tmp_path):
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    secrets.chmod(0o700)
    for name in ("jupyterhub.key", "initial-passwords", "hub-api-token", "oauth.env"):
        (secrets / name).write_text("x")
        (secrets / name).chmod(0o600)
    (secrets / "jupyterhub.crt").write_text("c")
    (secrets / "jupyterhub.crt").chmod(0o644)
    return tmp_path


def test_private_secrets_and_a_public_certificate_pass(root):
    assert open_to_others(root) == []
    require_private(root)


def test_no_secrets_folder_yet_passes(tmp_path):
    assert open_to_others(tmp_path) == []


@pytest.mark.parametrize("name, holds", [
    ("jupyterhub.key", "the hub's private key"),
    ("initial-passwords", "the users' first passwords"),
    ("hub-api-token", "the tool's token for the hub's API"),
    ("oauth.env", "the GitHub client secret"),
    ("notes.txt", "a secret the hub reads"),
])
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_a_file_others_may_reach_is_refused_with_its_chmod(root, name, holds, mode):
    path = root / "secrets" / name
    path.write_text("x")
    path.chmod(mode)
    with pytest.raises(Exit) as caught:
        require_private(root)
    assert caught.value.message == (
        f"secrets/{name} can be read by other users (mode {mode:04o}) and holds {holds}: "
        f"run `chmod 600 secrets/{name}`.")


def test_the_folder_itself_is_refused_with_its_chmod(root):
    (root / "secrets").chmod(0o755)
    with pytest.raises(Exit) as caught:
        require_private(root)
    assert caught.value.message == ("secrets can be read by other users (mode 0755) and holds "
                                    "every secret below: run `chmod 700 secrets`.")


def test_every_problem_is_named_at_once_and_folders_below_get_700(root):
    (root / "secrets").chmod(0o750)
    (root / "secrets" / "jupyterhub.key").chmod(0o644)
    (root / "secrets" / "more").mkdir(mode=0o755)
    (root / "secrets" / "more").chmod(0o755)
    (root / "secrets" / "more" / "a b").write_text("x")
    (root / "secrets" / "more" / "a b").chmod(0o604)
    assert open_to_others(root) == [
        ("secrets", 0o750, True), ("secrets/jupyterhub.key", 0o644, False),
        ("secrets/more", 0o755, True), ("secrets/more/a b", 0o604, False)]
    with pytest.raises(Exit) as caught:
        require_private(root)
    lines = caught.value.message.splitlines()
    assert len(lines) == 4
    assert lines[2].endswith("run `chmod 700 secrets/more`.")
    assert lines[3].endswith("run `chmod 600 'secrets/more/a b'`.")


def test_a_link_is_judged_by_what_it_points_at(root, tmp_path_factory):
    outside = tmp_path_factory.mktemp("elsewhere") / "key.pem"
    outside.write_text("k")
    outside.chmod(0o644)
    (root / "secrets" / "jupyterhub.key").unlink()
    (root / "secrets" / "jupyterhub.key").symlink_to(outside)
    assert open_to_others(root) == [("secrets/jupyterhub.key", 0o644, False)]


def test_a_certificate_only_counts_as_public_at_the_top(root):
    (root / "secrets" / "old").mkdir(mode=0o700)
    (root / "secrets" / "old").chmod(0o700)
    (root / "secrets" / "old" / "jupyterhub.crt").write_text("c")
    (root / "secrets" / "old" / "jupyterhub.crt").chmod(0o644)
    assert [p for p, _, _ in open_to_others(root)] == ["secrets/old/jupyterhub.crt"]
