"""Groups and profiles end to end, on the real engine and in a real browser: who may run which
image with which limits, the choice before a server starts, the groups' shared folders, the
hub refusing forged requests, and `inv up` refusing bad files before anything changes.

The tests share one deployment and run in file order, each building on the one before; a
screenshot of each browser step goes to tests/artifacts/profiles/.
"""
import re
import time

import pytest

from browser import Person, Screenshots, chromium, hub_api, wait_until
from deployment_support import backed_up
from hubclient import HubClient

pytestmark = pytest.mark.integration

LABEL = "org.jupyterhub-deploy"
USERLIST = """\
ann admin instructor=physics
bob group=physics group=chem
cy group=chem
dee
"""
PROFILES = """\
[[profiles]]
name = "python"
description = "Python for everyone"
default = true

[[profiles]]
name = "chem"
description = "Chemistry: the usual image, less memory"
memory = "640M"
cpus = 0.5
groups = ["chem"]

[[profiles]]
name = "physics"
description = "Physics: its own image"
build = "images/physics"
memory = "768M"
cpus = 1
groups = ["physics"]

[[profiles]]
name = "gpu"
description = "Deep learning on a GPU"
gpus = 1
groups = ["physics"]

[[shares]]
group = "physics"

[[shares]]
group = "chem"
writable = "everyone"
"""
PHYSICS_DOCKERFILE = """\
ARG NOTEBOOK_IMAGE
FROM ${NOTEBOOK_IMAGE}
USER root
RUN echo physics > /etc/jupyterhub-deploy-profile
USER 1000
"""
MIB = 1 << 20


def write_files(d, userlist=USERLIST, profiles=PROFILES):
    (d.root / "userlist").write_text(userlist)
    (d.root / "profiles.toml").write_text(profiles)
    (d.root / "images" / "physics").mkdir(parents=True, exist_ok=True)
    (d.root / "images" / "physics" / "Dockerfile").write_text(PHYSICS_DOCKERFILE)


@pytest.fixture(scope="module")
def project(deployment):
    deployment.env["USER_MEM_LIMIT"] = "1G"  # .env's limits: what the default profile gets
    write_files(deployment)
    return deployment


# --- bad files, before anything exists -----------------------------------------------------------

@pytest.mark.parametrize("change, says", [
    (("userlist", "cy group=chem", "cy group=chem,phyiscs"),
     "userlist:3: group phyiscs is used by no profile and no shared folder in profiles.toml"),
    (("profiles", 'groups = ["chem"]', 'groups = ["chem", "bio"]'),
     "profiles.toml:11: profile chem: unknown group 'bio'; userlist's groups: physics, chem."),
    (("profiles", 'build = "images/physics"', 'build = "images/nothere"'),
     "profiles.toml:16: profile physics: build = 'images/nothere': there is no "
     "images/nothere/Dockerfile"),
    (("profiles", 'memory = "640M"', 'memory = "lots"'),
     "profiles.toml:9: profile chem: memory='lots' is not a size like 2G"),
    (("profiles", 'groups = ["chem"]', ""),
     "profiles.toml:6: profile chem names no group that may use it"),
    (("profiles", 'name = "gpu"', 'name = "chem"'),
     "profiles.toml:22: profile chem is declared twice (first on line 6)"),
    (("userlist", "dee", "dee group=chem\ndee"), "userlist:5: dee is listed twice (first on line 4)"),
])
def test_bad_files_are_refused_with_their_lines_before_anything_changes(project, docker_client,
                                                                         change, says):
    which, old, new = change
    files = {"userlist": USERLIST, "profiles": PROFILES}
    files[which] = files[which].replace(old, new, 1)
    write_files(project, files["userlist"], files["profiles"])
    try:
        result = project.inv("up")
    finally:
        write_files(project)
    assert result.returncode != 0
    assert says in result.output and "Traceback" not in result.output, result.output
    assert project.labelled(docker_client, "containers") == []
    assert project.labelled(docker_client, "volumes") == []


