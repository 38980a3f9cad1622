"""hub/jupyterhub_config.py applied to a traitlets Config, as JupyterHub loads it."""
import asyncio
from pathlib import Path

import pytest
from docker.errors import NotFound
from dockerspawner import DockerSpawner
from dockerspawner.volumenamingstrategy import default_format_volume_name
from traitlets.config.loader import PyFileConfigLoader

from tasks.limits import Limits, hub_env
from tasks.names import labels, user_volume, user_volume_template

HUB_DIR = Path(__file__).resolve().parents[2] / "hub"

ENV = {
    "COMPOSE_PROJECT_NAME": "proj",
    "DOCKER_NETWORK_NAME": "proj-network",
    "DOCKER_NOTEBOOK_IMAGE": "img:1",
    "HUB_AUTHENTICATOR": "native",
    "JUPYTERHUB_ADMINS": "ann",
    "JUPYTERHUB_USERS": "bob,cy",
    "USER_VOLUME_TEMPLATE": user_volume_template("proj"),
    **hub_env(Limits()),
    # Not set by compose; unset here so the shell running the tests cannot change them.
    "HUB_SECRETS_DIR": None,
    "GITHUB_URL": None,
    "GITHUB_ALLOWED_ORGS": None,
}


@pytest.fixture
def load(hub_config):
    """Apply the config with ENV plus `changes` (None unsets a variable); returns the Config."""
    return lambda **changes: hub_config({**ENV, **changes})


@pytest.fixture
def c(load):
    return load()


def test_tls_and_ports(c):
    assert c.JupyterHub.port == 8443
    assert c.JupyterHub.ssl_cert == "/srv/jupyterhub/secrets/jupyterhub.crt"
    assert c.JupyterHub.ssl_key == "/srv/jupyterhub/secrets/jupyterhub.key"
    assert c.JupyterHub.hub_ip == "0.0.0.0"
    assert c.JupyterHub.hub_connect_ip == "hub"


def test_state_lives_in_the_data_volume_and_servers_outlive_the_hub(c):
    assert c.JupyterHub.db_url == "sqlite:////data/jupyterhub.sqlite"
    assert c.JupyterHub.cookie_secret_file == "/data/jupyterhub_cookie_secret"
    assert c.JupyterHub.cleanup_servers is False
    assert c.ConfigurableHTTPProxy.pid_file.startswith("/dev/shm/")  # gone with a restart


def test_the_proxy_keeps_idle_client_connections_longer_than_a_minute(c):
    command = c.ConfigurableHTTPProxy.command
    timeout_ms = int(command[command.index("--keep-alive-timeout") + 1])
    assert timeout_ms > 60_000


def test_docker_spawner(c):
    assert c.JupyterHub.spawner_class == "hubspawner.ReadyDockerSpawner"
    assert c.DockerSpawner.image == "img:1"
    assert c.DockerSpawner.allowed_images == {"default": "img:1"}
    assert c.DockerSpawner.network_name == "proj-network"
    assert c.DockerSpawner.volumes == {"proj-user-{username}": "/home/jovyan/work"}
    assert c.DockerSpawner.notebook_dir == "/home/jovyan/work"
    assert c.DockerSpawner.remove is True


def test_who_may_log_in(c):
    assert c.Authenticator.admin_users == {"ann"}
    assert c.Authenticator.allowed_users == {"ann", "bob", "cy"}
    assert c.Authenticator.allow_existing_users is True
    assert c.JupyterHub.authenticator_class == "hubauth.ProvisionedNativeAuthenticator"
    assert (c.ProvisionedNativeAuthenticator.initial_passwords_file
            == "/srv/jupyterhub/secrets/initial-passwords")


def test_several_admins_and_no_users(load):
    c = load(JUPYTERHUB_ADMINS="ann,dee", JUPYTERHUB_USERS="")
    assert c.Authenticator.admin_users == {"ann", "dee"}
    assert c.Authenticator.allowed_users == {"ann", "dee"}


def test_native_is_the_default_authenticator(load):
    c = load(HUB_AUTHENTICATOR=None)
    assert c.JupyterHub.authenticator_class == "hubauth.ProvisionedNativeAuthenticator"


@pytest.mark.parametrize("admins", ["", ",", None])
def test_no_admin_refuses_to_start(load, admins):
    with pytest.raises(SystemExit, match="JUPYTERHUB_ADMINS is empty"):
        load(JUPYTERHUB_ADMINS=admins)


@pytest.mark.parametrize("image", ["", None])
def test_no_notebook_image_refuses_to_start(load, image):
    with pytest.raises(SystemExit, match="DOCKER_NOTEBOOK_IMAGE is empty: start the hub with"):
        load(DOCKER_NOTEBOOK_IMAGE=image)


