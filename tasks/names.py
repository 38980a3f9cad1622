"""How names and labels of the Docker objects this tool and DockerSpawner create are made."""
import string

LABEL = "org.jupyterhub-deploy"
PROJECT_LABEL = f"{LABEL}.project"
ROLE_LABEL = f"{LABEL}.role"
USER_LABEL = f"{LABEL}.user"

_SAFE = frozenset(string.ascii_lowercase + string.digits)


def escape_username(name: str) -> str:
    """DockerSpawner 14's default escaping of a user name (`DockerSpawner._escape`):
    lowercase letters and digits stay, every other UTF-8 byte becomes "-" and its hex value (unpadded); then lowercased.
    The unit tier checks it against DockerSpawner's own function."""
    out = []
    for char in name:
        if char in _SAFE:
            out.append(char)
        else:
            out.extend(f"-{byte:x}" for byte in char.encode("utf-8"))
    return "".join(out).lower()


# The named volume that holds a user's work/, as a DockerSpawner volume template: {username}
# is DockerSpawner's escaped name. `inv up` hands it to the hub (USER_VOLUME_TEMPLATE).
USER_VOLUME = "{project}-user-{username}"


def user_volume_template(project: str) -> str:
    """This deployment's user volume template, as the hub's DockerSpawner takes it."""
    return USER_VOLUME.format(project=project, username="{username}")


def user_volume(project: str, user: str) -> str:
    """The named volume that holds a user's work/."""
    return USER_VOLUME.format(project=project, username=escape_username(user))


def labels(project: str, role: str, **extra: str) -> dict:
    """The labels of an object this tool (or the hub, for user servers) creates."""
    return {PROJECT_LABEL: project, ROLE_LABEL: role, **{f"{LABEL}.{k}": v for k, v in extra.items()}}


def label_filter(project: str, role: str = "", **extra: str) -> dict:
    """The Engine API filter that finds this deployment's objects (with this role and
    these extra labels): the one way the tasks look objects up, never by name prefix."""
    wanted = {PROJECT_LABEL: project, **({ROLE_LABEL: role} if role else {}),
              **{f"{LABEL}.{k}": v for k, v in extra.items()}}
    return {"label": [f"{key}={value}" for key, value in wanted.items()]}
