"""Images: the base both builds start FROM, the hub image, and the user (notebook) image."""
import shlex
from pathlib import Path

from invoke.exceptions import Exit

from tasks.names import LABEL, ROLE_LABEL
from tasks.target import command_line, place

INPUTS_LABEL = f"{LABEL}.inputs"
# docker-compose.yml puts each into its image's INPUTS_LABEL.
BUILD_INPUTS = {"hub": "HUB_BUILD_INPUTS", "notebook": "NOTEBOOK_BUILD_INPUTS"}

# DOCKER_NOTEBOOK_IMAGE's default when all deployments on an engine shared one tag.
SHARED_NOTEBOOK = "jupyterhub-deploy-notebook:latest"
# Debian releases debootstrap can make a base for, by the tags Docker Hub gives them.
DEBIAN_SUITES = {"bookworm": "bookworm", "12": "bookworm", "trixie": "trixie", "13": "trixie"}
LOCAL_BASE = "jupyterhub-deploy-base:{suite}"
# debootstrap's minbase has only the release itself; users' images need security fixes too.
SOURCES_LIST = (
    "deb http://deb.debian.org/debian {suite} main\n"
    "deb http://deb.debian.org/debian {suite}-updates main\n"
    "deb http://deb.debian.org/debian-security {suite}-security main\n"
)


def debian_suite(image: str):
    """The Debian release an image reference names ("debian:bookworm-slim" -> "bookworm"), or None."""
    repository, _, tag = image.partition(":")
    if repository not in ("debian", "docker.io/library/debian", "library/debian"):
        return None
    return DEBIAN_SUITES.get(tag.split("-", 1)[0] if tag else "")


def image_id(client, name: str):
    import docker

    try:
        return client.images.get(name).id
    except docker.errors.ImageNotFound:
        return None


def pull(client, name: str) -> bool:
    """Pull an image, printing one line per layer state change; False if it cannot be pulled."""
    import docker

    repository, _, tag = name.rpartition(":") if ":" in name.split("/")[-1] else (name, "", "latest")
    try:
        last = {}
        for event in client.api.pull(repository, tag=tag, stream=True, decode=True):
            layer, status = event.get("id"), event.get("status", "")
            if layer and last.get(layer) != status and "ing" not in status[-4:]:
                print(f"  {layer}: {status}")
            last[layer] = status
            if "error" in event:
                return False
        return True
    except docker.errors.APIError as error:
        print(f"  cannot pull {name}: {error.explanation or error}")
        return False


def make_debian_base(c, suite: str, tag: str) -> None:
    """debootstrap a minimal Debian into a temporary folder and import it as an image."""
    # In /usr/sbin, which a non-root user's PATH may lack (sudo's has it).
    if c.run("PATH=$PATH:/usr/sbin:/sbin command -v debootstrap", hide=True, warn=True).failed:
        raise Exit(
            "No registry answers for the base image, and debootstrap is missing to make one "
            "locally: run bin/setup (Debian/Ubuntu), or `apt-get install debootstrap`, "
            "or load a Debian 12 image with `docker load`."
        )
    sudo = [] if c.run("id -u", hide=True).stdout.strip() == "0" else ["sudo"]
    rootfs = c.run("mktemp -d", hide=True).stdout.strip()
    try:
        print(f"Making base image {tag} with debootstrap (about 30 s)...")
        c.run(shlex.join([*sudo, "debootstrap", "--variant=minbase", suite, rootfs]), hide="stdout")
        sources = SOURCES_LIST.format(suite=suite)
        apt = rootfs + "/etc/apt"
        # Only constants and the mktemp path (quoted) reach this shell.
        c.run(shlex.join([*sudo, "sh", "-c",
                          f"printf %s {shlex.quote(sources)} > {shlex.quote(apt + '/sources.list')}"
                          f" && rm -rf {shlex.quote(rootfs)}/var/cache/apt/archives/*.deb"
                          f" {shlex.quote(rootfs)}/var/lib/apt/lists/*_Packages"]))
        changes = [f"--change=LABEL {ROLE_LABEL}=base-image"]
        tar = shlex.join([*sudo, "tar", "-C", rootfs, "-c", "."])
        load = shlex.join(["docker", "import", *changes, '--change=CMD ["bash"]', "-", tag])
        c.run(f"{tar} | {load}", hide="stdout")
    finally:
        c.run(shlex.join([*sudo, "rm", "-rf", "--one-file-system", rootfs]), hide=True, warn=True)