@pytest.fixture(scope="module")
def hub(project):
    result = project.inv_ok("build", "up")
    print(f"inv build up (profiles): {result.seconds:.1f} s\n{result.stdout[-3000:]}")
    project.up_output = result.output
    return project


def test_inv_up_builds_the_profile_image_makes_the_folders_and_syncs_the_groups(hub, docker_client):
    out = hub.up_output
    assert re.search(rf"image {hub.project}-physics:latest: built", out), out
    assert f"shared folder of physics: {hub.project}-share-physics, made (owned by uid 1000)" in out
    assert "groups: physics (2), chem (2)" in out
    image = docker_client.images.get(f"{hub.project}-physics:latest")
    assert image.labels[f"{LABEL}.project"] == hub.project
    assert image.labels[f"{LABEL}.role"] == "profile-image"
    api = hub_api(hub)
    physics = api.expect("GET", "groups/physics")[1]
    assert sorted(physics["users"]) == ["ann", "bob"]
    assert physics["properties"]["instructors"] == ["ann"]
    again = hub.inv_ok("up")
    assert "nothing changed since the last `inv up`" in again.output, again.output


def test_a_gpu_profile_on_a_host_without_gpus_is_named_by_inv_up(hub):
    assert ("warning: profiles: gpu cannot start here: this host has no GPU for Docker"
            in hub.up_output)


# --- in the browser -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def people(hub):
    shots = Screenshots("profiles")
    made = {}
    with chromium(hub.cafile) as browser:
        def person(name):
            if name not in made:
                made[name] = Person(browser, hub.url, name, shots)
            return made[name]

        yield person
        for p in made.values():
            p.close()


def server_of(d, client, name):
    found = [ct for ct in d.labelled(client, "containers")
             if ct.labels.get(f"{LABEL}.user") == name and ct.labels.get(f"{LABEL}.role") == "user-server"]
    return found[0] if found else None


def mounts_of(container) -> dict:
    container.reload()
    return {m["Destination"]: (m.get("Name"), m["RW"]) for m in container.attrs["Mounts"]}


def choices_on_spawn_page(person) -> dict:
    """The profiles the spawn page offers: name -> whether it can be chosen."""
    person.wait_for("#jupyterhub-deploy-profiles", "the choice of profiles", "/hub/spawn", 90)
    radios = person.page.locator("input[name=profile]").all()
    return {radio.get_attribute("value"): radio.is_enabled() for radio in radios}


def start_with(person, profile: str):
    person.page.locator(f"#profile-{profile}").check()
    person.shot(f"chose-{profile}")
    person.page.locator("form input[type=submit], form button[type=submit]").first.click()


def test_a_user_in_two_groups_sees_both_groups_profiles_and_gets_the_one_chosen(hub, people,
                                                                                 docker_client):
    bob = people("bob")
    bob.log_in_with_password(hub.password("bob"))
    offered = choices_on_spawn_page(bob)
    bob.shot("choice")
    assert offered == {"python": True, "chem": True, "physics": True, "gpu": False}
    text = bob.page.locator("#jupyterhub-deploy-profiles").inner_text()
    assert "Physics: its own image" in text and "cannot start here" in text
    assert bob.page.locator("#profile-chem").is_checked()  # his default: his first group's
    start_with(bob, "physics")
    bob.wait_for_own_server()
    server = server_of(hub, docker_client, "bob")
    config = server.attrs["HostConfig"]
    assert server.attrs["Config"]["Image"] == f"{hub.project}-physics:latest"
    assert (config["Memory"], config["MemorySwap"]) == (768 * MIB, 768 * MIB)
    assert (config["CpuQuota"], config["CpuPeriod"]) == (100_000, 100_000)
    assert not config.get("DeviceRequests")
    assert server.labels[f"{LABEL}.profile"] == "physics"
    code, out = server.exec_run(["cat", "/etc/jupyterhub-deploy-profile"], user="1000")
    assert (code, out.strip()) == (0, b"physics")


