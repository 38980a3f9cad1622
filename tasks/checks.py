"""Checks that run before anything changes, each failing with the problem and its fix."""
from invoke.exceptions import Exit

from tasks.names import PROJECT_LABEL, label_filter
from tasks.target import compose


def require_compose(c) -> str:
    result = compose(c, "version", "--short", hide=True, warn=True)
    if not result.ok:
        raise Exit(
            "The Docker Compose v2 plugin (`docker compose`) is not installed.\n"
            "Run bin/setup (Debian/Ubuntu), or install your distribution's "
            "docker-compose-plugin package. The old Python `docker-compose` 1.x will not do."
        )
    return result.stdout.strip()


def labelled_containers(client, project: str, role: str, **extra: str) -> list:
    """This deployment's containers with this role (and these extra labels), running or not."""
    return client.containers.list(all=True, filters=label_filter(project, role, **extra))


def hub_container(client, project: str):
    """This deployment's hub container, running or not, or None."""
    found = labelled_containers(client, project, "hub")
    return found[0] if found else None


def require_port_free(c, client, project: str, port: int, setting: str = "HUB_PORT") -> None:
    from tasks.target import port_in_use

    holders = [
        ct for ct in client.containers.list()
        if any(b.get("HostPort") == str(port) for bs in ct.ports.values() if bs for b in bs)
    ]
    if any(ct.labels.get(PROJECT_LABEL) == project for ct in holders):
        return  # our own hub holds it
    if holders or port_in_use(c, port):
        by = f" by container {', '.join(ct.name for ct in holders)}" if holders else " by another program"
        raise Exit(
            f"Port {port} is already in use{by}. Stop it, or set {setting} in .env to a free port."
        )


def require_images(client, *names: str, c=None) -> None:
    from tasks.images import image_id
    from tasks.target import command_line

    missing = [name for name in names if not image_id(client, name)]
    if missing:
        raise Exit(f"Image {', '.join(missing)} is not on this host: run `{command_line(c, 'build')}` "
                   "first (it builds the images, and pulls DOCKER_NOTEBOOK_IMAGE when it names "
                   "another).")


def require_limits_fit(client, limits) -> None:
    """Refuse per-user limits this host cannot give (its engine tells its cores and memory)."""
    from tasks.limits import fits_host

    info = client.info()
    problems = fits_host(limits, int(info.get("NCPU") or 0), int(info.get("MemTotal") or 0))
    if problems:
        raise Exit("Settings this host cannot give (from .env, or from the shell's environment, "
                   "which wins over .env):\n  " + "\n  ".join(problems))
