# JupyterHub configuration, driven by environment variables that docker-compose.yml
# passes in (from .env and from `inv up`). Every setting says why it is here.
import os
import sys

from docker.errors import NotFound
from dotenv import dotenv_values

c = get_config()  # noqa: F821  (provided by JupyterHub when it loads this file)
env = os.environ


def _names(var):
    """A comma-separated list of user names from the environment."""
    return {name for name in env.get(var, "").split(",") if name}


# docker-compose.yml mounts secrets/ here read-only; the unit tier points it elsewhere.
secrets_dir = env.get("HUB_SECRETS_DIR", "/srv/jupyterhub/secrets")


def _read_private(name, read=lambda f: f.read()):
    """A file from secrets/ that only its owner may read (it holds a secret), read by `read`."""
    path = os.path.join(secrets_dir, name)
    with open(path, encoding="utf-8") as f:
        # fstat the open file, so the mode we check is that of what we read.
        if os.fstat(f.fileno()).st_mode & 0o077:
            raise SystemExit(
                f"secrets/{name} can be read by other users: run `chmod 600 secrets/{name}` "
                "on the host, then `inv up`."
            )
        return read(f)


def _read_env(name):
    """The KEY=value lines of a private dotenv file, read as the tasks read it (python-dotenv,
    no ${...} expansion: a secret may hold a `$`)."""
    return _read_private(name, lambda f: dotenv_values(stream=f, interpolate=False))


project = env["COMPOSE_PROJECT_NAME"]
admins = _names("JUPYTERHUB_ADMINS")
users = _names("JUPYTERHUB_USERS")
if not admins:
    # Without an admin nobody could manage the hub; `inv up` always sets this from userlist.
    raise SystemExit("JUPYTERHUB_ADMINS is empty: start the hub with `inv up`, which reads userlist.")
# How each user's volume is named: the tasks find (and back up) volumes by that name, so
# they hand the one template they keep (tasks/names.py) to the hub rather than both spell it.
volume_template = env.get("USER_VOLUME_TEMPLATE", "")
if "{username}" not in volume_template:
    raise SystemExit("USER_VOLUME_TEMPLATE is not set: start the hub with `inv up`, which sets it.")

# --- Network and TLS -----------------------------------------------------------------
# The proxy terminates HTTPS itself on 8443 inside the container; compose publishes it
# on HUB_PORT. The certificate is mounted read-only from secrets/, never baked in.
c.JupyterHub.port = 8443
c.JupyterHub.ssl_cert = os.path.join(secrets_dir, "jupyterhub.crt")
c.JupyterHub.ssl_key = os.path.join(secrets_dir, "jupyterhub.key")
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
# Back after a restart, a kill or a reboot, the hub checks each server it recorded as running
# before it answers, for up to init_spawners_timeout (10 s by default). A server that was
# starting when the hub went down listens only once it has reached the hub's API, which
# listens only after that check: each waited for the other the whole 10 s, and the user longer.
# 1 s, the least JupyterHub takes, lets the hub answer while the checks end in the background.
c.JupyterHub.init_spawners_timeout = 1
# The proxy is the hub's child in this container. A hub that was killed leaves its pid file
# behind, and back up it would take whatever process of the restarted container has that
# pid for the old proxy, and signal it and wait (or fail). /dev/shm is empty at each start.
c.ConfigurableHTTPProxy.pid_file = "/dev/shm/jupyterhub-proxy.pid"
# CHP 5 keeps client connections open between requests, closing an idle one after 5 s by
# default. A client that asks every few seconds (a monitor, a script, `inv status` in a loop)
# then sends, now and then, on a connection the proxy is closing at that moment and gets no
# answer ("Remote end closed connection without response"; a browser retries, most scripts
# do not). 65 s is above the 60 s idle timeout of common load balancers and clients.
PROXY_KEEP_ALIVE_MS = 65_000
c.ConfigurableHTTPProxy.command = ["configurable-http-proxy",
                                   "--keep-alive-timeout", str(PROXY_KEEP_ALIVE_MS)]

