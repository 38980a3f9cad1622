"""tasks.names: the tasks must name user objects exactly as DockerSpawner does."""
import pytest
from dockerspawner import DockerSpawner
from hypothesis import given, settings, strategies as st

from tasks.names import (
    PROJECT_LABEL, ROLE_LABEL, USER_LABEL, escape_username, labels, user_volume, user_volume_template,
)
from tasks.userlist import _NAME

spawner_escape = DockerSpawner._escape


@pytest.mark.parametrize("name", [
    "jtyberg", "a.b", "a-b", "a_b", "Ünïcode", "a;rm -rf /", "$(id)", "../etc", "", "-",
    "--", "ALICE", "日本語", "emoji 🎉", "tab\there", "nul\x00", "\x7f", "a" * 300, "é" * 100,
])
def test_escape_matches_dockerspawner(name):
    assert escape_username(name) == spawner_escape(name)


def test_escape_known_values():
    # Written out, so a change in DockerSpawner shows up here as well as above.
    assert escape_username("jtyberg") == "jtyberg"
    assert escape_username("a.b") == "a-2eb"
    assert escape_username("a-b") == "a-2db"
    assert escape_username("Ü") == "-c3-9c"
    assert escape_username("\n") == "-a"


@settings(max_examples=500, deadline=None, database=None)
@given(st.text())
def test_escape_matches_dockerspawner_for_any_text(name):
    escaped = escape_username(name)
    assert escaped == spawner_escape(name)
    assert set(escaped) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")


@settings(max_examples=200, deadline=None, database=None)
@given(st.from_regex(_NAME, fullmatch=True), st.from_regex(_NAME, fullmatch=True))
def test_distinct_userlist_names_never_share_a_container(a, b):
    # Unpadded hex escapes are ambiguous in general ("\x0c2\nb" and "«" both give
    # "-c2-ab"), but not over the characters a userlist name may hold.
    if a != b:
        assert escape_username(a) != escape_username(b)


def test_user_volume():
    assert user_volume("proj", "alice") == "proj-user-alice"
    assert user_volume("proj", "a.b") == "proj-user-a-2eb"
    assert user_volume("jupyterhub", "x_y") == "jupyterhub-user-x-5fy"
    assert user_volume_template("proj") == "proj-user-{username}"


@pytest.mark.parametrize("name", ["alice", "a.b", "x_y-z", "0day"])
def test_names_are_those_a_dockerspawner_makes(name):
    spawner = DockerSpawner(prefix="proj-user", name_template="{prefix}-{username}",
                            user=type("User", (), {"name": name, "url": f"/user/{name}/"})())
    assert user_volume("proj", name) == spawner.format_volume_name(user_volume_template("proj"), spawner)


def test_labels():
    assert labels("proj", "hub-data") == {
        "org.jupyterhub-deploy.project": "proj",
        "org.jupyterhub-deploy.role": "hub-data",
    }
    assert labels("proj", "user-volume", user="alice") == {
        PROJECT_LABEL: "proj", ROLE_LABEL: "user-volume", USER_LABEL: "alice",
    }
    assert USER_LABEL == "org.jupyterhub-deploy.user"
