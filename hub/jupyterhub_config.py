# JupyterHub configuration, driven by environment variables that docker-compose.yml
# passes in (from .env and from `inv up`). Every setting says why it is here.
import os

from docker.errors import NotFound

c = get_config()  # noqa: F821  (provided by JupyterHub when it loads this file)
env = os.environ


def _names(var):
    """A comma-separated list of user names from the environment."""
    return {name for name in env.get(var, "").split(",") if name}


project = env["COMPOSE_PROJECT_NAME"]
admins = _names("JUPYTERHUB_ADMINS")
users = _names("JUPYTERHUB_USERS")
if not admins:
    # Without an admin nobody could manage the hub; `inv up` always sets this from userlist.
    raise SystemExit("JUPYTERHUB_ADMINS is empty: start the hub with `inv up`, which reads userlist.")

# --- Network and TLS -----------------------------------------------------------------
# The proxy terminates HTTPS itself on 8443 inside the container; compose publishes it
# on HUB_PORT. The certificate is mounted read-only from secrets/, never baked in.
c.JupyterHub.port = 8443
c.JupyterHub.ssl_cert = "/srv/jupyterhub/secrets/jupyterhub.crt"
c.JupyterHub.ssl_key = "/srv/jupyterhub/secrets/jupyterhub.key"
# User containers reach the hub API over the private network: listen on every interface
# of the container, and tell the servers to connect to the compose service name.
c.JupyterHub.hub_ip = "0.0.0.0"
c.JupyterHub.hub_connect_ip = "hub"

# --- State that must survive restarts ---------------------------------------------------
# Both live in the hub data volume: the database keeps users, tokens and running-server
# records; the cookie secret keeps everyone logged in across a restart (JupyterHub writes
# it with mode 0600 and refuses to start if it is readable by others).
c.JupyterHub.db_url = "sqlite:////data/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "/data/jupyterhub_cookie_secret"
# The default stops every user's container when the hub stops; keeping them running means
# a hub restart or upgrade does not interrupt anyone's kernel.
c.JupyterHub.cleanup_servers = False

# --- User servers ------------------------------------------------------------------------
c.JupyterHub.spawner_class = "dockerspawner.DockerSpawner"
image = env["DOCKER_NOTEBOOK_IMAGE"]
c.DockerSpawner.image = image
# Pin the image list so no user option can choose another image (CVE-2023-48311).
c.DockerSpawner.allowed_images = {"default": image}
c.DockerSpawner.network_name = env["DOCKER_NETWORK_NAME"]
# Names carry the project so two deployments on one engine never collide; {username} is
# DockerSpawner's escaped name (lowercase letters, digits and -XX escapes).
c.DockerSpawner.prefix = f"{project}-user"
c.DockerSpawner.name_template = "{prefix}-{username}"
# One named volume per user holds their work; it outlives every container.
volume_template = f"{project}-user-{{username}}"
c.DockerSpawner.volumes = {volume_template: "/home/jovyan/work"}
c.DockerSpawner.notebook_dir = "/home/jovyan/work"
c.Spawner.default_url = "/lab"
# Containers are disposable (the volume is not): a stopped server leaves nothing behind.
c.DockerSpawner.remove = True
# A cold image start on a small host can take a while; give up only after a minute.
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 60

LABEL = "org.jupyterhub-deploy"


async def label_user_objects(spawner):
    """Create the user's volume with labels before Docker would create it bare, and label
    the container, so that `inv status`, `inv down` and tests find them by label."""
    labels = {
        f"{LABEL}.project": project,
        f"{LABEL}.user": spawner.user.name,
    }
    name = spawner.format_volume_name(volume_template, spawner)
    try:
        await spawner.docker("inspect_volume", name)
    except NotFound:
        await spawner.docker(
            "create_volume", name=name, labels={**labels, f"{LABEL}.role": "user-volume"}
        )
    spawner.extra_create_kwargs = {
        "labels": {
            **labels,
            f"{LABEL}.role": "user-server",
            # `docker compose build` stamps its project and service into the image's labels,
            # and containers inherit them: blank them so no compose project (another test
            # deployment's, say) takes a user's server for one of its own containers.
            "com.docker.compose.project": "",
            "com.docker.compose.service": "",
        }
    }


c.Spawner.pre_spawn_hook = label_user_objects

# --- Who may log in ------------------------------------------------------------------------
c.Authenticator.admin_users = admins
c.Authenticator.allowed_users = users | admins
authenticator = env.get("HUB_AUTHENTICATOR", "native")
if authenticator == "native":
    # NativeAuthenticator, with sign-up off and every userlist name provisioned before the
    # first request from the passwords `inv up` generated (see hubauth.py for why).
    c.JupyterHub.authenticator_class = "hubauth.ProvisionedNativeAuthenticator"
    c.ProvisionedNativeAuthenticator.initial_passwords_file = (
        "/srv/jupyterhub/secrets/initial-passwords"
    )
else:
    raise SystemExit(f"HUB_AUTHENTICATOR={authenticator!r} is not supported; use 'native'.")
