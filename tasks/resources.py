"""The network and volumes the deployment needs, created once and labelled."""


def ensure_network(client, name: str, labels: dict, swarm: bool = False) -> str:
    """Make sure the network exists; returns what was done, for the caller to print. On a
    swarm it is an overlay network the hub's container can join (attachable), reaching
    the servers on every node; a single host's bridge network is replaced while nothing
    uses it, and otherwise the run stops before anything changes."""
    import docker
    from invoke.exceptions import Exit

    driver = "overlay" if swarm else "bridge"
    try:
        network = client.networks.get(name)  # exact name; list(names=...) would match substrings
    except docker.errors.NotFound:
        network = None
    if network is not None and network.attrs.get("Driver") == driver:
        return f"network {name}: exists"
    if network is not None:
        if network.attrs.get("Containers"):
            raise Exit(f"The network {name} is a {network.attrs.get('Driver')} network and this "
                       f"deployment now needs an {driver} one, but containers use it: stop the "
                       "deployment with `down` (volumes and everyone's work stay), then deploy again.")
        network.remove()
    client.networks.create(name, driver=driver, labels=labels, check_duplicate=True,
                           **({"attachable": True, "scope": "swarm"} if swarm else {}))
    return f"network {name}: {'replaced by an overlay network' if network else 'created'}"


def ensure_volume(client, name: str, labels: dict) -> str:
    import docker

    try:
        client.volumes.get(name)
        return f"volume {name}: exists"
    except docker.errors.NotFound:
        client.volumes.create(name, labels=labels)
        return f"volume {name}: created"
