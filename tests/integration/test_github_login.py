"""GitHub login end to end: a real hub, a real browser, and a GitHub-compatible OAuth server
(fake_github.py) in a container on the deployment's network.

The hub talks real OAuth over HTTP to that server: the browser is sent to its authorize
page, the hub trades the code for a token and asks the API who it is, exactly as with
github.com or GitHub Enterprise (the server sits at GITHUB_URL, as an Enterprise server
would). The tests share one deployment and run in file order, each building on the one
before; a screenshot of each step goes to tests/artifacts/github-login/.
"""
import json
import os
import secrets
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from browser import Person, Screenshots, chromium, hub_api, wait_until

pytestmark = pytest.mark.integration

USERLIST = "ada admin\nbob\ncy\n"
# The people who have accounts on the fake GitHub. eve is nobody here; olga is let in by
# her team (GITHUB_ALLOWED_ORGS); dave is added by ada in the admin panel.
ACCOUNTS = ["ada", "bob", "cy", "eve", "dave", "olga"]
TEAMS = {"lab:teachers": ["olga"], "lab:students": ["eve"]}
GITHUB_HOST = "github.test"  # the fake's network alias; the browser maps it to 127.0.0.1


class FakeGitHub:
    def __init__(self, container, port, config):
        self.container, self.port, self.config = container, port, config

    @property
    def url(self):
        return f"http://{GITHUB_HOST}:{self.port}"

    def calls(self):
        import requests

        return requests.get(f"http://127.0.0.1:{self.port}/_calls", timeout=10).json()


@pytest.fixture(scope="module")
def github(deployment, docker_client, tmp_path_factory):
    """`inv build` (for the network), then the fake GitHub on that network, published on a
    127.0.0.1 port of the same number so that one URL works from the browser and the hub."""
    from deployment_support import free_port

    (deployment.root / "userlist").write_text(USERLIST)
    result = deployment.inv_ok("build")
    print(f"inv build: {result.seconds:.1f} s")
    port = free_port()
    config = {
        "client_id": "Iv1." + secrets.token_hex(8),
        "client_secret": secrets.token_hex(20),
        "callback": f"https://127.0.0.1:{deployment.port}/hub/oauth_callback",
        "users": ACCOUNTS,
        "teams": TEAMS,
    }
    folder = tmp_path_factory.mktemp("fake-github")
    (folder / "config.json").write_text(json.dumps(config))
    network = f"{deployment.project}-network"
    container = docker_client.containers.create(
        deployment.image("hub"),
        ["python3", "/fake/fake_github.py", "/fake/config.json", str(port)],
        name=f"{deployment.project}-fake-github",
        labels={"org.jupyterhub-deploy.project": deployment.project,
                "org.jupyterhub-deploy.role": "test-fake-github"},
        volumes={str(Path(__file__).with_name("fake_github.py")): {"bind": "/fake/fake_github.py", "mode": "ro"},
                 str(folder / "config.json"): {"bind": "/fake/config.json", "mode": "ro"}},
        ports={f"{port}/tcp": ("127.0.0.1", port)},
        network=network,
        networking_config={network: docker_client.api.create_endpoint_config(aliases=[GITHUB_HOST])},
    )
    container.start()
    fake = FakeGitHub(container, port, config)
    wait_until(lambda: fake.calls() is not None, "the fake GitHub to answer", 30)
    deployment.env.update({"HUB_AUTHENTICATOR": "github", "GITHUB_URL": fake.url,
                           "GITHUB_ALLOWED_ORGS": "lab:teachers"})
    yield fake
    container.remove(force=True)


@pytest.fixture(scope="module")
def browser(github, deployment):
    with chromium(deployment.cafile, map_hosts=[GITHUB_HOST]) as b:
        yield b


@pytest.fixture(scope="module")
def people(browser, deployment):
    """Each person's own browser context, kept for the whole module (sessions persist)."""
    shots = Screenshots("github-login")
    made = {}

    def person(name):
        if name not in made:
            made[name] = Person(browser, deployment.url, name, shots)
        return made[name]

    yield person
    for p in made.values():
        p.close()


def oauth_env(github, **changes):
    values = {"GITHUB_CLIENT_ID": github.config["client_id"],
              "GITHUB_CLIENT_SECRET": github.config["client_secret"],
              "OAUTH_CALLBACK_URL": github.config["callback"]}
    values.update(changes)
    return values


