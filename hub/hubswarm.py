"""User servers as Docker Swarm services on the workers, each user kept on the node that
holds their volume (the hub runs on the manager; `python -m tasks -H manager swarm-join`).

DockerSpawner's SwarmSpawner (14.0) needs four things changed here:
- it mounts named volumes as bind mounts, which the engine refuses (dockerspawner#536):
  here they are volume mounts, created on the node with the deployment's labels;
- it places a server anywhere: a user's volume is local to one node, so the first start
  picks a worker and records it as a label on that node (`home_key`, whose value is the
  user's name), kept in the swarm's
  own store (it outlives hub restarts, and an operator sees it in `docker node inspect`);
  every start after is constrained to that node;
- it waits out the whole start timeout on a task that cannot start (its node down, the
  image missing there) and counts a pending task as running: here a spawn fails at once
  with what the engine said, or after `pending_timeout` with the node named;
- Swarm's virtual IPs need IPVS, which many kernels (this project's test machines among
  them) lack: the service gets a DNS round-robin endpoint (no virtual IP), and the hub
  reaches the server at its task's address on the overlay network.
It also keeps what the single-host servers have: limits on memory, CPU and processes, no
capabilities and no privilege raising (setpriv sets no_new_privs on the server's process,
which its children inherit; services have no `security_opt`), and no restart by the swarm
(a server that stops is stopped, as a container with AutoRemove would be).
"""
import asyncio
import time

from docker.errors import APIError
from docker.types import (ContainerSpec, EndpointSpec, Mount, Placement, Resources,
                          RestartPolicy, TaskTemplate)
from dockerspawner import SwarmSpawner
from traitlets import Dict, Float, Integer, Unicode

from hubspawner import port_open

LABEL = "org.jupyterhub-deploy"
# Task states on the way to running; any other state but "running" means it will not run.
STARTING = {"new", "allocated", "pending", "assigned", "accepted", "preparing", "ready",
            "starting"}
UNACCEPTED = {"new", "allocated", "pending", "assigned"}  # not yet taken by its node


class NoHome(RuntimeError):
    """No node can hold this user's server now; the message says why and what to do."""


def home_key(project: str, escaped_name: str) -> str:
    """The node label that marks where a user's volume lives (one label per user, on one
    node): `org.jupyterhub-deploy.home.PROJECT.NAME`."""
    return f"{LABEL}.home.{project}.{escaped_name}"


def node_name(node: dict) -> str:
    return node.get("Description", {}).get("Hostname") or node["ID"][:12]


def usable(node: dict) -> bool:
    return (node.get("Status", {}).get("State") == "ready"
            and node.get("Spec", {}).get("Availability") == "active")


def choose_home(nodes: list, key: str, project: str) -> tuple:
    """(node, new) where the user with home label `key` runs: the node that has the label
    (new=False), else the usable worker holding the fewest of this project's users (then
    by name), to be labelled (new=True). Raises NoHome when that cannot be."""
    for node in nodes:
        if key in node.get("Spec", {}).get("Labels", {}):
            return node, False
    workers = [n for n in nodes if n.get("Spec", {}).get("Role") == "worker" and usable(n)]
    if not workers:
        raise NoHome("no worker node is ready and active in the swarm: join one with "
                     "`python -m tasks -H MANAGER swarm-join WORKER`")
    prefix = f"{LABEL}.home.{project}."

    def homes(node):
        return sum(1 for label in node.get("Spec", {}).get("Labels", {}) if label.startswith(prefix))
    return min(workers, key=lambda n: (homes(n), node_name(n))), True


def task_verdict(task: dict) -> str:
    """"running", "starting", or why the task will not run (the engine's own words)."""
    status = task.get("Status", {})
    state = status.get("State", "")
    if state == "running":
        return "running"
    if state in STARTING:
        return "starting"
    return f"{state}: {status.get('Err') or status.get('Message') or 'no reason given'}"


def service_resources(mem: int | None, cpus: float | None, pids: int | None) -> Resources:
    resources = Resources(mem_limit=mem or None,
                          cpu_limit=int(cpus * 1e9) if cpus else None)
    if pids:
        # Engine API 1.41 has Limits.Pids; docker-py's Resources has no parameter for it.
        resources.setdefault("Limits", {})["Pids"] = int(pids)
    return resources


