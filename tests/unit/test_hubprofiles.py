"""hub/hubprofiles.py: which profiles a user may start, the form, the mounts, and the refusal
of every spawn option but an allowed profile; and the hub configuration that wires them."""
import asyncio
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from tornado import web

HUB_DIR = Path(__file__).resolve().parents[2] / "hub"
sys.path.insert(0, str(HUB_DIR))  # copied next to jupyterhub_config.py in the image

from hubprofiles import (Hooks, Refused, allowed, choose, default_for, form,  # noqa: E402
                         host_config, load_catalog, memberships, options_from_form,
                         share_mounts)

from tasks.limits import Limits, hub_env  # noqa: E402
from tasks.names import user_volume_template  # noqa: E402


def profile(name, everyone=False, groups=(), image="", mem=2 << 30, cpus=1.0, gpus=0,
            unavailable=""):
    return {"name": name, "description": f"the {name} one", "image": image or f"img-{name}:1",
            "mem_bytes": mem, "cpus": cpus, "pids": 512, "gpus": gpus, "groups": list(groups),
            "everyone": everyone, "unavailable": unavailable}


CATALOG = {
    "profiles": [
        profile("python", everyone=True),
        profile("physics", groups=["physics"], mem=4 << 30, cpus=2.0),
        profile("chem", groups=["chem"], mem=1 << 30, cpus=0.5),
        profile("gpu", groups=["physics"], gpus=1, unavailable="needs a GPU, and this host has none"),
    ],
    "shares": [
        {"group": "physics", "volume": "p-share-physics", "path": "/home/jovyan/work/shared-physics",
         "writable": "instructors"},
        {"group": "chem", "volume": "p-share-chem", "path": "/home/jovyan/work/shared-chem",
         "writable": "everyone"},
    ],
}


def group(name, instructors=()):
    return SimpleNamespace(name=name, properties={"instructors": list(instructors)})


def names(profiles):
    return [p["name"] for p in profiles]


def test_memberships_come_from_the_hub_groups_and_their_instructors():
    groups = [group("physics", ["ann"]), group("chem"), SimpleNamespace(name="x", properties=None)]
    assert memberships("ann", groups) == ({"physics", "chem", "x"}, {"physics"})
    assert memberships("bob", groups) == ({"physics", "chem", "x"}, set())


def test_a_user_in_two_groups_may_use_both_groups_profiles_and_everyones():
    assert names(allowed(CATALOG, {"physics", "chem"})) == ["python", "physics", "chem", "gpu"]
    assert names(allowed(CATALOG, {"chem"})) == ["python", "chem"]
    assert names(allowed(CATALOG, set())) == ["python"]


def test_the_default_is_the_first_group_profile_that_can_start_else_everyones():
    assert default_for(CATALOG, {"chem", "physics"})["name"] == "physics"
    assert default_for(CATALOG, set())["name"] == "python"
    only_gpu = {**CATALOG, "profiles": [CATALOG["profiles"][0], CATALOG["profiles"][3]]}
    assert default_for(only_gpu, {"physics"})["name"] == "python"


def test_no_options_start_the_users_default():
    assert choose(CATALOG, {"chem"}, {})["name"] == "chem"
    assert choose(CATALOG, set(), {})["name"] == "python"


def test_an_allowed_profile_is_granted():
    assert choose(CATALOG, {"chem", "physics"}, {"profile": "physics"})["mem_bytes"] == 4 << 30


@pytest.mark.parametrize("options, status, says", [
    ({"profile": "physics"}, 403, "You may not start profile 'physics'; yours: python, chem."),
    ({"profile": "nope"}, 403, "You may not start profile 'nope'"),
    ({"profile": ["chem", "physics"]}, 403, "You may not start profile 'list'"),
    ({"image": "evil:latest"}, 403, "Only a profile can be chosen here, not image."),
    ({"profile": "chem", "image": "evil:latest"}, 403, "not image"),
    ({"profile": "chem", "mem_limit": "64G", "cpu_limit": 8}, 403, "not cpu_limit, mem_limit"),
    (["profile", "chem"], 400, "must be a JSON object"),
])
def test_anything_else_is_refused_before_anything_starts(options, status, says):
    with pytest.raises(Refused) as caught:
        choose(CATALOG, {"chem"}, options)
    assert caught.value.status == status and says in caught.value.message


