"""The deployment's resolved model (names from `docker compose config`) and the
variables the tasks hand to compose on top of `.env`."""
import json
from dataclasses import dataclass, field

from invoke.exceptions import Exit

from tasks import acmecert
from tasks.limits import hub_env
from tasks.names import user_volume_template
from tasks.target import compose


@dataclass(frozen=True)
class Model:
    project: str
    network: str
    hub_volume: str
    hub_image: str
    notebook_build_image: str  # what notebook/ builds; DOCKER_NOTEBOOK_IMAGE may name another
    builds: dict = field(default_factory=dict)  # service -> its resolved `build` section


def parse_model(config: dict) -> Model:
    """Pick the names the tasks need out of `docker compose config --format json`."""
    services = config["services"]
    return Model(
        project=config["name"],
        network=config["networks"]["default"]["name"],
        hub_volume=config["volumes"]["hub-data"]["name"],
        hub_image=services["hub"]["image"],
        notebook_build_image=services["notebook"]["image"],
        builds={name: service["build"] for name, service in services.items() if service.get("build")},
    )


def read_model(c, env) -> Model:
    # --profile images: the notebook service is otherwise left out of the model.
    result = compose(
        c, "--profile", "images", "config", "--format", "json", env=env, hide=True, warn=True
    )
    if not result.ok:
        raise Exit(f"docker compose cannot read docker-compose.yml with .env:\n{result.stderr.strip()}")
    return parse_model(json.loads(result.stdout))


def compose_env(settings, *, base_image="", ca_file="", users=None, cert_sha256="",
                secrets_sha256="", notebook_image="") -> dict:
    """Every variable docker-compose.yml reads, as the tasks resolved and checked them: the
    settings (so a shell override reaches a remote host's compose too, which reads the
    uploaded .env) and what the tasks work out at run time (`notebook_image`: the image
    user servers run, images.server_image's answer, for the hub)."""
    env = {
        "COMPOSE_PROJECT_NAME": settings.project,
        "HUB_PORT": str(settings.port),
        "DOCKER_NOTEBOOK_IMAGE": notebook_image or settings.notebook_image,
        "BASE_IMAGE": settings.base_image,
        "HUB_AUTHENTICATOR": settings.authenticator,
        "GITHUB_URL": settings.github_url,
        "GITHUB_ALLOWED_ORGS": ",".join(settings.github_allowed_orgs),
        "BUILD_CA_FILE": ca_file or "/dev/null",
        # compose 2.40 would hand builds to buildx bake, which plain engines lack.
        "COMPOSE_BAKE": "false",
        **acmecert.hub_env(settings.acme, settings.port),
    }
    if base_image:
        env["BASE_IMAGE"] = base_image
    if users is not None:  # what the hub needs to start
        env["JUPYTERHUB_ADMINS"] = ",".join(users.admins)
        env["JUPYTERHUB_USERS"] = ",".join(users.users)
        env["USER_VOLUME_TEMPLATE"] = user_volume_template(settings.project)
        env.update(hub_env(settings.limits))
    if cert_sha256:
        env["HUB_CERT_SHA256"] = cert_sha256
    if secrets_sha256:
        env["HUB_SECRETS_SHA256"] = secrets_sha256
    return env
