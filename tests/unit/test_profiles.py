"""tasks.profiles: profiles.toml checked against userlist's groups, every problem with its
line; the catalog the hub gets; what the host cannot give."""
import json

import pytest
from invoke.context import MockContext
from invoke.exceptions import Exit
from invoke.runners import Result

from tasks.limits import Limits
from tasks.profilehost import check_on_host, hub_env
from tasks.profiles import (NO_GPU, Profile, Profiles, check_group_name, key_lines, load_profiles,
                            parse_profiles, share_volume)
from tasks.userlist import parse_userlist

USERS = parse_userlist("ann admin instructor=physics\nbob group=physics,ml\ncy group=chem\n")
ENV = Limits(mem_bytes=2 << 30, cpus=1.0, pids=512)

GOOD = '''\
# what users may run
[[profiles]]
name = "python"
description = "Python 3"
default = true

[[profiles]]
name = "physics"
description = "Physics 101"
build = "images/physics"
memory = "4G"
cpus = 2
groups = ["physics"]

[[profiles]]
name = "chem"
image = "quay.io/jupyter/scipy-notebook:2024-10-07"
memory = "1.5G"
cpus = 0.5
groups = ["chem"]

[[profiles]]
name = "gpu"
build = "images/physics"
gpus = 1
groups = ["ml"]

[[shares]]
group = "physics"

[[shares]]
group = "chem"
writable = "everyone"
'''


@pytest.fixture
def images(tmp_path):
    (tmp_path / "physics").mkdir()
    (tmp_path / "physics" / "Dockerfile").write_text("FROM x\n")
    return tmp_path


def parse(text, images, users=USERS):
    return parse_profiles(text, users, ENV, images)


def problems_of(text, images, users=USERS):
    with pytest.raises(Exit) as caught:
        parse(text, images, users)
    return caught.value.message


def test_a_good_file_gives_each_profile_its_limits_image_and_groups(images):
    profiles = parse(GOOD, images)
    python, physics, chem, gpu = profiles.profiles
    assert python == Profile(name="python", description="Python 3", mem_bytes=2 << 30, cpus=1.0,
                             default=True, line=2)
    assert (physics.build, physics.mem_bytes, physics.cpus, physics.groups) == (
        "physics", 4 << 30, 2.0, ("physics",))
    assert (chem.image, chem.mem_bytes, chem.cpus) == (
        "quay.io/jupyter/scipy-notebook:2024-10-07", int(1.5 * (1 << 30)), 0.5)
    assert gpu.gpus == 1 and gpu.mem_bytes == 2 << 30  # .env's memory where it says none
    assert profiles.default is python
    assert profiles.builds == ("physics",)
    assert profiles.pulls == ("quay.io/jupyter/scipy-notebook:2024-10-07",)
    assert [(s.group, s.writable) for s in profiles.shares] == [
        ("physics", "instructors"), ("chem", "everyone")]


def test_key_lines_finds_each_entry_and_key():
    lines = key_lines(GOOD)
    assert lines[("profiles", 0)] == {"": 2, "name": 3, "description": 4, "default": 5}
    assert lines[("profiles", 1)]["memory"] == 11
    assert lines[("shares", 1)] == {"": 31, "group": 32, "writable": 33}


def test_no_file_means_no_profiles(tmp_path):
    assert load_profiles(tmp_path, USERS, ENV) is None


def test_load_profiles_reads_the_project_file(tmp_path):
    (tmp_path / "images" / "physics").mkdir(parents=True)
    (tmp_path / "images" / "physics" / "Dockerfile").write_text("FROM x\n")
    (tmp_path / "profiles.toml").write_text(GOOD)
    assert len(load_profiles(tmp_path, USERS, ENV).profiles) == 4