def test_a_profile_that_cannot_start_on_this_host_is_refused_saying_why():
    with pytest.raises(Refused, match="Profile gpu cannot start on this host: it needs a GPU"):
        choose(CATALOG, {"physics"}, {"profile": "gpu"})


def test_group_folders_are_writable_by_instructors_read_only_for_students():
    assert share_mounts(CATALOG, {"physics"}, {"physics"}) == {
        "p-share-physics": {"bind": "/home/jovyan/work/shared-physics", "mode": "rw"}}
    assert share_mounts(CATALOG, {"physics"}, set()) == {
        "p-share-physics": {"bind": "/home/jovyan/work/shared-physics", "mode": "ro"}}


def test_a_folder_writable_by_everyone_and_none_for_other_groups():
    assert share_mounts(CATALOG, {"chem"}, set()) == {
        "p-share-chem": {"bind": "/home/jovyan/work/shared-chem", "mode": "rw"}}
    assert share_mounts(CATALOG, set(), set()) == {}


BASE = {"cap_drop": ["ALL"], "security_opt": ["no-new-privileges"], "memswap_limit": 2 << 30,
        "pids_limit": 512}


def test_host_config_keeps_the_hardening_and_takes_the_profiles_memory():
    config = host_config(BASE, CATALOG["profiles"][1])
    assert config == {"cap_drop": ["ALL"], "security_opt": ["no-new-privileges"],
                      "memswap_limit": 4 << 30, "pids_limit": 512}


def test_only_a_gpu_profile_asks_docker_for_gpus():
    assert host_config(BASE, CATALOG["profiles"][3])["device_requests"] == [
        {"count": 1, "capabilities": [["gpu"]]}]
    assert "device_requests" not in host_config(BASE, CATALOG["profiles"][2])
    no_limit = host_config(BASE, profile("free", mem=0))
    assert "memswap_limit" not in no_limit


def test_one_profile_means_no_form():
    assert form(CATALOG, set()) == ""


def test_the_form_offers_each_allowed_profile_with_the_default_checked():
    html = form(CATALOG, {"physics"})
    assert html.count('type="radio" name="profile"') == 3
    assert 'value="physics" checked' in html and 'value="python">' in html
    assert "4 GB memory, 2 CPUs" in html and "the physics one" in html
    assert 'value="gpu" disabled' in html and "cannot start here: it needs a GPU" in html
    assert "chem" not in html


def test_the_form_escapes_descriptions():
    evil = {**CATALOG, "profiles": [profile("python", everyone=True),
                                     {**profile("x", groups=["g"]), "description": "<script>"}]}
    assert "<script>" not in form(evil, {"g"}) and "&lt;script&gt;" in form(evil, {"g"})


def test_form_fields_become_options_without_the_xsrf_token():
    assert options_from_form({"profile": ["chem"], "_xsrf": ["t"]}) == {"profile": "chem"}
    assert options_from_form({"image": ["evil"]}) == {"image": "evil"}  # refused later


def test_a_catalog_that_inv_up_did_not_write_refuses_to_start():
    with pytest.raises(SystemExit, match="HUB_PROFILES is not what `inv up` writes"):
        load_catalog("{}")
    two = {**CATALOG, "profiles": [profile("a", everyone=True), profile("b", everyone=True)]}
    with pytest.raises(SystemExit, match="no single default profile"):
        load_catalog(json.dumps(two))
    assert load_catalog(json.dumps(CATALOG)) == CATALOG


# --- on a spawner ---------------------------------------------------------------------------