def ensure_base_image(c, client, configured: str, pull_first: bool = False) -> str:
    """The image to build FROM, said in one line: the base already here (the configured
    image, else the Debian made for it), pulled only when asked (`--pull`) or when there
    is none; else a local Debian made with debootstrap."""
    if not pull_first:
        here = base_in_use(client, configured)
        if here == configured:
            print(f"base image: {configured}")
            return here
        if here:  # made here with debootstrap earlier, or loaded with `docker load`: either way
            print(f"base image: {here}, the Debian base for {configured} already on {place(c)} "
                  f"(`{command_line(c, 'build', '--pull')}` tries the registry)")
            return here
    print(f"Pulling base image {configured}...")
    if pull(client, configured):
        print(f"base image: {configured}")
        return configured
    suite = debian_suite(configured)
    if suite is None:
        raise Exit(
            f"Cannot pull BASE_IMAGE={configured}, and only Debian bases (debian:bookworm, "
            "debian:trixie...) can be made locally. Load the image with `docker load`, or set "
            "BASE_IMAGE in .env to a Debian image."
        )
    local = LOCAL_BASE.format(suite=suite)
    made = not image_id(client, local)
    if made:
        make_debian_base(c, suite, local)
    how = f"made with debootstrap on {place(c)}" if made else f"already on {place(c)}"
    print(f"base image: {local}, {how}, because {configured} cannot be pulled")
    return local


def base_in_use(client, configured: str):
    """The base image the builds would start FROM now without pulling: the configured one,
    else the local Debian made for it (ensure_base_image's choice), else None."""
    if image_id(client, configured):
        return configured
    suite = debian_suite(configured)
    local = LOCAL_BASE.format(suite=suite) if suite else None
    return local if local and image_id(client, local) else None


def describe_change(name: str, before, after) -> str:
    if before == after:
        return f"image {name}: unchanged ({after[7:19]})"
    return f"image {name}: {'built' if before is None else 'rebuilt'} ({after[7:19]})"


def is_project_image(settings, model) -> bool:
    """True when DOCKER_NOTEBOOK_IMAGE means the image notebook/ builds for this deployment:
    empty, that image's name, or the name every deployment shared before each had its own
    (an .env from then keeps meaning what it meant)."""
    return settings.notebook_image in ("", SHARED_NOTEBOOK, model.notebook_build_image)


def server_image(settings, model) -> str:
    """The image user servers run: the one notebook/ builds, or the one .env names."""
    return model.notebook_build_image if is_project_image(settings, model) else settings.notebook_image


def build_inputs(root: Path, service: str, build: dict, base_id: str):
    """A digest of what a service's image is built from: its `build` section as compose
    resolved it (arguments, labels, Dockerfile), its folder (names, modes and bytes) and the
    base image it starts FROM; None when the build context is not the service's own folder
    in the project (then every `inv build` builds)."""
    import json

    from tasks.applied import Digest

    if not str(build.get("context", "")).rstrip("/").endswith(f"/{service}"):
        return None
    section = {key: value for key, value in build.items() if key != "context"}
    digest = Digest()
    digest.add("base", base_id, "build", json.dumps(section, sort_keys=True))
    digest.add_files([root / service], base=root)
    return digest.hexdigest()


def build_image(c, client, root: Path, service: str, name: str, build: dict, env: dict) -> str:
    """Build a service's image, unless the image there was built from the same inputs (its
    label says which): BuildKit would only answer from its cache, in a second or more."""
    import docker
    from tasks.target import compose

    base = image_id(client, env["BASE_IMAGE"]) or env["BASE_IMAGE"]
    inputs = build_inputs(root, service, build, base)
    try:
        image = client.images.get(name)
        before, label = image.id, image.labels.get(INPUTS_LABEL)
    except docker.errors.ImageNotFound:
        before, label = None, None
    if inputs and label == inputs:
        return f"image {name}: unchanged ({before[7:19]}; {service}/ and its base as it was built from)"
    profile = ["--profile", "images"] if service == "notebook" else []
    compose(c, *profile, "build", service, env={**env, BUILD_INPUTS[service]: inputs or ""})
    return describe_change(name, before, image_id(client, name))


def ensure_notebook_image(c, client, root: Path, settings, model, env) -> str:
    """Build notebook/ or pull the external image DOCKER_NOTEBOOK_IMAGE names."""
    name = server_image(settings, model)
    if is_project_image(settings, model):
        return build_image(c, client, root, "notebook", name, model.builds.get("notebook", {}), env)
    return pull_or_keep(client, name, "notebook", (
        f"Cannot pull DOCKER_NOTEBOOK_IMAGE={name} and it is not on this host. Check the name, "
        "load it with `docker load`, or empty DOCKER_NOTEBOOK_IMAGE in .env to build "
        "notebook/."))


def pull_or_keep(client, name: str, kind: str, missing: str) -> str:
    """Pull an image the project does not build, to get its updates; keep the copy on this
    host when the registry cannot be reached; `missing` is the Exit's text when there is none."""
    before = image_id(client, name)
    print(f"Pulling {kind} image {name}...")
    if pull(client, name):
        after = image_id(client, name)
        return f"image {name}: {'unchanged' if after == before else 'pulled'} ({after[7:19]})"
    if before:
        return f"image {name}: cannot be pulled now; using the copy already on this host"
    raise Exit(missing)


def ensure_hub_image(c, client, root: Path, model, env) -> str:
    return build_image(c, client, root, "hub", model.hub_image, model.builds.get("hub", {}), env)
