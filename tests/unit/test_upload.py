"""tasks.upload: what a remote host's copy of the project must lose to equal the project."""
import pytest
from invoke.exceptions import Exit

from tasks.upload import BUNDLE_MARK, bundle, own_folder, plan_removals


def test_what_the_bundle_does_not_hold_is_removed_topmost_first():
    found = ["hub", "hub/Dockerfile", "hub/stray.txt", "old", "old/a", "old/a/b", "secrets",
             "secrets/oauth.env", BUNDLE_MARK]
    names = {"hub", "hub/Dockerfile", "secrets"}
    assert plan_removals(found, names) == ["hub/stray.txt", "old", "secrets/oauth.env"]


@pytest.mark.parametrize("path", ["", "/etc", "../x", "a/../../x", "a//b", "./a", "a/."])
def test_a_path_that_could_leave_the_copy_is_never_removed(path):
    assert plan_removals([path], set()) == []


def test_the_bundle_lists_every_path_it_holds(tmp_path):
    (tmp_path / "hub").mkdir()
    (tmp_path / "hub" / "Dockerfile").write_text("FROM x\n")
    (tmp_path / "userlist").write_text("admin admin\n")
    assert bundle(tmp_path).names == {"hub", "hub/Dockerfile", "userlist"}


@pytest.mark.parametrize("folder", ["", ".", "/", "./", "..", "a/../..", "/srv/.."])
def test_a_remote_dir_that_is_not_a_folder_of_its_own_is_refused(folder):
    with pytest.raises(Exit, match="must name a folder of the project's copy's own"):
        own_folder(folder)


@pytest.mark.parametrize("folder", ["jupyterhub-deploy", "/srv/jupyterhub-deploy", "deploy/hub one"])
def test_a_folder_of_its_own_is_kept(folder):
    assert own_folder(folder) == folder


def test_the_folder_of_a_file_bundled_alone_is_kept():
    found = [".build", ".build/ca-bundle.pem", ".build/old.pem"]
    assert plan_removals(found, {".build/ca-bundle.pem"}) == [".build/old.pem"]