def spawner_of(name, groups):
    from hubspawner import ReadyDockerSpawner

    user = SimpleNamespace(name=name, groups=groups)
    spawner = ReadyDockerSpawner(user=user, orm_spawner=SimpleNamespace(
        user_options={"x": 1}, server=None, name=""))
    spawner.image = "before:1"
    return spawner


HOOKS = Hooks(CATALOG, BASE, {"p-user-{username}": "/home/jovyan/work"})


def test_apply_sets_image_limits_and_folders_and_forgets_the_options():
    spawner = spawner_of("ann", [group("physics", ["ann"])])
    asyncio.run(HOOKS.apply_user_options(spawner, {"profile": "physics"}))
    assert (spawner.image, spawner.mem_limit, spawner.cpu_limit) == ("img-physics:1", 4 << 30, 2.0)
    assert spawner.volumes == {"p-user-{username}": "/home/jovyan/work", "p-share-physics": {
        "bind": "/home/jovyan/work/shared-physics", "mode": "rw"}}
    assert spawner.extra_host_config["memswap_limit"] == 4 << 30
    assert spawner.profile_name == "physics"
    assert spawner.orm_spawner.user_options == {}


def test_apply_refuses_a_forged_image_with_403_and_changes_nothing():
    spawner = spawner_of("bob", [group("chem")])
    with pytest.raises(web.HTTPError) as caught:
        asyncio.run(HOOKS.apply_user_options(spawner, {"image": "evil:latest"}))
    assert caught.value.status_code == 403
    assert spawner.image == "before:1"
    assert spawner.orm_spawner.user_options == {}  # not reused by the next start


def test_a_second_start_takes_nothing_from_the_first():
    spawner = spawner_of("ann", [group("physics", ["ann"])])
    asyncio.run(HOOKS.apply_user_options(spawner, {"profile": "physics"}))
    spawner.user.groups = []  # taken out of physics
    asyncio.run(HOOKS.apply_user_options(spawner, {}))
    assert (spawner.image, spawner.mem_limit) == ("img-python:1", 2 << 30)
    assert spawner.volumes == {"p-user-{username}": "/home/jovyan/work"}


def test_allowed_images_are_the_users_profiles_images():
    assert HOOKS.allowed_images(spawner_of("cy", [group("chem")])) == {
        "python": "img-python:1", "chem": "img-chem:1"}


# --- the configuration ------------------------------------------------------------------------

ENV = {
    "COMPOSE_PROJECT_NAME": "proj", "DOCKER_NETWORK_NAME": "proj-network",
    "DOCKER_NOTEBOOK_IMAGE": "img:1", "HUB_AUTHENTICATOR": "native", "JUPYTERHUB_ADMINS": "ann",
    "JUPYTERHUB_USERS": "bob", "USER_VOLUME_TEMPLATE": user_volume_template("proj"),
    **hub_env(Limits()), "HUB_SECRETS_DIR": None, "GITHUB_URL": None,
    "GITHUB_ALLOWED_ORGS": None, "ACME_DOMAIN": None,
}


def test_without_profiles_the_hub_is_configured_as_before(hub_config):
    c = hub_config({**ENV, "HUB_PROFILES": None})
    assert "options_form" not in c.Spawner and "apply_user_options" not in c.Spawner
    assert c.DockerSpawner.allowed_images == {"default": "img:1"}


def test_with_profiles_the_hub_offers_and_enforces_them(hub_config):
    c = hub_config({**ENV, "HUB_PROFILES": json.dumps(CATALOG)})
    hooks = c.Spawner.apply_user_options.__self__
    assert hooks.catalog == CATALOG
    assert hooks.base_volumes == {"proj-user-{username}": "/home/jovyan/work"}
    assert hooks.base_host_config["cap_drop"] == ["ALL"]
    assert c.Spawner.options_form.__self__ is hooks
    assert c.Spawner.options_from_form is options_from_form
    assert c.DockerSpawner.allowed_images.__self__ is hooks
    assert c.Spawner.pre_spawn_hook.__qualname__ == "Hooks.after.<locals>.hook"