def test_a_user_in_no_group_sees_no_choice_and_gets_the_default(hub, people, docker_client):
    dee = people("dee")
    dee.log_in_with_password(hub.password("dee"))
    dee.wait_for_own_server()  # straight into JupyterLab: no choice page on the way
    dee.shot("lab-without-choice")
    server = server_of(hub, docker_client, "dee")
    assert server.attrs["Config"]["Image"] == hub.image("notebook")
    assert server.attrs["HostConfig"]["Memory"] == 1024 * MIB  # USER_MEM_LIMIT
    assert server.labels[f"{LABEL}.profile"] == "python"
    assert list(mounts_of(server)) == ["/home/jovyan/work"]


WRITE = "open('/home/jovyan/work/shared-physics/notes.txt', 'w').write('from ann')"
# One line: the notebook's editor indents typed lines after a `try:` by itself, so a block
# typed key by key is not the code sent. touch's last words name the errno it got.
READ_AND_TRY = (
    "import subprocess; open('/home/jovyan/work/shared-physics/notes.txt').read() + ' | ' + "
    "(subprocess.run(['touch', '/home/jovyan/work/shared-physics/mine.txt'], capture_output=True,"
    " text=True).stderr.rsplit(': ', 1)[-1].strip() or 'wrote')")


def test_an_instructor_writes_the_group_folder_and_a_student_reads_it_but_cannot_write(
        hub, people, docker_client):
    ann = people("ann")
    ann.log_in_with_password(hub.password("ann"))
    assert choices_on_spawn_page(ann) == {"python": True, "physics": True, "gpu": False}
    start_with(ann, "physics")
    ann.wait_for_own_server()
    assert ann.run_cell_in_lab(WRITE) == "8"
    bob = people("bob")  # his server runs since the first browser test
    assert bob.run_cell_in_lab(READ_AND_TRY) == "'from ann | Read-only file system'"
    shares = {path: rw for path, (_, rw) in mounts_of(server_of(hub, docker_client, "bob")).items()}
    assert shares == {"/home/jovyan/work": True, "/home/jovyan/work/shared-physics": False,
                      "/home/jovyan/work/shared-chem": True}  # chem: writable by everyone


def person_client(d, name) -> HubClient:
    client = HubClient(d.url, d.cafile)
    assert client.login(name, d.password(name)).status_code == 302
    client.make_token(name)
    return client


def test_a_student_of_another_group_does_not_have_its_folder(hub, docker_client):
    cy = person_client(hub, "cy")
    cy.start_server("cy")
    server = server_of(hub, docker_client, "cy")
    assert server.labels[f"{LABEL}.profile"] == "chem"
    assert "/home/jovyan/work/shared-physics" not in mounts_of(server)
    code, out = server.exec_run(["ls", "/home/jovyan/work"], user="1000")
    assert b"shared-physics" not in out and b"shared-chem" in out


# --- forged requests -----------------------------------------------------------------------------

def containers_of(d, client, name) -> list:
    return [ct for ct in d.labelled(client, "containers") if ct.labels.get(f"{LABEL}.user") == name]


@pytest.mark.parametrize("body, says", [
    ({"profile": "physics"}, "You may not start profile 'physics'; yours: python, chem."),
    ({"image": "evil:latest"}, "Only a profile can be chosen here, not image."),
    ({"profile": "chem", "mem_limit": "64G"}, "not mem_limit"),
])
def test_a_forged_rest_request_is_refused_and_starts_nothing(hub, docker_client, body, says):
    cy = person_client(hub, "cy")
    cy.stop_server("cy", deadline_s=90)
    response = cy.request("POST", "/hub/api/users/cy/server", json=body)
    assert response.status_code == 403, response.text
    assert says in response.json()["message"]
    time.sleep(1)
    assert containers_of(hub, docker_client, "cy") == []
    assert cy.user("cy")["servers"] == {}


