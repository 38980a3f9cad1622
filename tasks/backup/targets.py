"""What a backup or restore works on: the deployment, read once per task (settings, the
Docker client, the compose model), and its volumes, each as a Target."""
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from invoke.exceptions import Exit

from tasks.names import LABEL, USER_LABEL, label_filter, user_volume
from tasks.show import shown
from tasks.target import command_line, docker_client, place, project_dir
from tasks.userlist import check_name


@dataclass(frozen=True)
class Target:
    kind: str  # "user", "hub" or "share"
    volume: str
    user: str = ""
    group: str = ""  # a share's

    @property
    def what(self) -> str:
        if self.kind == "share":
            return f"the shared folder of {self.group}"
        return f"user {self.user}" if self.kind == "user" else "the hub's data"


@dataclass(frozen=True)
class Deployment:
    """What every backup and restore step needs, read once per task."""
    root: Path
    project: str
    client: object
    image: str  # the helper containers' image: the hub's, which has python3 for the swap
    hub_volume: str
    c: object = None  # the task's context: messages name the commands that work there
    swarm: object = None  # tasks.swarmnodes.Swarm on a swarm the tool made: users' volumes
    #                       are then on their nodes (tasks/backup/nodes.py)


def prepare(c) -> Deployment:
    """Settings, engine and compose model, checked; the Docker client is built here, once."""
    import docker

    from tasks.project import compose_env, read_model
    from tasks.settings import load_settings

    root = project_dir(c)
    settings = load_settings(root)
    client = docker_client(c)
    model = read_model(c, compose_env(settings))
    try:
        client.images.get(model.hub_image)
    except docker.errors.ImageNotFound:
        raise Exit(f"The hub image {model.hub_image} is not on {place(c)}, and backups use it "
                   f"for their helper containers: run `{command_line(c, 'build')}` first.")
    from tasks.swarmnodes import swarm_of

    return Deployment(root, settings.project, client, model.hub_image, model.hub_volume, c,
                      swarm_of(client, settings.project))


def user_target(dep: Deployment, user: str) -> Target:
    check_name(user)
    return Target("user", user_volume(dep.project, user), user)


def hub_target(dep: Deployment) -> Target:
    return Target("hub", dep.hub_volume)


def share_target(dep: Deployment, group: str) -> Target:
    from tasks.profiles import check_group_name, share_volume

    check_group_name(group)
    return Target("share", share_volume(dep.project, group), group=group)


def share_targets(dep: Deployment) -> list:
    """Every group folder of this project, by its labels (`inv up` labels each it makes)."""
    from tasks.profiles import share_volume

    found = dep.client.volumes.list(filters=label_filter(dep.project, "share"))
    targets = []
    for volume in sorted(found, key=lambda v: v.name):
        group = (volume.attrs.get("Labels") or {}).get(f"{LABEL}.group", "")
        if share_volume(dep.project, group) != volume.name:
            print(f"skipped volume {shown(volume.name)}: labelled for group '{shown(group)}', "
                  f"whose folder is {share_volume(dep.project, group)}")
            continue
        targets.append(share_target(dep, group))
    return targets


def require_volume(dep: Deployment, target: Target) -> None:
    import docker

    try:
        dep.client.volumes.get(target.volume)  # exact name; list(filters=name) matches substrings
    except docker.errors.NotFound:
        hint = (f"{target.user} has never started a server here, or the name is misspelt"
                if target.kind == "user" else
                "profiles.toml gives that group no shared folder, or the name is misspelt; "
                f"`{command_line(dep.c, 'up')}` makes those it names"
                if target.kind == "share" else f"run `{command_line(dep.c, 'build')}` to make it")
        raise Exit(f"No volume {target.volume} for {target.what}: {hint}. "
                   f"`{command_line(dep.c, 'backup', '--all')}` backs up every user volume there is.")


def user_targets(dep: Deployment) -> list:
    """Every user volume of this project, by its labels (the hub labels each one it makes);
    on a swarm, every user with a home node (their volume is there)."""
    if dep.swarm is not None:
        return [Target("user", user_volume(dep.project, user), user)
                for user in sorted({u for node in dep.swarm.nodes for u in node.homes})]
    found = dep.client.volumes.list(filters=label_filter(dep.project, "user-volume"))
    targets = []
    for volume in sorted(found, key=lambda v: v.name):
        user = (volume.attrs.get("Labels") or {}).get(USER_LABEL, "")
        try:
            check_name(user)
        except Exit:
            print(f"skipped volume {shown(volume.name)}: its user label '{shown(user)}' is not a "
                  "valid name")
            continue
        if user_volume(dep.project, user) != volume.name:
            print(f"skipped volume {shown(volume.name)}: labelled for {user}, whose volume is "
                  f"{user_volume(dep.project, user)}")
            continue
        targets.append(Target("user", volume.name, user))
    return targets


@contextmanager
def engine_errors(what: str):
    """The engine's failures as messages, not tracebacks."""
    import docker
    import requests

    try:
        yield
    except docker.errors.DockerException as error:
        raise Exit(f"{what} failed: the Docker Engine said: {shown(error)}")
    except requests.exceptions.RequestException as error:
        raise Exit(f"{what} failed: the Docker Engine did not answer ({shown(error)}). Check it "
                   "with `docker info`, then run this again.")


def running_hub(dep: Deployment):
    from tasks.checks import hub_container

    hub = hub_container(dep.client, dep.project)
    return hub if hub is not None and hub.status == "running" else None
