"""The groups' shared folders: one named volume per `[[shares]]` entry of profiles.toml,
`<project>-share-<group>`, labelled with its role and group so that backups find it.

`inv up` makes each before the hub starts, with its root owned by uid 1000: every user's
server runs as that uid, so whoever has the folder mounted writable (the group's
instructors, or everyone) can write, and the others' read-only mount is what stops them.
A volume that exists is kept as it is, whatever it holds; one whose group left the file
is kept too (its files are someone's work): `docker volume rm` removes it.
"""
from tasks.names import labels
from tasks.profiles import share_volume

MOUNT = "/share"
OWNER = "1000:1000"  # jovyan in every user image (notebook/Dockerfile)
# Containers from an image `docker compose build` made inherit its compose labels.
_NOT_COMPOSE = {"com.docker.compose.project": "", "com.docker.compose.service": ""}


def ensure_share(client, project: str, group: str, helper_image: str) -> str:
    """Make the group's volume if it is missing, its root owned by OWNER; says what it did."""
    import docker
    from docker.types import Mount

    name = share_volume(project, group)
    try:
        client.volumes.get(name)  # exact name; list(filters=name) matches substrings
        return f"shared folder of {group}: {name}, kept"
    except docker.errors.NotFound:
        pass
    client.volumes.create(name, labels=labels(project, "share", group=group))
    try:
        client.containers.run(
            helper_image, ["chown", OWNER, MOUNT], remove=True, user="0:0",
            mounts=[Mount(MOUNT, name, type="volume", no_copy=True)],
            network_disabled=True, cap_drop=["ALL"], cap_add=["CHOWN"],
            security_opt=["no-new-privileges"],
            labels={**_NOT_COMPOSE, **labels(project, "share-helper", group=group)})
    except docker.errors.DockerException:
        client.volumes.get(name).remove()  # the next `inv up` makes it again, whole
        raise
    return f"shared folder of {group}: {name}, made (owned by uid 1000)"


def ensure_shares(client, project: str, profiles, helper_image: str) -> list:
    """Every shared folder profiles.toml names; none without the file."""
    if profiles is None:
        return []
    return [ensure_share(client, project, share.group, helper_image) for share in profiles.shares]