class PinnedSwarmSpawner(SwarmSpawner):
    project = Unicode(config=True, help="The deployment's name, part of each home label.")
    ready_poll_interval = Float(0.1, config=True,
                                help="Seconds between looks at a starting server.")
    pending_timeout = Integer(
        20, config=True,
        help="Seconds a server's task may wait for its node to take it before the start fails.")
    volume_labels = Dict(help="Labels for the user's volume, made on its node at first mount.")
    home_name = Unicode(help="The name of the node the server runs on (for messages).")

    @property
    def mounts(self):
        return [Mount(target=spec["bind"], source=source, type="volume",
                      read_only=spec["mode"] == "ro", labels=self.volume_labels or None)
                for source, spec in self.volume_binds.items()]

    async def home_node(self) -> dict:
        """The node the user's server runs on, labelled on the first start; NoHome when it
        cannot run there now (the message names it and the way out)."""
        key = home_key(self.project, self.escaped_name)
        for _ in range(5):  # another spawn may update the same node between read and write
            node, new = choose_home(await self.docker("nodes"), key, self.project)
            if not new:
                break
            spec = {**node["Spec"], "Labels": {**node["Spec"].get("Labels", {}),
                                                key: self.user.name}}
            try:
                await self.docker("update_node", node["ID"], node["Version"]["Index"], spec)
            except APIError as error:
                if "out of sequence" in str(error) or error.status_code == 409:
                    continue
                raise
            self.log.info("Home of %s: node %s (new)", self.user.name, node_name(node))
            return node
        else:
            raise NoHome(f"{self.user.name}'s node could not be recorded: the swarm's nodes "
                         "kept changing; try again.")
        if not usable(node):
            why = node.get("Status", {}).get("State"), node["Spec"].get("Availability")
            raise NoHome(
                f"{self.user.name}'s files are on node {node_name(node)}, which is "
                f"{why[0]} and {why[1]}: the server can start once that node is back, or an "
                "admin restores the user's backup on another node (docs/swarm.md).")
        return node

    async def start(self):
        node = await self.home_node()
        self.home_name = node_name(node)
        self.extra_placement_spec = {"constraints": [f"node.id=={node['ID']}"]}
        ip, port = await super().start()
        deadline = time.monotonic() + self.http_timeout
        while not await port_open(ip, port):
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self._log_name} did not listen on {ip}:{port} within "
                                   f"{self.http_timeout} s on node {node_name(node)}")
            await asyncio.sleep(self.ready_poll_interval)
        return ip, port

    async def create_object(self):
        host = self.extra_host_config or {}
        security = host.get("security_opt") or []
        command = await self.get_command()
        if "no-new-privileges" in security:
            command = ["setpriv", "--no-new-privs", "--", *command]
        labels = (self.extra_create_kwargs or {}).get("labels", {})
        container = ContainerSpec(
            image=self.image, args=command, env=self.get_env(), mounts=self.mounts,
            labels=labels, cap_drop=host.get("cap_drop"))
        template = TaskTemplate(
            container_spec=container,
            resources=service_resources(self.mem_limit, self.cpu_limit, host.get("pids_limit")),
            restart_policy=RestartPolicy(condition="none"),
            placement=Placement(**self.extra_placement_spec),
            networks=[self.network_name])
        return await self.docker("create_service", template, name=self.service_name,
                                 labels=labels, endpoint_spec=EndpointSpec(mode="dnsrr"))

    async def start_object(self):
        """Until the server's task runs; fail with the engine's reason when it will not,
        or when it still waits for its node after pending_timeout."""
        deadline = time.monotonic() + self.pending_timeout
        while True:
            task = await self.get_task()
            verdict = task_verdict(task) if task else "gone: the service has no task"
            if verdict == "running":
                return
            if verdict != "starting":
                raise RuntimeError(f"{self._log_name} did not start: {verdict}")
            # Until its node accepts it: a node that just went down is not yet marked down.
            if task["Status"]["State"] in UNACCEPTED and time.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.user.name}'s files are on node {self.home_name}, which did not take "
                    f"the server within {self.pending_timeout} s (the task is "
                    f"{task['Status']['State']}: {task['Status'].get('Err') or 'no reason given'})"
                    ": if that node is down, the server can start once it is back (docs/swarm.md)")
            await asyncio.sleep(self.ready_poll_interval)

    async def poll(self):
        """None while the server's task runs; otherwise what became of it. A task that waits
        (its node went down, say) is not a running server."""
        task = await self.get_task()
        if not task:
            return 0
        verdict = task_verdict(task)
        return None if verdict == "running" else verdict

    async def get_ip_and_port(self):
        """The address of the server's task on the deployment's network. Not the service's
        name: right after a service is removed and made again under that name (a stop and a
        start, a drain), the name resolved for a minute to the old task too (seen on engine
        20.10), and the hub's checks went there and gave up."""
        task = await self.get_task()
        for attachment in (task or {}).get("NetworksAttachments") or []:
            if attachment.get("Network", {}).get("Spec", {}).get("Name") == self.network_name:
                return attachment["Addresses"][0].split("/")[0], self.port
        raise RuntimeError(f"{self._log_name}'s task has no address on {self.network_name}")

    async def get_url(self):
        """Where the server runs, for a restarted hub: its task's address."""
        ip, port = await self.get_ip_and_port()
        return f"http://{ip}:{port}{self.server.base_url}"