# --- User servers ------------------------------------------------------------------------
# DockerSpawner whose start() returns once the server listens: JupyterHub's own wait for a
# new server backs off at random up to 5 s and notices it seconds late (see hubspawner.py).
c.JupyterHub.spawner_class = "hubspawner.ReadyDockerSpawner"
# `inv up` names it: the image notebook/ builds for this deployment, or the one .env names.
image = env.get("DOCKER_NOTEBOOK_IMAGE", "")
if not image:
    raise SystemExit("DOCKER_NOTEBOOK_IMAGE is empty: start the hub with `inv up`, which sets it.")
c.DockerSpawner.image = image
# Pin the image list so no user option can choose another image (CVE-2023-48311).
c.DockerSpawner.allowed_images = {"default": image}
c.DockerSpawner.network_name = env["DOCKER_NETWORK_NAME"]
# Names carry the project so two deployments on one engine never collide; {username} is
# DockerSpawner's escaped name (lowercase letters, digits and -XX escapes).
c.DockerSpawner.prefix = f"{project}-user"
c.DockerSpawner.name_template = "{prefix}-{username}"
# One named volume per user holds their work; it outlives every container.
c.DockerSpawner.volumes = {volume_template: "/home/jovyan/work"}
c.DockerSpawner.notebook_dir = "/home/jovyan/work"
c.Spawner.default_url = "/lab"
# On a swarm the tool made (`swarm-init`, `swarm-join`), `inv up` says so: servers then run
# as services on the workers, each user on the node that holds their volume (hubswarm.py).
swarm = env.get("HUB_SWARM") == "1"
if not swarm:
    # Containers are disposable (the volume is not): a stopped server leaves nothing behind.
    # (A service is always removed when its server stops: SwarmSpawner has no such option.)
    c.DockerSpawner.remove = True
else:
    c.JupyterHub.spawner_class = "hubswarm.PinnedSwarmSpawner"
    c.PinnedSwarmSpawner.project = project
    c.SwarmSpawner.network_name = env["DOCKER_NETWORK_NAME"]
    # Reached at its task's address on the overlay network (hubswarm.py get_ip_and_port).
    c.SwarmSpawner.use_internal_ip = True

# --- Each user's share of the host, and a server that cannot raise its privileges ---------------
# `inv up` checked USER_*_LIMIT in .env against the host and hands them over converted; a hub
# started without them (by hand) refuses to start rather than run every server unlimited.
try:
    mem_bytes = int(env["USER_MEM_LIMIT_BYTES"])
    cpu_cores = float(env["USER_CPU_LIMIT_CORES"])
    pids = int(env["USER_PIDS_LIMIT_COUNT"])
    cull_timeout = int(env["IDLE_CULL_TIMEOUT_SECONDS"])
    cull_max_age = int(env["IDLE_CULL_MAX_AGE_SECONDS"])
except (KeyError, ValueError):
    raise SystemExit("The user limits (USER_MEM_LIMIT_BYTES...) are missing: start the hub "
                     "with `inv up`, which checks .env and sets them.")
host_config = {
    # A notebook server runs as uid 1000 and needs no capability at all: drop every one,
    # and let no setuid program (su, passwd, chsh, mount) raise its privileges.
    "cap_drop": ["ALL"],
    "security_opt": ["no-new-privileges"],
}
if mem_bytes:
    # DockerSpawner also hands it to the server as MEM_LIMIT, for tools that show it.
    c.DockerSpawner.mem_limit = mem_bytes
    # Swap counts against the same limit: otherwise a server could use as much swap again
    # and slow the whole host down before its limit bites.
    host_config["memswap_limit"] = mem_bytes
if cpu_cores:
    c.DockerSpawner.cpu_limit = cpu_cores  # a CFS quota of that many cores per 100 ms
if pids:
    host_config["pids_limit"] = pids  # processes and threads: a fork bomb stops here
c.DockerSpawner.extra_host_config = host_config

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
    volume_labels = {**labels, f"{LABEL}.role": "user-volume"}
    if swarm:  # the volume is made on the user's node, at the service's first mount
        spawner.volume_labels = volume_labels
    else:
        name = spawner.format_volume_name(volume_template, spawner)
        try:
            await spawner.docker("inspect_volume", name)
        except NotFound:
            await spawner.docker("create_volume", name=name, labels=volume_labels)
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

