"""The swarm the tool made, as the tasks see it: its nodes, the SSH host each one is, the
users whose volume each holds, and the way to each node's own engine.

A swarm is the tool's when its manager node carries MANAGER_LABEL (`swarm-init` puts it
there): only then does a deployment on that engine run its servers as services
(hub/hubswarm.py); an engine that is in some other swarm stays a single host. Each node the
tool joined carries SSH_LABEL, the host as the operator named it to `swarm-join`, which is
how a task on the manager reaches that node's engine (backups, images). Each user's home is
a label on the node that holds their volume (hub/hubswarm.py home_key), whose value is the
user's name.
"""
from dataclasses import dataclass

from invoke.exceptions import Exit

from tasks.names import LABEL, USER_LABEL, escape_username, label_filter
from tasks.show import shown

MANAGER_LABEL = f"{LABEL}.manager"
SSH_LABEL = f"{LABEL}.ssh"


def hub_env(swarm) -> dict:
    """What docker-compose.yml hands the hub: whether its servers run on a swarm."""
    return {"HUB_SWARM": "1" if swarm is not None else ""}


def home_prefix(project: str) -> str:
    return f"{LABEL}.home.{project}."


def home_key(project: str, user: str) -> str:
    """The label of the node that holds the user's volume, as hub/hubswarm.py home_key
    writes it (the hub's image cannot import this module; a unit test holds them equal)."""
    return home_prefix(project) + escape_username(user)


def update_node_labels(client, node_id: str, add: dict = None, remove=()) -> None:
    """Add and remove labels of a node, against the node's own version (a concurrent change
    fails rather than being overwritten)."""
    attrs = client.api.inspect_node(node_id)
    labels = {**(attrs["Spec"].get("Labels") or {}), **(add or {})}
    for key in remove:
        labels.pop(key, None)
    client.api.update_node(node_id, attrs["Version"]["Index"], {**attrs["Spec"], "Labels": labels})


@dataclass(frozen=True)
class Node:
    id: str
    name: str
    role: str            # manager or worker
    state: str           # ready, down, unknown...
    availability: str    # active, pause, drain
    ssh: str             # the SSH host it was joined as ("" for one the tool did not join)
    homes: tuple         # names of this project's users whose volume lives here

    @property
    def usable(self) -> bool:
        return self.state == "ready" and self.availability == "active"


def parse_node(attrs: dict, project: str) -> Node:
    spec, labels = attrs.get("Spec", {}), attrs.get("Spec", {}).get("Labels") or {}
    prefix = home_prefix(project)
    homes = tuple(sorted(value for key, value in labels.items() if key.startswith(prefix)))
    return Node(attrs["ID"], (attrs.get("Description") or {}).get("Hostname") or attrs["ID"][:12],
                spec.get("Role", ""), (attrs.get("Status") or {}).get("State", ""),
                spec.get("Availability", ""), labels.get(SSH_LABEL, ""), homes)


@dataclass(frozen=True)
class Swarm:
    nodes: tuple         # Node, the manager first

    @property
    def workers(self) -> tuple:
        return tuple(node for node in self.nodes if node.role == "worker")

    def home_of(self, user: str):
        """The node holding the user's volume, or None (no server ever started)."""
        return next((node for node in self.nodes if user in node.homes), None)

    def node(self, name: str) -> Node:
        """A node by hostname, ID or the SSH host it was joined as; Exit naming the known ones."""
        for node in self.nodes:
            if name in (node.name, node.id, node.ssh):
                return node
        raise Exit(f"no node {shown(repr(name))} in the swarm; its nodes: "
                   f"{', '.join(shown(node.name) for node in self.nodes)}")


def swarm_of(client, project: str):
    """The swarm the tool made on this engine (a Swarm), or None for a single host. An
    engine that is a worker of a swarm is refused: the tasks talk to its manager."""
    info = client.info().get("Swarm") or {}
    if info.get("LocalNodeState") != "active":
        return None
    if not info.get("ControlAvailable"):
        raise Exit("This engine is a worker of a Docker swarm: run the task against its "
                   "manager (`python -m tasks -H MANAGER ...`).")
    manager = client.api.inspect_node(info["NodeID"])
    if MANAGER_LABEL not in ((manager.get("Spec") or {}).get("Labels") or {}):
        return None  # someone else's swarm: this deployment stays on this engine alone
    nodes = [parse_node(attrs, project) for attrs in client.api.nodes()]
    nodes.sort(key=lambda node: (node.id != info["NodeID"], node.name))
    return Swarm(tuple(nodes))


def user_services(client, project: str, **extra: str) -> list:
    """The deployment's user servers on the swarm (`user=NAME`: that user's): services the
    hub labelled."""
    return client.services.list(filters=label_filter(project, "user-server", **extra))


def service_user(service) -> str:
    """The user a server's service belongs to, by the hub's label."""
    return (service.attrs["Spec"].get("Labels") or {}).get(USER_LABEL, service.name)


def service_task(service):
    """(node ID, state) of the service's current task, or ("", "gone")."""
    tasks = service.tasks({"desired-state": "running"}) or service.tasks()
    if not tasks:
        return "", "gone"
    newest = max(tasks, key=lambda t: t.get("CreatedAt", ""))
    return newest.get("NodeID", ""), (newest.get("Status") or {}).get("State", "")


def open_node(c, ssh_host: str):
    """A checked SSH connection (tasks/program.py) to a node, with the same SSH settings
    as the task's own connection."""
    from fabric import Config

    from tasks.program import CheckedConnection

    config = c.config if hasattr(c, "host") else Config()
    return CheckedConnection(ssh_host, config=config)


def node_client(connection):
    """The Docker SDK on a node's engine, over its SSH connection; Exit when it does not answer."""
    from tasks.target import docker_client

    return docker_client(connection)


def image_id(client, name: str) -> str:
    import docker

    try:
        return client.images.get(name).id
    except docker.errors.ImageNotFound:
        return ""


def send_image(source, target, name: str) -> None:
    """Copy an image from one engine to another as `docker save | docker load` does, streamed
    through this machine (there may be no registry the nodes share)."""
    target.api.load_image(source.api.get_image(name))


def ensure_worker_images(ready, servers_image: str) -> bool:
    """The images the servers run (the users' and each profile's) and the hub's (backups'
    helper containers run it) on every worker; says what it did. False when a worker could
    not get them (down, drained): the caller then does not record the run as applied."""
    from tasks.profilehost import server_images

    images = [*server_images(ready.profiles, ready.settings.project, servers_image),
              ready.model.hub_image]
    lines, every_node = ensure_images_on_nodes(ready.run.c, ready.client, ready.run.swarm, images)
    for line in lines:
        print(line)
    return every_node


def ensure_images_on_nodes(c, client, swarm: Swarm, images: list) -> tuple:
    """Each image, on every usable worker as on the manager: (lines to print, whether every
    worker has them)."""
    lines, every_node = [], True
    wanted = {name: image_id(client, name) for name in images}
    for node in swarm.workers:
        if not node.usable or not node.ssh:
            lines.append(f"images on node {shown(node.name)}: skipped ({node.state}, {node.availability}"
                         f"{'' if node.ssh else ', not joined by this tool'})")
            every_node = False
            continue
        with open_node(c, node.ssh) as connection:
            engine = node_client(connection)
            sent = [name for name, wanted_id in wanted.items()
                    if wanted_id and image_id(engine, name) != wanted_id]
            for name in sent:
                send_image(client, engine, name)
            engine.close()
        lines.append(f"images on node {shown(node.name)}: "
                     + (f"sent {', '.join(sent)}" if sent else "up to date"))
    return lines, every_node
