"""Who may log in, as hub/jupyterhub_config.py sets it: each authenticator choice applied to a
traitlets Config and then to the real authenticator class, the hub's reader of
secrets/oauth.env, and the native login's accounts for users an admin adds."""
import asyncio
import logging
import sys
from pathlib import Path

import pytest
from jupyterhub.orm import new_session_factory
from nativeauthenticator.orm import UserInfo
from oauthenticator.github import GitHubOAuthenticator
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

from tasks.limits import Limits, hub_env
from tasks.names import user_volume_template
from tasks.settings import read_env_file

HUB_DIR = Path(__file__).resolve().parents[2] / "hub"
sys.path.insert(0, str(HUB_DIR))  # hubauth.py sits next to the config in the image

import hubauth  # noqa: E402

ENV = {
    "COMPOSE_PROJECT_NAME": "proj",
    "DOCKER_NETWORK_NAME": "proj-network",
    "DOCKER_NOTEBOOK_IMAGE": "img:1",
    "JUPYTERHUB_ADMINS": "ann",
    "JUPYTERHUB_USERS": "bob",
    "USER_VOLUME_TEMPLATE": user_volume_template("proj"),
    **hub_env(Limits()),
}
SECRET = "9f" * 20
OAUTH_ENV = (f"GITHUB_CLIENT_ID=Iv1.abc\nGITHUB_CLIENT_SECRET={SECRET}\n"
             "OAUTH_CALLBACK_URL=https://hub.example.org/hub/oauth_callback\n")


@pytest.fixture
def load(hub_config, tmp_path):
    """Apply the config with ENV, a secrets folder in tmp_path, and `changes`."""
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    oauth = secrets_dir / "oauth.env"
    oauth.write_text(OAUTH_ENV)
    oauth.chmod(0o600)
    return lambda **changes: hub_config({**ENV, "HUB_SECRETS_DIR": str(secrets_dir), **changes})


@pytest.mark.parametrize("choice", ["native", "github"])
def test_existing_users_stay_allowed_with_either_login(load, choice):
    """What keeps users an admin added in the admin panel after a restart."""
    c = load(HUB_AUTHENTICATOR=choice)
    assert c.Authenticator.allow_existing_users is True
    assert c.Authenticator.admin_users == {"ann"}
    assert c.Authenticator.allowed_users == {"ann", "bob"}


def test_native_choice_has_no_github_settings(load):
    c = load(HUB_AUTHENTICATOR="native")
    assert c.JupyterHub.authenticator_class == "hubauth.ProvisionedNativeAuthenticator"
    assert "GitHubOAuthenticator" not in c


def test_github_choice_turns_the_native_login_off(load):
    c = load(HUB_AUTHENTICATOR="github")
    assert c.JupyterHub.authenticator_class == "oauthenticator.github.GitHubOAuthenticator"
    assert "ProvisionedNativeAuthenticator" not in c


def github_authenticator(c):
    """The real GitHubOAuthenticator, configured as the hub configures it."""
    return GitHubOAuthenticator(config=c)


def test_github_on_github_com_calls_github_endpoints(load):
    auth = github_authenticator(load(HUB_AUTHENTICATOR="github", GITHUB_URL="https://github.com"))
    assert (auth.client_id, auth.client_secret) == ("Iv1.abc", SECRET)
    assert auth.oauth_callback_url == "https://hub.example.org/hub/oauth_callback"
    assert auth.authorize_url == "https://github.com/login/oauth/authorize"
    assert auth.token_url == "https://github.com/login/oauth/access_token"
    assert auth.userdata_url == "https://api.github.com/user"
    assert auth.login_service == "GitHub"  # the button reads "Sign in with GitHub"
    # Set on purpose: OAuthenticator 17's own default would drop admin-added users.
    assert auth.allow_existing_users is True
    assert GitHubOAuthenticator().allow_existing_users is False


@pytest.mark.parametrize("url", ["http://github.test:8080", "https://ghe.example.org/",
                                 "https://ghe.example.org"])
def test_github_enterprise_derives_every_endpoint_from_its_url(load, url):
    auth = github_authenticator(load(HUB_AUTHENTICATOR="github", GITHUB_URL=url))
    base = url.rstrip("/")
    assert auth.authorize_url == f"{base}/login/oauth/authorize"
    assert auth.token_url == f"{base}/login/oauth/access_token"
    assert auth.github_api == f"{base}/api/v3"
    assert auth.userdata_url == f"{base}/api/v3/user"


def test_github_without_a_url_means_github_com(load):
    auth = github_authenticator(load(HUB_AUTHENTICATOR="github", GITHUB_URL=None))
    assert auth.github_url == "https://github.com"


def test_github_allowed_teams_ask_for_read_org(load):
    auth = github_authenticator(load(HUB_AUTHENTICATOR="github", GITHUB_ALLOWED_ORGS="lab:staff,lab2"))
    assert auth.allowed_organizations == {"lab:staff", "lab2"}
    assert auth.scope == ["read:org"]


def test_github_without_allowed_orgs_asks_for_no_scope(load):
    auth = github_authenticator(load(HUB_AUTHENTICATOR="github", GITHUB_ALLOWED_ORGS=""))
    assert auth.allowed_organizations == set() and auth.scope == []