def with_line(text, number, line):
    """GOOD with line `number` (1-based) replaced by `line`."""
    lines = text.splitlines()
    lines[number - 1] = line
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("number, line, says", [
    (13, 'groups = ["phyiscs"]', "profiles.toml:13: profile physics: unknown group 'phyiscs'; "
                                 "userlist's groups: physics, ml, chem."),
    (10, 'build = "images/nothere"', "profiles.toml:10: profile physics: build = "
                                     "'images/nothere': there is no images/nothere/Dockerfile"),
    (10, 'build = "notebook"', "notebook/ is the deployment's own image"),
    (10, 'build = "images/hub"', "profiles.toml:10: profile physics: build = 'images/hub' is "
                                 "not a folder like"),
    (11, 'memory = "lots"', "profiles.toml:11: profile physics: memory='lots' is not a size "
                            "like 2G, 1.5G or 512M"),
    (11, 'memory = "100M"', "profiles.toml:11: profile physics: memory='100M' is too small"),
    (11, 'memory = true', "profiles.toml:11: profile physics: memory=True is not a size"),
    (12, 'cpus = "two"', "profiles.toml:12: profile physics: cpus='two' is not a number of "
                         "cores"),
    (12, 'gpus = -1', "profiles.toml:12: profile physics: gpus = -1 is not a number of GPUs"),
    (13, 'groups = []', "profiles.toml:7: profile physics names no group that may use it"),
    (13, '', "profiles.toml:7: profile physics names no group that may use it"),
    (13, 'memroy = "4G"', "profiles.toml:13: unknown key 'memroy' in a profile"),
    (8, 'name = "Physics 1"', "profiles.toml:8: name = 'Physics 1' is not a valid profile name"),
    (8, 'name = "python"', "profiles.toml:8: profile python is declared twice (first on line 2)"),
    (8, '', "profiles.toml:7: this profile has no name"),
    (17, 'image = "bad image"', "profiles.toml:17: profile chem: image = 'bad image' is not an "
                                "image reference"),
    (26, 'default = true', "profiles.toml:22: profile gpu is a second default (the first is on "
                           "line 2)"),
    (5, 'groups = ["chem"]', "profiles.toml:1: no profile has default = true"),
    (32, 'group = "bio"', "profiles.toml:32: shared folder: group = 'bio' is not a group of "
                          "userlist"),
    (33, 'writable = "students"', "profiles.toml:33: shared folder of chem: writable = "
                                  "'students' is not"),
    (32, 'group = "physics"', "profiles.toml:32: group physics has a second shared folder "
                              "(the first is on line 28)"),
    (13, 'groups = ["physics"]\nimage = "x:1"', "profiles.toml:10: profile physics has both "
                                                "image and build"),
])

def test_a_bad_file_is_refused_naming_the_line(images, number, line, says):
    message = problems_of(with_line(GOOD, number, line), images)
    assert message.startswith("profiles.toml has problems:\n")
    assert says in message


def test_the_default_profile_may_name_no_groups(images):
    message = problems_of(with_line(GOOD, 5, 'default = true\ngroups = ["chem"]'), images)
    assert "profiles.toml:6: profile python is the default, which everyone may use" in message


def test_a_toml_syntax_error_names_its_line(images):
    message = problems_of(with_line(GOOD, 11, 'memory = 4G'), images)
    assert message.startswith("profiles.toml has problems:\n  profiles.toml:11: ")


def test_a_duplicate_toml_key_names_its_line(images):
    message = problems_of(with_line(GOOD, 12, 'memory = "2G"'), images)
    assert "profiles.toml:12: " in message


def test_every_problem_is_reported_in_line_order(images):
    text = with_line(with_line(GOOD, 33, 'writable = "no"'), 11, 'memory = "x"')
    lines = problems_of(text, images).splitlines()[1:]
    assert [line.split(":")[1] for line in lines] == ["11", "33"]


def test_a_userlist_group_nothing_uses_is_refused_with_its_userlist_line(images):
    users = parse_userlist("ann admin instructor=physics\nbob group=physics,ml\ncy group=chem\n"
                           "dee group=phyiscs\n")
    message = problems_of(GOOD, images, users)
    assert message.startswith("userlist has problems:\n")
    assert "userlist:4: group phyiscs is used by no profile and no shared folder" in message


def test_unknown_top_level_tables_and_an_empty_file_are_refused(images):
    assert "profiles.toml:1: unknown 'profile'" in problems_of('[profile]\nname = "x"\n', images)
    assert "no profile: add at least one [[profiles]]" in problems_of("# nothing\n", images,
                                                                     parse_userlist("a admin"))


@pytest.mark.parametrize("name", ["physics", "a-1", "x_y"])
def test_check_group_name_accepts_group_names(name):
    assert check_group_name(name) == name


@pytest.mark.parametrize("name", ["", "Physics", "../x", "a b", "-x", "a" * 41])
def test_check_group_name_refuses_others(name):
    with pytest.raises(Exit, match="is not a valid group name"):
        check_group_name(name)