def snapshot(client, d):
    """What must not change when `inv up` refuses: containers and the secrets folder."""
    containers = sorted((ct.name, ct.id, ct.status) for ct in d.labelled(client, "containers"))
    folder = d.root / "secrets"
    files = {p.name: (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
             for p in sorted(folder.iterdir())} if folder.exists() else {}
    return containers, files


def _bad_file_mode(d, github):
    path = d.root / "secrets" / "oauth.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in oauth_env(github).items()))
    path.chmod(0o644)


BAD_INPUTS = {
    "no-client-secret": (None, {"GITHUB_CLIENT_SECRET": None},
                         ["HUB_AUTHENTICATOR=github needs GITHUB_CLIENT_SECRET"]),
    "empty-client-id": (None, {"GITHUB_CLIENT_ID": ""},
                        ["HUB_AUTHENTICATOR=github needs GITHUB_CLIENT_ID"]),
    "callback-wrong-port": (None, {"OAUTH_CALLBACK_URL": "https://127.0.0.1:1/hub/oauth_callback"},
                            ["OAUTH_CALLBACK_URL='https://127.0.0.1:1/hub/oauth_callback' does not "
                             "match this hub: expected https://"]),
    "callback-other-host": (None, {"OAUTH_CALLBACK_URL": "https://evil.example/hub/oauth_callback"},
                            ["does not match this hub"]),
    "oauth-file-readable-by-others": (_bad_file_mode, {"GITHUB_CLIENT_ID": None,
                                                       "GITHUB_CLIENT_SECRET": None,
                                                       "OAUTH_CALLBACK_URL": None},
                                      ["secrets/oauth.env can be read by other users",
                                       "chmod 600 secrets/oauth.env"]),
    "malformed-userlist": (lambda d, g: (d.root / "userlist").write_text(USERLIST + "Eve\n"), {},
                           ["userlist:4", "'Eve'"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_github_settings_are_refused_before_anything_changes(case, deployment, github,
                                                                  docker_client):
    mutate, changes, expected = BAD_INPUTS[case]
    saved_userlist = (deployment.root / "userlist").read_text()
    try:
        if mutate:
            mutate(deployment, github)
        before = snapshot(docker_client, deployment)
        result = deployment.inv("up", env=oauth_env(github, **changes))
        assert result.returncode != 0
        for text in expected:
            assert text in result.output, result.output
        assert "Traceback" not in result.output
        assert github.config["client_secret"] not in result.output
        assert snapshot(docker_client, deployment) == before
    finally:
        (deployment.root / "userlist").write_text(saved_userlist)
        (deployment.root / "secrets" / "oauth.env").unlink(missing_ok=True)


def _cmdlines():
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                    yield f.read()
            except OSError:
                continue


def test_up_keeps_the_client_secret_out_of_command_lines_environment_and_images(
        deployment, github, docker_client):
    """The operator gives the app's settings as environment variables to `inv up` once."""
    secret = github.config["client_secret"].encode()
    env = {**os.environ, **deployment.env, **oauth_env(github)}
    started = time.monotonic()
    run = subprocess.Popen([sys.executable, "-m", "invoke", "up"], cwd=deployment.root, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    samples, seen_in = 0, []
    while run.poll() is None:  # every process's command line, as `ps` shows them
        seen_in += [c for c in _cmdlines() if secret in c]
        samples += 1
        time.sleep(0.05)
    output = run.stdout.read().decode()
    print(f"inv up (github): {time.monotonic() - started:.1f} s, {samples} samples of every "
          "process's command line")
    assert run.returncode == 0, output[-4000:]
    assert samples > 20 and seen_in == []
    assert "secrets/oauth.env: written from the environment (mode 0600)" in output
    assert "log in with GitHub" in output and secret.decode() not in output
    oauth_file = deployment.root / "secrets" / "oauth.env"
    assert stat.S_IMODE(oauth_file.stat().st_mode) == 0o600
    assert f"GITHUB_CLIENT_SECRET={secret.decode()}\n" in oauth_file.read_text()
    hub = deployment.hub_container(docker_client)
    inspected = json.dumps(hub.attrs) + json.dumps(docker_client.images.get(hub.attrs["Image"]).attrs)
    assert secret.decode() not in inspected
    assert f"GITHUB_URL={github.url}" in hub.attrs["Config"]["Env"]


def test_sign_in_with_github_lands_in_jupyterlab_and_runs_a_cell(deployment, github, people):
    ada = people("ada")
    ada.goto("/hub/login")
    # GitHub is the only way in: no password form, no sign-up.
    assert ada.page.locator("input[type=password]").count() == 0
    assert ada.goto("/hub/signup").status == 404
    ada.sign_in_with_github()
    ada.wait_for_own_server()
    assert ada.run_cell_in_lab("6*7") == "42"
    # The hub itself traded the code and asked the API, from its container, with the secret
    # (the fake refuses a wrong one); the browser only saw the authorize page.
    calls = github.calls()
    browser_calls = {(m, p) for m, p, ip in calls if ip in ("127.0.0.1", _gateway(github))}
    hub_calls = {(m, p) for m, p, ip in calls if ip not in ("127.0.0.1", _gateway(github))}
    assert {("GET", "/login/oauth/authorize"), ("POST", "/login/oauth/authorize")} <= browser_calls
    assert {("POST", "/login/oauth/access_token"), ("GET", "/api/v3/user")} <= hub_calls


def _gateway(github):
    github.container.reload()
    networks = github.container.attrs["NetworkSettings"]["Networks"]
    return next(iter(networks.values()))["Gateway"]


def test_an_admin_sees_the_admin_panel_and_a_user_does_not(deployment, people):
    ada, bob = people("ada"), people("bob")
    assert "Admin" in ada.nav_links()
    assert ada.admin_panel_users() == ["ada", "bob", "cy"]
    ada.shot("admin-panel")
    bob.sign_in_with_github()
    bob.wait_for_own_server()
    assert "Admin" not in bob.nav_links()
    bob.shot("home-without-admin")
    assert bob.goto("/hub/admin").status == 403
    bob.shot("admin-panel-forbidden")


def test_a_stranger_gets_403_and_no_server(deployment, people, docker_client):
    eve = people("eve")  # a real account on GitHub, in another team, not in userlist
    eve.sign_in_with_github()
    assert "/hub/oauth_callback" in eve.page.url
    assert "403" in eve.page.title() or "403" in eve.page.locator("body").inner_text()
    assert "not currently authorized" in eve.page.locator("body").inner_text()
    eve.shot("forbidden")
    assert hub_api(deployment).call("GET", "users/eve")[0] == 404
    assert not [ct for ct in deployment.labelled(docker_client, "containers")
                if ct.labels.get("org.jupyterhub-deploy.user") == "eve"]


def test_a_member_of_an_allowed_team_gets_in(deployment, people):
    olga = people("olga")  # not in userlist; GITHUB_ALLOWED_ORGS=lab:teachers lets her in
    olga.sign_in_with_github(then="/hub/home")  # logged in; no need to start her server
    olga.wait_for_hub_home()
    olga.shot("in-by-team")


def test_a_user_added_in_the_admin_panel_can_log_in_after_a_hub_restart(deployment, people,
                                                                         docker_client):
    ada, dave = people("ada"), people("dave")
    ada.add_user_in_admin_panel("dave")
    deployment.hub_container(docker_client).restart(timeout=20)
    api = hub_api(deployment)
    wait_until(lambda: api.call("GET", "users/dave")[0] == 200, "the hub to answer after restart", 90)
    dave.sign_in_with_github(then="/hub/home")
    dave.wait_for_hub_home()
    dave.shot("in-after-restart")


def test_a_name_removed_from_userlist_loses_access_at_once(deployment, people, docker_client):
    bob = people("bob")  # logged in, with a running server, since the admin panel test
    assert bob.goto("/hub/home").url.endswith("/hub/home")
    (deployment.root / "userlist").write_text("ada admin\ncy\n")
    result = deployment.inv_ok("up")
    assert "userlist: access removed for bob" in result.output, result.output
    # His session is gone: the hub sends him to the login page.
    bob.goto("/hub/home")
    assert "/hub/login" in bob.page.url
    bob.shot("session-ended")
    # And GitHub no longer gets him in.
    bob.sign_in_with_github()
    assert "not currently authorized" in bob.page.locator("body").inner_text()
    bob.shot("forbidden-after-removal")
    roles = {ct.labels.get("org.jupyterhub-deploy.user") for ct in deployment.labelled(docker_client, "containers")}
    assert "bob" not in roles  # his server was stopped
    volumes = {v.name for v in deployment.labelled(docker_client, "volumes")}
    assert f"{deployment.project}-user-bob" in volumes  # his work was kept
    api = hub_api(deployment)
    # Users let in by an admin or by their team are not the userlist's to take away.
    assert api.call("GET", "users/dave")[0] == 200 and api.call("GET", "users/olga")[0] == 200
    assert sorted(api.call("GET", "groups/userlist")[1]["users"]) == ["ada", "cy"]
    # A second run removes nobody: nothing changed, so it stops after one look.
    again = deployment.inv_ok("up").output
    assert "nothing changed since the last `inv up`" in again and "access removed" not in again
    assert sorted(api.call("GET", "groups/userlist")[1]["users"]) == ["ada", "cy"]
    # Taking every step again (no record) finds nobody to remove either.
    (deployment.root / ".state" / "applied.json").unlink()
    assert "userlist: applied, nobody removed" in deployment.inv_ok("up").output


def test_the_client_secret_never_reached_a_log(deployment, github, docker_client):
    secret = github.config["client_secret"]
    for ct in deployment.labelled(docker_client, "containers"):
        if ct.labels.get("org.jupyterhub-deploy.role") in ("hub", "user-server"):
            assert secret not in ct.logs().decode(errors="replace"), ct.name
    assert secret not in deployment.inv_ok("logs", "--tail", "100000").output