@pytest.mark.parametrize("template", ["", None, "proj-user"])
def test_no_volume_template_refuses_to_start(load, template):
    with pytest.raises(SystemExit, match="USER_VOLUME_TEMPLATE is not set"):
        load(USER_VOLUME_TEMPLATE=template)


def test_unknown_authenticator_refuses_to_start(load):
    with pytest.raises(SystemExit, match="HUB_AUTHENTICATOR='gitlab' is not supported"):
        load(HUB_AUTHENTICATOR="gitlab")


@pytest.fixture
def secrets_dir(tmp_path):
    """A secrets folder for the hub to read."""
    return tmp_path


def put(folder, name, text, mode=0o600):
    path = folder / name
    path.write_text(text)
    path.chmod(mode)


def test_secrets_dir_moves_every_secret_path(load, secrets_dir):
    c = load(HUB_SECRETS_DIR=str(secrets_dir))
    assert c.JupyterHub.ssl_cert == str(secrets_dir / "jupyterhub.crt")
    assert c.JupyterHub.ssl_key == str(secrets_dir / "jupyterhub.key")
    assert (c.ProvisionedNativeAuthenticator.initial_passwords_file
            == str(secrets_dir / "initial-passwords"))


NO_CULLING = {"IDLE_CULL_TIMEOUT_SECONDS": "0", "IDLE_CULL_MAX_AGE_SECONDS": "0"}


def test_without_an_api_token_or_culling_there_is_no_service(load, secrets_dir):
    c = load(HUB_SECRETS_DIR=str(secrets_dir), **NO_CULLING)
    assert "services" not in c.JupyterHub and "load_roles" not in c.JupyterHub


def test_the_api_token_makes_a_service_that_may_only_manage_users(load, secrets_dir):
    from tasks.upgradeplan import CHECK_USER

    put(secrets_dir, "hub-api-token", "t0ken\n")
    c = load(HUB_SECRETS_DIR=str(secrets_dir), **NO_CULLING)
    assert c.JupyterHub.services == [{"name": "jupyterhub-deploy", "api_token": "t0ken"}]
    # Servers: only the one of the user `inv upgrade` checks a new hub with.
    assert c.JupyterHub.load_roles == [{"name": "jupyterhub-deploy",
                                        "scopes": ["admin:users", "admin:groups", "read:servers",
                                                   f"servers!user={CHECK_USER}",
                                                   f"access:servers!user={CHECK_USER}"],
                                        "services": ["jupyterhub-deploy"]}]


def test_an_api_token_others_can_read_refuses_to_start(load, secrets_dir):
    put(secrets_dir, "hub-api-token", "t0ken\n", mode=0o644)
    with pytest.raises(SystemExit, match="secrets/hub-api-token can be read by other users"):
        load(HUB_SECRETS_DIR=str(secrets_dir))


OAUTH_ENV = (
    "# the GitHub OAuth app\n"
    "GITHUB_CLIENT_ID=abc123\n"
    "export GITHUB_CLIENT_SECRET='s3cr=t'\n"
    'OAUTH_CALLBACK_URL="https://hub.example.org/hub/oauth_callback"\n'
)


def test_github_login(load, secrets_dir):
    put(secrets_dir, "oauth.env", OAUTH_ENV)
    c = load(HUB_AUTHENTICATOR="github", HUB_SECRETS_DIR=str(secrets_dir))
    assert c.JupyterHub.authenticator_class == "oauthenticator.github.GitHubOAuthenticator"
    assert c.GitHubOAuthenticator.client_id == "abc123"
    assert c.GitHubOAuthenticator.client_secret == "s3cr=t"
    assert (c.GitHubOAuthenticator.oauth_callback_url
            == "https://hub.example.org/hub/oauth_callback")
    assert c.GitHubOAuthenticator.github_url == "https://github.com"
    assert "allowed_organizations" not in c.GitHubOAuthenticator
    assert c.Authenticator.allowed_users == {"ann", "bob", "cy"}
    assert "ProvisionedNativeAuthenticator" not in c


def test_github_enterprise_and_organizations(load, secrets_dir):
    put(secrets_dir, "oauth.env", OAUTH_ENV)
    c = load(HUB_AUTHENTICATOR="github", HUB_SECRETS_DIR=str(secrets_dir),
             GITHUB_URL="https://ghe.example.org", GITHUB_ALLOWED_ORGS="lab, lab:staff  other")
    assert c.GitHubOAuthenticator.github_url == "https://ghe.example.org"
    assert c.GitHubOAuthenticator.allowed_organizations == {"lab", "lab:staff", "other"}
    assert c.GitHubOAuthenticator.scope == ["read:org"]


