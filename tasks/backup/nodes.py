"""Backups and restores on a swarm (tasks/swarm.py): a user's volume lives on the node that
is their home (a label on that node, hub/hubswarm.py), so their backup and restore run on
that node's engine, reached over SSH as the node was joined; the hub's data and the
groups' folders stay on the manager. On a single host every step runs on its one engine.
"""
from contextlib import ExitStack
from dataclasses import replace

from invoke.exceptions import Exit

from tasks.show import shown
from tasks.swarmnodes import home_key, open_node, update_node_labels


class Engines(ExitStack):
    """The nodes' engines a task has reached, each opened once and closed at the end."""

    def __init__(self):
        super().__init__()
        self.clients = {}

    def of(self, dep, node):
        if node.id == dep.swarm.nodes[0].id:  # the manager: the task's own engine
            return dep.client
        if node.id not in self.clients:
            from tasks.swarmnodes import node_client

            if not node.ssh:
                raise Exit(f"Node {shown(node.name)} was not joined by this tool, so it is not "
                           "known how to reach it over SSH: join it with swarm-join.")
            connection = self.enter_context(open_node(dep.c, node.ssh))
            client = node_client(connection)
            self.callback(client.close)
            self.clients[node.id] = client
        return self.clients[node.id]


def on_node(dep, engines: Engines, node):
    """The deployment as seen from one node's engine, for the helper containers there."""
    if node.state != "ready":
        raise Exit(f"Node {shown(node.name)} is {node.state}: its volumes cannot be reached "
                   "until it is back.")
    return replace(dep, client=engines.of(dep, node))


def for_target(dep, engines: Engines, target):
    """Where a target's volume is: the user's home node on a swarm, else the deployment's
    own engine."""
    if dep.swarm is None or target.kind != "user":
        return dep
    node = dep.swarm.home_of(target.user)
    if node is None:
        raise Exit(f"{target.user} has never started a server on this swarm: there is no "
                   "volume to back up.")
    return on_node(dep, engines, node)


def move_home(dep, user: str, node) -> str:
    """Make `node` the user's home (after a restore there): the label moves from the node
    that had it. Returns what was done, for the caller to print."""
    old = dep.swarm.home_of(user)
    if old is not None and old.id == node.id:
        return ""
    key = home_key(dep.project, user)
    update_node_labels(dep.client, node.id, add={key: user})
    if old is not None:
        update_node_labels(dep.client, old.id, remove=[key])
    return (f"{user}'s server now starts on {shown(node.name)}"
            + (f" (it was {shown(old.name)}, where the old volume stays until you remove it)"
               if old is not None else ""))