# --- Profiles: who may run which image with which limits, and the groups' folders -----------------
# `inv up` checked profiles.toml against userlist and hands over the result (tasks/profiles.py);
# empty without that file, and then everyone runs the image and limits above, as ever. The
# user's hub groups decide at each start; a request may carry only a profile they may have:
# anything else (an image, a limit, another profile) is refused before anything starts.
profiles_json = env.get("HUB_PROFILES", "")
if profiles_json:
    from hubprofiles import Hooks, load_catalog, options_from_form

    profile_hooks = Hooks(load_catalog(profiles_json), host_config, c.DockerSpawner.volumes)
    c.Spawner.options_form = profile_hooks.options_form  # the choice, only with two or more
    c.Spawner.options_from_form = options_from_form
    c.Spawner.apply_user_options = profile_hooks.apply_user_options
    # DockerSpawner's own image option is refused before it is read; its list says the same.
    c.DockerSpawner.allowed_images = profile_hooks.allowed_images
    c.Spawner.pre_spawn_hook = profile_hooks.after(label_user_objects)

# --- Who may log in ------------------------------------------------------------------------
c.Authenticator.admin_users = admins
c.Authenticator.allowed_users = users | admins
# Everyone in the hub's database may log in: that is what keeps users an admin adds in the
# admin panel across restarts. Set on purpose for both logins, because the defaults differ
# (JupyterHub: on when allowed_users is set; OAuthenticator 17: off). The flip side, that
# dropping a name from userlist does not lock them out by itself, is handled by `inv up`,
# which deletes such users through the API (tasks/access.py).
c.Authenticator.allow_existing_users = True
authenticator = env.get("HUB_AUTHENTICATOR", "native")
if authenticator == "native":
    # NativeAuthenticator, with sign-up off and every userlist name provisioned before the
    # first request from the passwords `inv up` generated (see hubauth.py for why).
    c.JupyterHub.authenticator_class = "hubauth.ProvisionedNativeAuthenticator"
    c.ProvisionedNativeAuthenticator.initial_passwords_file = os.path.join(
        secrets_dir, "initial-passwords"
    )
elif authenticator == "github":
    # GitHub (or GitHub Enterprise) OAuth; no password is kept here and the native login
    # is off. The app's id, secret and callback come from secrets/oauth.env, never from the
    # environment: `docker inspect` would show them there. `inv up` checked them already;
    # this only refuses to start a hub that could not log anyone in.
    try:
        oauth = _read_env("oauth.env")
    except FileNotFoundError:
        oauth = {}
    missing = [k for k in ("GITHUB_CLIENT_ID", "GITHUB_CLIENT_SECRET", "OAUTH_CALLBACK_URL")
               if not oauth.get(k)]
    if missing:
        raise SystemExit(f"secrets/oauth.env lacks {', '.join(missing)}: see README, GitHub login.")
    c.JupyterHub.authenticator_class = "oauthenticator.github.GitHubOAuthenticator"
    c.GitHubOAuthenticator.client_id = oauth["GITHUB_CLIENT_ID"]
    c.GitHubOAuthenticator.client_secret = oauth["GITHUB_CLIENT_SECRET"]
    # Must equal the callback registered with the OAuth app; `inv up` checked it names
    # this hub's host and port.
    c.GitHubOAuthenticator.oauth_callback_url = oauth["OAUTH_CALLBACK_URL"]
    # github.com, or a GitHub Enterprise server: OAuthenticator derives the authorize,
    # token and API endpoints from it (the API at URL/api/v3 for any host but github.com).
    c.GitHubOAuthenticator.github_url = (env.get("GITHUB_URL") or "https://github.com").rstrip("/")
    orgs = {o for o in env.get("GITHUB_ALLOWED_ORGS", "").replace(",", " ").split() if o}
    if orgs:
        # A second allow rule: members of these organizations or org:team teams. read:org
        # lets the hub see private memberships too, not only public ones.
        c.GitHubOAuthenticator.allowed_organizations = orgs
        c.GitHubOAuthenticator.scope = ["read:org"]
else:
    raise SystemExit(
        f"HUB_AUTHENTICATOR={authenticator!r} is not supported; use 'native' or 'github'."
    )