def test_the_secret_is_not_taken_from_the_environment(load, monkeypatch):
    monkeypatch.setenv("GITHUB_CLIENT_SECRET", "from-the-environment")
    auth = github_authenticator(load(HUB_AUTHENTICATOR="github"))
    assert auth.client_secret == SECRET


@pytest.mark.parametrize("name", ["oauth.env", "hub-api-token"])
def test_a_secret_file_others_can_read_stops_the_hub_with_the_fix(load, tmp_path, name):
    path = tmp_path / "secrets" / name
    path.write_text(OAUTH_ENV if name == "oauth.env" else "t0ken\n")
    path.chmod(0o640)
    with pytest.raises(SystemExit, match=rf"chmod 600 secrets/{name}"):
        load(HUB_AUTHENTICATOR="github")


def test_github_without_the_oauth_file_stops_the_hub(load, tmp_path):
    (tmp_path / "secrets" / "oauth.env").unlink()
    with pytest.raises(SystemExit, match="secrets/oauth.env lacks GITHUB_CLIENT_ID, "
                                         "GITHUB_CLIENT_SECRET, OAUTH_CALLBACK_URL"):
        load(HUB_AUTHENTICATOR="github")


def test_the_native_login_needs_no_oauth_file(load, tmp_path):
    (tmp_path / "secrets" / "oauth.env").unlink()
    assert load(HUB_AUTHENTICATOR="native").JupyterHub.authenticator_class


# --- the hub's reader of secrets/oauth.env, against the tasks' (python-dotenv) -----------

@pytest.fixture
def hub_env_lines(monkeypatch, tmp_path):
    """The config file's own reader of secrets/oauth.env (`_read_env`), from running the
    file as JupyterHub does, on a file holding `text`."""
    secrets_dir = tmp_path / "hub-secrets"
    secrets_dir.mkdir()
    for key, value in {**ENV, "HUB_AUTHENTICATOR": "native", "HUB_SECRETS_DIR": str(secrets_dir)}.items():
        monkeypatch.setenv(key, value)
    namespace = {"get_config": Config}
    source = (HUB_DIR / "jupyterhub_config.py").read_text()
    exec(compile(source, "jupyterhub_config.py", "exec"), namespace)  # noqa: S102

    def read(text):
        path = secrets_dir / "oauth.env"
        path.write_text(text)
        path.chmod(0o600)
        return namespace["_read_env"]("oauth.env")

    return read


@pytest.mark.parametrize("text", [
    OAUTH_ENV,
    "# written by hand\n\nGITHUB_CLIENT_ID = Iv1.abc\n  GITHUB_CLIENT_SECRET=abc=def\n",
    "export GITHUB_CLIENT_ID=Iv1.abc\nGITHUB_CLIENT_SECRET='quoted secret'\n"
    'OAUTH_CALLBACK_URL="https://h/hub/oauth_callback"\n',
    "GITHUB_CLIENT_ID=\nGITHUB_CLIENT_SECRET=x\r\n",
])
def test_the_hub_reads_the_file_as_the_tasks_do(tmp_path, hub_env_lines, text):
    path = tmp_path / "oauth.env"
    path.write_text(text)
    assert hub_env_lines(text) == read_env_file(path)


# --- native login: accounts for users an admin adds -------------------------------------

@pytest.fixture
def auth(tmp_path):
    db = new_session_factory("sqlite://")()
    passwords = tmp_path / "initial-passwords"
    passwords.write_text("ann pw-ann-1\n")
    passwords.chmod(0o600)
    yield hubauth.ProvisionedNativeAuthenticator(
        _deprecated_db_session=db, allowed_users={"ann", "bob"}, admin_users={"ann"},
        allow_existing_users=True, initial_passwords_file=str(passwords),
        log=logging.getLogger("test_hub_config_oauth"),
    )
    db.close()


class User:
    def __init__(self, name):
        self.name = name


def login(auth, name, password):
    return asyncio.run(auth.authenticate(None, {"username": name, "password": password}))


def test_a_user_an_admin_adds_gets_an_account_the_admin_can_set_a_password_for(auth):
    auth.add_user(User("dave"))
    assert "dave" in auth.allowed_users
    info = UserInfo.find(auth.db, "dave")
    assert info is not None and info.is_authorized
    assert login(auth, "dave", "") is None  # nobody knows the password it was made with
    assert auth.change_password("dave", "dave-first-password")  # /hub/change-password/dave
    assert login(auth, "dave", "dave-first-password") == "dave"


def test_adding_again_at_each_start_keeps_the_password(auth):
    auth.add_user(User("dave"))
    auth.change_password("dave", "dave-first-password")
    auth.add_user(User("dave"))
    assert login(auth, "dave", "dave-first-password") == "dave"


def test_userlist_names_keep_their_initial_passwords(auth):
    auth.add_user(User("ann"))
    assert login(auth, "ann", "pw-ann-1") == "ann"


def test_a_userlist_name_without_a_password_yet_gets_no_placeholder(auth):
    # bob's line may come with the next `inv up`; a placeholder would block it.
    auth.add_user(User("bob"))
    assert UserInfo.find(auth.db, "bob") is None


def test_deleting_a_user_removes_the_account(auth):
    auth.add_user(User("dave"))
    auth.delete_user(User("dave"))
    assert UserInfo.find(auth.db, "dave") is None and "dave" not in auth.allowed_users
