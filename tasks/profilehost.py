"""What a checked profiles.toml (tasks/profiles.py) means for this host and for the hub:
limits and GPUs the engine can give, and the catalog the hub offers and enforces, as JSON."""
import json
from dataclasses import replace

from invoke.exceptions import Exit

from tasks import limits as user_limits
from tasks.profiles import FILE, NO_GPU, SHARE_PATH, Profile, Profiles, share_volume


# --- what only the host can tell --------------------------------------------------------------

def host_problems(profiles: Profiles, cores: int, mem_total: int) -> list:
    """Profiles whose limits this host cannot give (the engine's NCPU and MemTotal)."""
    problems = []
    for p in profiles.profiles:
        wanted = user_limits.Limits(mem_bytes=p.mem_bytes, cpus=p.cpus)
        problems += [f"{FILE}:{p.line}: profile {p.name}: {problem}"
                     for problem in user_limits.fits_host(wanted, cores, mem_total,
                                                          keys=("cpus", "memory"))]
    return problems


def needs_gpu(profiles: Profiles) -> list:
    return [p for p in profiles.profiles if p.gpus]


def has_gpus(c, info: dict) -> bool:
    """Whether the engine can hand containers NVIDIA GPUs: its `nvidia` runtime, or the
    hook its `--gpus` support runs (nvidia-container-toolkit) on the host."""
    if "nvidia" in (info.get("Runtimes") or {}):
        return True
    return c.run("command -v nvidia-container-runtime-hook", hide=True, warn=True).ok


def swarm_problems(profiles: Profiles) -> list:
    """What profiles.toml asks that servers on a swarm's workers cannot give (tasks/swarm.py):
    each server's volumes are on its own node, and services get no GPU from this tool."""
    problems = [f"{FILE}:{share.line}: group {share.group} has a shared folder, which on a "
                "swarm would be a different, empty folder on each worker: remove its "
                "[[shares]] entry (docs/swarm.md)" for share in profiles.shares]
    problems += [f"{FILE}:{p.line}: profile {p.name} needs a GPU, which this tool does not give "
                 "servers on a swarm: remove `gpus`" for p in needs_gpu(profiles)]
    return problems


def check_on_host(c, client, profiles: Profiles, swarm=None) -> tuple:
    """(profiles, warning): refuses limits this host cannot give, a default profile that
    needs a GPU it does not have, and on a swarm what its workers cannot give; marks other
    GPU profiles as not startable here."""
    info = client.info()
    problems = host_problems(profiles, int(info.get("NCPU") or 0), int(info.get("MemTotal") or 0))
    if swarm is not None:
        problems += swarm_problems(profiles)
    gpu_profiles = needs_gpu(profiles)
    warning = ""
    if gpu_profiles and not has_gpus(c, info):
        if profiles.default.gpus:
            problems.append(f"{FILE}:{profiles.default.line}: profile {profiles.default.name} "
                            "is the default and needs a GPU, which this host does not have "
                            "(no NVIDIA runtime): make another profile the default.")
        names = ", ".join(p.name for p in gpu_profiles)
        warning = (f"profiles: {names} cannot start here: this host has no GPU for Docker "
                   "(no NVIDIA container runtime); users see them greyed out")
        profiles = replace(profiles, profiles=tuple(
            replace(p, unavailable=NO_GPU) if p.gpus else p for p in profiles.profiles))
    if problems:
        raise Exit("Profiles this host cannot give:\n  " + "\n  ".join(problems))
    return profiles, warning


# --- for the hub --------------------------------------------------------------------------------

def image_of(profile: Profile, project: str, server_image: str) -> str:
    if profile.build:
        return f"{project}-{profile.build}:latest"
    return profile.image or server_image


def server_images(profiles, project: str, server_image: str) -> list:
    """Every image a user's server may run: the users' image and each profile's."""
    found = [server_image]
    for profile in (profiles.profiles if profiles is not None else ()):
        image = image_of(profile, project, server_image)
        if image not in found:
            found.append(image)
    return found


def hub_catalog(profiles: Profiles, project: str, server_image: str, pids: int) -> dict:
    """What the hub needs to offer and enforce the profiles: converted, resolved, checked."""
    return {
        "profiles": [{
            "name": p.name, "description": p.description,
            "image": image_of(p, project, server_image),
            "mem_bytes": p.mem_bytes, "cpus": p.cpus, "pids": pids, "gpus": p.gpus,
            "groups": list(p.groups), "everyone": p.default,
            "unavailable": p.unavailable,
        } for p in profiles.profiles],
        "shares": [{
            "group": s.group, "volume": share_volume(project, s.group),
            "path": SHARE_PATH.format(group=s.group), "writable": s.writable,
        } for s in profiles.shares],
    }


def hub_env(profiles, project: str, server_image: str, pids: int) -> dict:
    """HUB_PROFILES for docker-compose.yml: the checked catalog as JSON, or empty for no
    profiles file (the hub then runs today's one image with .env's limits)."""
    if profiles is None:
        return {"HUB_PROFILES": ""}
    catalog = hub_catalog(profiles, project, server_image, pids)
    return {"HUB_PROFILES": json.dumps(catalog, sort_keys=True, separators=(",", ":"))}