def test_github_without_complete_oauth_app_refuses_to_start(load, secrets_dir):
    put(secrets_dir, "oauth.env", "GITHUB_CLIENT_ID=abc123\nGITHUB_CLIENT_SECRET=\n")
    with pytest.raises(SystemExit, match="lacks GITHUB_CLIENT_SECRET, OAUTH_CALLBACK_URL"):
        load(HUB_AUTHENTICATOR="github", HUB_SECRETS_DIR=str(secrets_dir))


def test_github_oauth_file_others_can_read_refuses_to_start(load, secrets_dir):
    put(secrets_dir, "oauth.env", OAUTH_ENV, mode=0o640)
    with pytest.raises(SystemExit, match="secrets/oauth.env can be read by other users"):
        load(HUB_AUTHENTICATOR="github", HUB_SECRETS_DIR=str(secrets_dir))


def test_a_spawner_so_configured_names_volumes_as_the_tasks_do(c):
    """Backups find a user's volume by the name tasks.names makes."""
    for name in ("alice", "a.b"):
        spawner = DockerSpawner(config=c, user=type("User", (), {"name": name})())
        volume = next(iter(spawner.volumes))
        assert spawner.format_volume_name(volume, spawner) == user_volume("proj", name)


class FakeSpawner:
    """What label_user_objects uses of a DockerSpawner, recording the Docker calls."""

    format_volume_name = staticmethod(default_format_volume_name)

    def __init__(self, volume_exists):
        self.volume_exists = volume_exists
        self.calls = []
        self.user = type("User", (), {"name": "alice"})()
        self.extra_create_kwargs = {}

    def template_namespace(self):
        return {"username": "alice"}

    async def docker(self, method, *args, **kwargs):
        self.calls.append((method, args, kwargs))
        if method == "inspect_volume" and not self.volume_exists:
            raise NotFound(f"volume {args[0]} not found")
        return {}


def test_pre_spawn_hook_creates_the_labelled_volume(c):
    spawner = FakeSpawner(volume_exists=False)
    asyncio.run(c.Spawner.pre_spawn_hook(spawner))
    assert spawner.calls == [
        ("inspect_volume", ("proj-user-alice",), {}),
        ("create_volume", (), {"name": "proj-user-alice", "labels": {
            "org.jupyterhub-deploy.project": "proj",
            "org.jupyterhub-deploy.role": "user-volume",
            "org.jupyterhub-deploy.user": "alice",
        }}),
    ]
    assert spawner.calls[1][2]["labels"] == labels("proj", "user-volume", user="alice")


def test_pre_spawn_hook_leaves_an_existing_volume_alone(c):
    spawner = FakeSpawner(volume_exists=True)
    asyncio.run(c.Spawner.pre_spawn_hook(spawner))
    assert [method for method, _, _ in spawner.calls] == ["inspect_volume"]


@pytest.mark.parametrize("volume_exists", [False, True])
def test_pre_spawn_hook_labels_the_container(c, volume_exists):
    spawner = FakeSpawner(volume_exists)
    asyncio.run(c.Spawner.pre_spawn_hook(spawner))
    assert spawner.extra_create_kwargs == {"labels": {
        "org.jupyterhub-deploy.project": "proj",
        "org.jupyterhub-deploy.role": "user-server",
        "org.jupyterhub-deploy.user": "alice",
        "com.docker.compose.project": "",
        "com.docker.compose.service": "",
    }}
    # `inv down` and `inv status` list user servers by exactly these two labels.
    assert {k: v for k, v in spawner.extra_create_kwargs["labels"].items()
            if k.startswith("org.")} == labels("proj", "user-server", user="alice")


def test_pre_spawn_hook_passes_other_docker_errors_on(c):
    class Failing(FakeSpawner):
        async def docker(self, method, *args, **kwargs):
            raise RuntimeError("engine gone")

    spawner = Failing(volume_exists=False)
    with pytest.raises(RuntimeError, match="engine gone"):
        asyncio.run(c.Spawner.pre_spawn_hook(spawner))
    assert spawner.extra_create_kwargs == {}


def test_on_a_swarm_servers_are_pinned_services_on_the_overlay_network(load):
    c = load(HUB_SWARM="1")
    assert c.JupyterHub.spawner_class == "hubswarm.PinnedSwarmSpawner"
    assert c.PinnedSwarmSpawner.project == ENV["COMPOSE_PROJECT_NAME"]
    assert c.SwarmSpawner.network_name == ENV["DOCKER_NETWORK_NAME"]
    # A service is always removed when its server stops; SwarmSpawner has no such option.
    assert "remove" not in c.DockerSpawner


def test_on_a_single_host_servers_are_containers_removed_when_they_stop(load):
    c = load(HUB_SWARM="")
    assert c.JupyterHub.spawner_class == "hubspawner.ReadyDockerSpawner"
    assert c.DockerSpawner.remove is True
