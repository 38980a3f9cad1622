"""The images profiles.toml names: each `build = "images/NAME"` folder built as
`<project>-NAME:latest` FROM the users' image, through compose's `profile-image` service
(BuildKit, with the build CA bundle, as notebook/); each `image = "name:tag"` pulled, or
used as it is here when it cannot be pulled. A build is skipped when the image there was
built from the same folder and base (its inputs label), as for hub/ and notebook/."""
from pathlib import Path

from invoke.exceptions import Exit

from tasks.images import INPUTS_LABEL, build_inputs, describe_change, image_id, pull_or_keep
from tasks.profilehost import image_of
from tasks.profiles import IMAGES_DIR
from tasks.target import compose

SERVICE = "profile-image"
# What each build of the service hands docker-compose.yml: the image, its folder, its label.
BUILD_VARIABLES = ("PROFILE_IMAGE", "PROFILE_IMAGE_CONTEXT", "PROFILE_IMAGE_INPUTS")


def ensure_built(c, client, root: Path, project: str, folder: str, server_image: str,
                 env: dict) -> str:
    import docker

    name = f"{project}-{folder}:latest"
    base = image_id(client, server_image)
    if base is None:
        raise Exit(f"The users' image {server_image} is not here, and {IMAGES_DIR}/{folder} is "
                   "built FROM it: run `inv build` first.")
    build = {"context": str(root / IMAGES_DIR / folder), "args": {"NOTEBOOK_IMAGE": server_image}}
    inputs = build_inputs(root, f"{IMAGES_DIR}/{folder}", build, base)
    try:
        image = client.images.get(name)
        before, label = image.id, image.labels.get(INPUTS_LABEL)
    except docker.errors.ImageNotFound:
        before, label = None, None
    if label == inputs:
        return (f"image {name}: unchanged ({before[7:19]}; {IMAGES_DIR}/{folder}/ and "
                f"{server_image} as it was built from)")
    values = (name, f"{IMAGES_DIR}/{folder}", inputs)
    compose(c, "--profile", "profile-images", "build", SERVICE,
            env={**env, **dict(zip(BUILD_VARIABLES, values)), "DOCKER_NOTEBOOK_IMAGE": server_image})
    return describe_change(name, before, image_id(client, name))


def ensure_pulled(client, name: str) -> str:
    return pull_or_keep(client, name, "profile", (
        f"Cannot pull {name}, which a profile in profiles.toml names, and it is not here. "
        "Check the name, load it with `docker load`, or build it from a folder with "
        f"build = \"{IMAGES_DIR}/NAME\"."))


def ensure_profile_images(c, client, root: Path, profiles, project: str, server_image: str,
                          env: dict) -> list:
    """Build or pull every image the profiles name; one line each."""
    if profiles is None:
        return []
    lines = [ensure_built(c, client, root, project, folder, server_image, env)
             for folder in profiles.builds]
    return lines + [ensure_pulled(client, name) for name in profiles.pulls]


def profile_image_names(profiles, project: str, server_image: str) -> list:
    """Every image user servers may run, besides the users' own."""
    if profiles is None:
        return []
    names = {image_of(p, project, server_image) for p in profiles.profiles}
    return sorted(names - {server_image})
