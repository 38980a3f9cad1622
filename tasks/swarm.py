"""More than one host: `swarm-init` makes the deployment's engine a Docker Swarm manager,
`swarm-join` makes other hosts (over SSH, given Docker first if they lack it) its workers,
and `swarm-drain` takes a node out of service. The hub stays on the manager; `deploy` then
runs each user's server as a service on a worker, always the one that holds their volume
(hub/hubswarm.py). docs/swarm.md says how to choose and what a lost node means.
"""
import re

from invoke import task
from invoke.exceptions import Exit

from tasks.show import shown
from tasks.swarmnodes import (MANAGER_LABEL, SSH_LABEL, open_node, service_task, service_user,
                              update_node_labels, user_services)

SWARM_PORT = 2377
# An SSH host as -H takes it: [user@]host[:port], a name from ~/.ssh/config, or [IPv6]:port.
SSH_HOST = re.compile(r"^(?:[A-Za-z0-9._-]+@)?(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")


def worker_hosts(text: str) -> list:
    """The comma-separated SSH hosts of swarm-join, checked; Exit naming a bad one."""
    hosts = [host.strip() for host in text.split(",") if host.strip()]
    if not hosts:
        raise Exit("Name the workers to join: swarm-join admin@worker1,admin@worker2")
    for host in hosts:
        if not SSH_HOST.match(host):
            raise Exit(f"{shown(host)!r} is not an SSH host: give [user@]host[:port] or a Host "
                       "name from ~/.ssh/config, comma-separated (admin@worker1,admin@worker2).")
    return hosts


def _swarm_state(client) -> dict:
    return client.info().get("Swarm") or {}


@task(name="swarm-init", help={"advertise_addr": "the address the workers reach this host "
                                                 "at (needed when it has several)"})
def swarm_init(c, advertise_addr=""):
    """Make this deployment's engine (here, or on -H host) the manager of a Docker swarm."""
    from tasks.run import Run
    from tasks.target import command_line, given_host, is_remote

    run = Run.of(c, "swarm-init", would="make the engine a swarm manager")
    client = run.client
    state = _swarm_state(client)
    if state.get("LocalNodeState") == "active" and not state.get("ControlAvailable"):
        raise Exit("This engine is already a worker of another swarm: leave it first "
                   "(`docker swarm leave` there) or choose another host.")
    if state.get("LocalNodeState") != "active":
        import docker

        try:
            client.swarm.init(advertise_addr=advertise_addr or None)
        except docker.errors.APIError as error:
            raise Exit(f"docker swarm init failed: {error.explanation}"
                       + ("\nName the address the workers should use with --advertise-addr."
                          if "advertise" in str(error.explanation) else ""))
        print("swarm: this engine is now a swarm manager")
    else:
        print("swarm: this engine is a swarm manager already; the deployment's servers will "
              "run on its workers")
    state = _swarm_state(client)
    update_node_labels(client, state["NodeID"], {
        MANAGER_LABEL: "1", SSH_LABEL: given_host(run.c) if is_remote(run.c) else ""})
    address = state.get("NodeAddr", "?")
    print(f"swarm: manager {state['NodeID'][:12]} at {address}:{SWARM_PORT}; add workers with "
          f"`{command_line(run.c, 'swarm-join', 'WORKER[,WORKER...]')}`")


@task(name="swarm-join", help={"workers": "SSH hosts to join, comma-separated "
                                          "(admin@worker1,admin@worker2)"})
def swarm_join(c, workers):
    """Join hosts to the swarm as workers (Docker is installed there first if missing)."""
    from tasks import applied
    from tasks.provision import ensure_engine_on_host
    from tasks.run import Run
    from tasks.swarmnodes import node_client
    from tasks.target import command_line

    run = Run.of(c, "swarm-join", workers, would="install Docker on the workers as needed "
                 "and join them to the swarm")
    hosts = worker_hosts(workers)
    client = run.client
    if run.swarm is None:
        raise Exit(f"This engine is not a swarm manager made by this tool: run "
                   f"`{command_line(run.c, 'swarm-init')}` first.")
    manager = _swarm_state(client)
    swarm = client.swarm.attrs  # each `client.swarm` asks the engine again
    token, cluster = swarm["JoinTokens"]["Worker"], swarm["ID"]
    for host in hosts:
        with open_node(run.c, host) as connection:
            ensure_engine_on_host(connection, host)
            worker = node_client(connection)
            state = _swarm_state(worker)
            if state.get("LocalNodeState") == "active":
                if (state.get("Cluster") or {}).get("ID") not in (None, cluster):
                    raise Exit(f"{host} is already in another swarm: leave it there first "
                               "(`docker swarm leave`), then run swarm-join again.")
                print(f"swarm: {host} is a node of this swarm already")
            else:
                worker.swarm.join(remote_addrs=[f"{manager['NodeAddr']}:{SWARM_PORT}"],
                                  join_token=token)
                print(f"swarm: {host} joined as a worker")
            node_id = _swarm_state(worker)["NodeID"]
            worker.close()
        update_node_labels(client, node_id, {SSH_LABEL: host})
    # The next deploy must not take the quick path: the new workers need the images.
    applied.forget(run.record)
    print(f"swarm: run `{command_line(run.c, 'deploy')}` to give the workers the images")


@task(name="swarm-drain", help={"node": "the node's hostname, ID, or SSH host as joined"})
def swarm_drain(c, node):
    """Take a node out of service: its servers stop, no new server starts there, and the
    users whose files it holds are named with how to move them."""
    from tasks.lifecycle import holding
    from tasks.run import Run
    from tasks.target import command_line

    run = Run.of(c, "swarm-drain", node, would="stop the servers on the node and drain it")
    swarm = run.swarm
    if swarm is None:
        raise Exit("This deployment does not run on a swarm this tool made: nothing to drain.")
    target = swarm.node(node)
    client = run.client
    with holding(run, "swarm-drain", node):
        stopped = []
        for service in user_services(client, run.settings.project):
            if service_task(service)[0] == target.id:
                stopped.append(service_user(service))
                service.remove()
        attrs = client.api.inspect_node(target.id)
        client.api.update_node(target.id, attrs["Version"]["Index"],
                               {**attrs["Spec"], "Availability": "drain"})
    print(f"swarm: node {shown(target.name)} drained; servers stopped: "
          f"{shown(', '.join(sorted(stopped))) or 'none'}")
    if target.homes:
        print(f"These users' files stay on {shown(target.name)}, and their servers cannot start "
              f"until it is active again: {shown(', '.join(target.homes))}. To move one to "
              "another node:\n"
              f"  {command_line(run.c, 'backup', '--user', 'NAME')}\n"
              f"  {command_line(run.c, 'restore', '--user', 'NAME', '--from', 'ARCHIVE', '--node', 'OTHER')}\n"
              f"or make the node active again with "
              f"`docker node update --availability active {shown(target.name)}` on the manager.")