def test_a_forged_form_is_refused_and_starts_nothing(hub, docker_client):
    cy = person_client(hub, "cy")
    xsrf = cy.session.cookies.get("_xsrf", path="/hub/", default="")
    for form in ({"profile": "physics"}, {"profile": "chem", "image": "evil:latest"}):
        response = cy.session.post(f"{hub.url}/hub/spawn/cy", data={**form, "_xsrf": xsrf},
                                   verify=hub.cafile, timeout=30, allow_redirects=False)
        assert response.status_code == 403, response.text[:500]
        time.sleep(1)
        assert containers_of(hub, docker_client, "cy") == []


def test_a_gpu_profile_cannot_be_forced_onto_a_host_without_gpus(hub, docker_client):
    ann = person_client(hub, "ann")
    ann.stop_server("ann", deadline_s=90)
    response = ann.request("POST", "/hub/api/users/ann/server", json={"profile": "gpu"})
    assert response.status_code == 403
    assert "Profile gpu cannot start on this host: it needs a GPU" in response.json()["message"]
    assert containers_of(hub, docker_client, "ann") == []


def test_an_admin_starting_a_users_server_gets_that_users_default(hub, docker_client):
    person_client(hub, "bob").stop_server("bob", deadline_s=90)  # he had chosen physics
    ann = person_client(hub, "ann")
    response = ann.request("POST", "/hub/api/users/bob/server")  # as the admin panel does
    assert response.status_code in (201, 202), response.text
    wait_until(lambda: ann.user("bob")["servers"].get("", {}).get("ready"),
               "bob's server to be ready", 120)
    assert server_of(hub, docker_client, "bob").labels[f"{LABEL}.profile"] == "chem"


# --- the shared folders' backups -------------------------------------------------------------------

def test_shared_folder_backup_and_restore_round_trip_with_owner_and_mode(hub, docker_client):
    result = hub.inv_ok("backup", "--share", "physics")
    [(path, _, _)] = backed_up(result)
    assert f"{hub.project}-share-physics" in path
    assert "share physics" in hub.inv_ok("backup", "--list").stdout
    helper = docker_client.containers.run(
        hub.image("hub"), ["sleep", "300"], detach=True, remove=True, user="0:0",
        volumes={f"{hub.project}-share-physics": {"bind": "/s", "mode": "rw"}},
        labels={f"{LABEL}.project": hub.project})
    try:
        def look():
            return helper.exec_run(["sh", "-c", "stat -c '%n %u %g %a' /s /s/notes.txt; "
                                   "cat /s/notes.txt"]).output.decode()
        before = look()
        assert "/s 1000 1000 755" in before and "/s/notes.txt 1000 " in before
        helper.exec_run(["sh", "-c", "rm /s/notes.txt && chown 0:0 /s && chmod 700 /s"])
        refused = hub.inv("restore", "--share", "physics", "--from", path)
        assert refused.returncode != 0 and "has the shared folder of physics mounted" in refused.output
        hub.inv_ok("restore", "--share", "physics", "--force", "--from", path)
        assert look() == before
    finally:
        helper.remove(force=True)
    everything = hub.inv_ok("backup", "--all").stdout
    assert "the shared folder of physics" in everything and "the shared folder of chem" in everything


# --- leaving a group -----------------------------------------------------------------------------

def test_leaving_a_group_takes_its_folder_and_profiles_away_at_the_next_start(hub, docker_client):
    (hub.root / "userlist").write_text(USERLIST.replace("bob group=physics group=chem",
                                                        "bob group=chem"))
    result = hub.inv_ok("up")
    assert "remove physics: bob" in result.output, result.output
    bob = person_client(hub, "bob")
    bob.stop_server("bob", deadline_s=90)
    refused = bob.request("POST", "/hub/api/users/bob/server", json={"profile": "physics"})
    assert refused.status_code == 403
    bob.start_server("bob")
    server = server_of(hub, docker_client, "bob")
    assert server.labels[f"{LABEL}.profile"] == "chem"
    assert "/home/jovyan/work/shared-physics" not in mounts_of(server)
    assert f"{hub.project}-user-bob" in {v.name for v in hub.labelled(docker_client, "volumes")}