# --- The tool's own access -------------------------------------------------------------------
# `inv up` removes the users dropped from userlist through the REST API, and `inv status`
# reads who has a server and since when, with a token it keeps in secrets/ (mode 0600). Its
# role may manage users and groups and read servers, nothing else; a hub started without
# the file (by hand) simply has no such service. `inv upgrade` checks a new hub by starting,
# reaching and stopping the server of one user of its own (tasks/upgradeplan.py, CHECK_USER):
# the role may do that for that user only.
CHECK_USER = "deploy.check"
services, roles = [], []
if os.path.exists(os.path.join(secrets_dir, "hub-api-token")):
    services.append(
        {"name": "jupyterhub-deploy", "api_token": _read_private("hub-api-token").strip()})
    roles.append({"name": "jupyterhub-deploy", "services": ["jupyterhub-deploy"],
                  "scopes": ["admin:users", "admin:groups", "read:servers",
                             f"servers!user={CHECK_USER}", f"access:servers!user={CHECK_USER}"]})

# --- Idle culling ------------------------------------------------------------------------------
# jupyterhub-idle-culler, started (and restarted if it dies) by the hub, stops servers
# nobody has used for IDLE_CULL_TIMEOUT and, with IDLE_CULL_MAX_AGE, any server older than
# that. The user's volume stays; their next login starts a fresh server.
if cull_timeout or cull_max_age:
    # The culler sees only the last activity the hub records: the hub reads the proxy's
    # every last_activity_interval, and each server reports its own (API requests, kernel
    # messages, and a busy kernel: notebook/jupyterhub_deploy/) every
    # JUPYTERHUB_ACTIVITY_INTERVAL. Both default to 300 s, which would cull servers in use
    # under a short timeout: report four times per timeout, at most every 10 s.
    shortest = min(t for t in (cull_timeout, cull_max_age) if t)
    report_every = min(300, max(10, shortest // 4))
    c.JupyterHub.last_activity_interval = report_every
    c.Spawner.environment = {"JUPYTERHUB_ACTIVITY_INTERVAL": str(report_every)}
    # --timeout=0 would cull every server at once: with only a maximum age, give the
    # culler a timeout no server reaches.
    idle_for = cull_timeout or 10 * 365 * 86400
    services.append({
        "name": "idle-culler",
        # The hub hands it JUPYTERHUB_API_URL and its own token: nothing secret on this line.
        "command": [sys.executable, "-m", "jupyterhub_idle_culler", f"--timeout={idle_for}",
                    f"--cull-every={report_every}",
                    *([f"--max-age={cull_max_age}"] if cull_max_age else [])],
    })
    # Exactly what the culler's README asks for: find users, read their servers' activity,
    # stop servers. Not admin:users: it never deletes a user (no --cull-users).
    roles.append({"name": "idle-culler", "services": ["idle-culler"],
                  "scopes": ["list:users", "read:users:activity", "read:servers",
                             "delete:servers"]})

# --- A certificate from an ACME CA (Let's Encrypt) ---------------------------------------------
# With ACME_DOMAIN set, hubacme.py, started (and restarted if it dies) by the hub, gets the
# certificate and renews it while the hub runs; it keeps the account key and the certificate in
# the data volume (/data/acme, 0600), never in secrets/, the image or the environment. The
# proxy serves its file as soon as it changes (proxy.js), so a renewal restarts
# nothing; until the first certificate arrives it serves the self-signed one from secrets/.
acme_domain = env.get("ACME_DOMAIN", "")
if acme_domain:
    acme_dir = env.get("HUB_ACME_DIR", "/data/acme")
    acme_pem = os.path.join(acme_dir, "current.pem")
    if os.path.exists(acme_pem):
        c.JupyterHub.ssl_cert = c.JupyterHub.ssl_key = acme_pem  # one file: key, then the chain
    c.ConfigurableHTTPProxy.command += ["--follow-ssl-cert", acme_pem]
    # Checked by `inv up`; the service refuses to start without them.
    acme_env = {key: env.get(key, "") for key in (
        "ACME_DOMAIN", "ACME_EMAIL", "ACME_DIRECTORY_URL", "ACME_CA_FILE", "ACME_HTTPS_PORT")}
    services.append({"name": "acme", "environment": {**acme_env, "HUB_ACME_DIR": acme_dir},
                     "command": [sys.executable, "-m", "hubacme"]})
    # It talks to the ACME server and the CA's validators, never to the hub's API: no scopes.

if services:
    c.JupyterHub.services = services
    c.JupyterHub.load_roles = roles
