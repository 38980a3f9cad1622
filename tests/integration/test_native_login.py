"""The embedded (native) login end to end in a real browser: the same steps as the GitHub
login test, with the login form and the initial passwords from secrets/initial-passwords.

The tests share one deployment and run in file order, each building on the one before; a
screenshot of each step goes to tests/artifacts/native-login/.
"""
import pytest

from browser import Person, Screenshots, chromium, hub_api, wait_until

pytestmark = pytest.mark.integration

USERLIST = "ada admin\nbob\ncy\n"


@pytest.fixture(scope="module")
def up(deployment):
    (deployment.root / "userlist").write_text(USERLIST)
    result = deployment.inv_ok("build", "up")
    print(f"inv build up (native): {result.seconds:.1f} s")
    return deployment


@pytest.fixture(scope="module")
def people(up):
    shots = Screenshots("native-login")
    made = {}
    with chromium(up.cafile) as browser:
        def person(name):
            if name not in made:
                made[name] = Person(browser, up.url, name, shots)
            return made[name]

        yield person
        for p in made.values():
            p.close()


def test_log_in_with_the_initial_password_land_in_jupyterlab_and_run_a_cell(up, people):
    ada = people("ada")
    ada.log_in_with_password(up.password("ada"))
    ada.wait_for_own_server()
    assert ada.run_cell_in_lab("6*7") == "42"


def test_an_admin_sees_the_admin_panel_and_a_user_does_not(up, people):
    ada, bob = people("ada"), people("bob")
    assert "Admin" in ada.nav_links()
    assert ada.admin_panel_users() == ["ada", "bob", "cy"]
    ada.shot("admin-panel")
    bob.log_in_with_password(up.password("bob"))
    bob.wait_for_own_server()
    assert "Admin" not in bob.nav_links()
    bob.shot("home-without-admin")
    assert bob.goto("/hub/admin").status == 403
    bob.shot("admin-panel-forbidden")


def test_a_stranger_cannot_log_in_and_gets_no_server(up, people, docker_client):
    eve = people("eve")  # not in userlist: there is no account, and no way to sign up
    eve.log_in_with_password("a-guessed-password-1")
    assert "/hub/login" in eve.page.url
    assert "Invalid username or password" in eve.page.locator("body").inner_text()
    eve.shot("refused")
    assert eve.goto("/hub/signup").status == 404
    assert hub_api(up).call("GET", "users/eve")[0] == 404
    assert not [ct for ct in up.labelled(docker_client, "containers")
                if ct.labels.get("org.jupyterhub-deploy.user") == "eve"]


def test_a_user_added_in_the_admin_panel_can_log_in_after_a_hub_restart(up, people, docker_client):
    ada, dave = people("ada"), people("dave")
    ada.add_user_in_admin_panel("dave")
    # The admin gives dave his first password on NativeAuthenticator's page for admins.
    ada.set_password_as_admin("dave", "dave-first-password-7")
    up.hub_container(docker_client).restart(timeout=20)
    api = hub_api(up)
    wait_until(lambda: api.call("GET", "users/dave")[0] == 200, "the hub to answer after restart", 90)
    dave.log_in_with_password("dave-first-password-7", then="/hub/home")
    dave.wait_for_hub_home()
    dave.shot("in-after-restart")


def test_a_name_removed_from_userlist_loses_access_at_once(up, people, docker_client):
    bob = people("bob")  # logged in, with a running server, since the admin panel test
    assert bob.goto("/hub/home").url.endswith("/hub/home")
    old_password = up.password("bob")
    (up.root / "userlist").write_text("ada admin\ncy\n")
    result = up.inv_ok("up")
    assert "userlist: access removed for bob" in result.output, result.output
    bob.goto("/hub/home")
    assert "/hub/login" in bob.page.url
    bob.shot("session-ended")
    bob.log_in_with_password(old_password)  # it no longer works, and its line is gone
    with pytest.raises(KeyError):
        up.password("bob")
    assert "Invalid username or password" in bob.page.locator("body").inner_text()
    bob.shot("refused-after-removal")
    users = {ct.labels.get("org.jupyterhub-deploy.user") for ct in up.labelled(docker_client, "containers")}
    assert "bob" not in users  # his server was stopped
    assert f"{up.project}-user-bob" in {v.name for v in up.labelled(docker_client, "volumes")}
    assert hub_api(up).call("GET", "users/dave")[0] == 200  # the admin's user stays