# --- the host -------------------------------------------------------------------------------------

class Engine:
    def __init__(self, info):
        self._info = info

    def info(self):
        return self._info


def host(runtimes=None, cores=2, mem=24 << 30):
    return Engine({"NCPU": cores, "MemTotal": mem, "Runtimes": runtimes or {"runc": {}}})


def no_hook():
    return MockContext(run={"command -v nvidia-container-runtime-hook": Result(exited=1)})


def test_gpu_profiles_cannot_start_on_a_host_without_gpus_and_say_so(images):
    profiles, warning = check_on_host(no_hook(), host(), parse(GOOD, images))
    assert warning.startswith("profiles: gpu cannot start here: this host has no GPU")
    assert [p.unavailable for p in profiles.profiles] == ["", "", "", NO_GPU]


def test_an_nvidia_runtime_means_gpus(images):
    profiles, warning = check_on_host(MockContext(), host({"nvidia": {}}), parse(GOOD, images))
    assert warning == "" and all(not p.unavailable for p in profiles.profiles)


def test_a_default_profile_that_needs_a_missing_gpu_is_refused(images):
    text = with_line(GOOD, 5, "groups = [\"ml\"]")
    text = text.replace('gpus = 1\ngroups = ["ml"]', "gpus = 1\ndefault = true")
    with pytest.raises(Exit, match="profile gpu is the default and needs a GPU"):
        check_on_host(no_hook(), host(), parse(text, images))


def test_limits_the_host_cannot_give_are_refused_naming_the_profile(images):
    with pytest.raises(Exit) as caught:
        check_on_host(no_hook(), host(cores=1, mem=3 << 30), parse(GOOD, images))
    message = caught.value.message
    assert "profiles.toml:7: profile physics: cpus=2 is more than this host's 1 cores" in message
    assert "profiles.toml:7: profile physics: memory=4G is more than this host's memory" in message


def test_on_a_swarm_shared_folders_and_gpu_profiles_are_refused_naming_each(images):
    with pytest.raises(Exit) as caught:
        check_on_host(MockContext(), host({"nvidia": {}}), parse(GOOD, images), swarm=object())
    message = caught.value.message
    assert message.count("would be a different, empty folder on each worker") == 2
    assert "profile gpu needs a GPU, which this tool does not give servers on a swarm" in message


def test_without_shares_or_gpus_profiles_pass_on_a_swarm(images):
    text = GOOD[:GOOD.index("[[shares]]")].replace("gpus = 1\n", "")
    profiles, warning = check_on_host(MockContext(), host(), parse(text, images), swarm=object())
    assert warning == "" and len(profiles.profiles) == 4


# --- for the hub ----------------------------------------------------------------------------------

def test_no_profiles_file_gives_the_hub_an_empty_catalog():
    assert hub_env(None, "proj", "proj-notebook:latest", 512) == {"HUB_PROFILES": ""}


def test_the_hub_gets_resolved_images_converted_limits_and_shares(images):
    profiles, _ = check_on_host(no_hook(), host(), parse(GOOD, images))
    catalog = json.loads(hub_env(profiles, "proj", "proj-notebook:latest", 512)["HUB_PROFILES"])
    python, physics, chem, gpu = catalog["profiles"]
    assert python == {"name": "python", "description": "Python 3",
                      "image": "proj-notebook:latest", "mem_bytes": 2 << 30, "cpus": 1.0,
                      "pids": 512, "gpus": 0, "groups": [], "everyone": True, "unavailable": ""}
    assert physics["image"] == "proj-physics:latest" and physics["groups"] == ["physics"]
    assert chem["image"] == "quay.io/jupyter/scipy-notebook:2024-10-07"
    assert gpu["unavailable"] == NO_GPU
    assert catalog["shares"] == [
        {"group": "physics", "volume": "proj-share-physics",
         "path": "/home/jovyan/work/shared-physics", "writable": "instructors"},
        {"group": "chem", "volume": "proj-share-chem",
         "path": "/home/jovyan/work/shared-chem", "writable": "everyone"}]


def test_share_volume_names_carry_the_project():
    assert share_volume("jupyterhub", "physics") == "jupyterhub-share-physics"
    assert Profiles(profiles=()).shares == ()
