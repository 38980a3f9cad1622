"""The network and volumes the deployment needs, created once and labelled."""


def ensure_network(client, name: str, labels: dict) -> str:
    """Make sure the network exists; returns what was done, for the caller to print."""
    import docker

    try:
        client.networks.get(name)  # exact name; list(names=...) would match substrings
        return f"network {name}: exists"
    except docker.errors.NotFound:
        client.networks.create(name, driver="bridge", labels=labels, check_duplicate=True)
        return f"network {name}: created"


def ensure_volume(client, name: str, labels: dict) -> str:
    import docker

    try:
        client.volumes.get(name)
        return f"volume {name}: exists"
    except docker.errors.NotFound:
        client.volumes.create(name, labels=labels)
        return f"volume {name}: created"
