"""`profiles.toml`: which environments users may start (image, memory, CPUs, a GPU), which
groups may use each, and the groups' shared folders.

Pure: the file is read and checked here against userlist's groups and .env's limits, every
problem with its line, before anything changes; the hub gets the checked result as JSON
(tasks/profilehost.py), with image names and limits resolved, and never parses what a
person wrote. What only the host can tell (cores, memory, GPUs) is checked there too. No file: one profile, today's image and limits.

    [[profiles]]
    name = "python"
    description = "Python 3 with numpy and pandas"
    default = true                 # everyone may use it; users in no group get it

    [[profiles]]
    name = "physics"
    description = "Physics 101: the course image, 4G, 2 cores"
    build = "images/physics"       # a folder with a Dockerfile; or image = "name:tag"
    memory = "4G"
    cpus = 2
    groups = ["physics"]

    [[shares]]
    group = "physics"              # ~/work/shared-physics in every member's server
    writable = "instructors"       # or "everyone"
"""
import re
from dataclasses import dataclass
from pathlib import Path

from invoke.exceptions import Exit

from tasks import limits as user_limits
from tasks.settings import _IMAGE as IMAGE_REFERENCE  # the check .env's image names get

FILE = "profiles.toml"
IMAGES_DIR = "images"
PROFILE_KEYS = ("name", "description", "image", "build", "memory", "cpus", "gpus", "groups",
                "default")
SHARE_KEYS = ("group", "writable")
WRITABLE = ("instructors", "everyone")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
# Image folders become `<project>-NAME` images: not the names the deployment's own take.
RESERVED_FOLDERS = ("hub", "notebook", "base")
# Where a group's folder appears in its members' servers: inside work/, the folder
# JupyterLab opens, so it shows in the file browser next to their own files.
SHARE_PATH = "/home/jovyan/work/shared-{group}"
SHARE_VOLUME = "{project}-share-{group}"
MAX_DESCRIPTION = 300
NO_GPU = "needs a GPU, and this host has none"


@dataclass(frozen=True)
class Profile:
    name: str
    description: str = ""
    image: str = ""   # an image to pull; "" with build "" is the deployment's own image
    build: str = ""   # a folder name under images/, built as <project>-NAME
    mem_bytes: int = 0
    cpus: float = 0.0
    gpus: int = 0     # -1: all of them
    groups: tuple = ()
    default: bool = False
    line: int = 0
    unavailable: str = ""  # why it cannot start on this host: shown greyed out, refused


@dataclass(frozen=True)
class Share:
    group: str
    writable: str = "instructors"
    line: int = 0


@dataclass(frozen=True)
class Profiles:
    profiles: tuple
    shares: tuple = ()

    @property
    def default(self) -> Profile:
        return next(p for p in self.profiles if p.default)

    @property
    def builds(self) -> tuple:
        """The image folders the profiles name, each once, in file order."""
        return tuple(dict.fromkeys(p.build for p in self.profiles if p.build))

    @property
    def pulls(self) -> tuple:
        return tuple(dict.fromkeys(p.image for p in self.profiles if p.image))


def share_volume(project: str, group: str) -> str:
    return SHARE_VOLUME.format(project=project, group=group)


def check_group_name(name: str) -> str:
    """A group named on the command line (`inv backup --share NAME`), refused unless
    userlist could hold it."""
    if not _NAME.fullmatch(name):
        raise Exit(f"{name!r} is not a valid group name: lowercase letters, digits, '_' or '-', "
                   "starting with a letter or digit, at most 40 characters.")
    return name


# --- where things are in the file ----------------------------------------------------------

_ARRAY = re.compile(r"^\s*\[\[\s*([A-Za-z0-9_-]+)\s*\]\]")
_TABLE = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]")
_KEY = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=")


def key_lines(text: str) -> dict:
    """{(array, index): {"": header line, key: line}} and {("", 0): top-level keys}: where
    each `[[profiles]]`/`[[shares]]` entry and each of its keys is, for messages (tomllib
    gives positions for syntax errors only)."""
    found, counts, current = {("", 0): {"": 1}}, {}, ("", 0)
    for number, line in enumerate(text.splitlines(), start=1):
        array = _ARRAY.match(line)
        if array:
            name = array.group(1)
            current = (name, counts.get(name, 0))
            counts[name] = current[1] + 1
            found[current] = {"": number}
            continue
        table = _TABLE.match(line)
        if table:
            current = (table.group(1), 0)
            found.setdefault(current, {"": number})
            continue
        key = _KEY.match(line)
        if key:
            found.setdefault(current, {"": number}).setdefault(key.group(1), number)
    return found


def _toml(text: str, source: str) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise Exit(f"Reading {source} needs Python 3.11 or newer, or `pip install tomli`.")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        message = str(error)
        at = re.search(r"\s*\(at line (\d+), column \d+\)$", message)
        line = at.group(1) if at else "1"
        message = message[:at.start()] if at else message
        raise Exit(f"{source} has problems:\n  {source}:{line}: {message} (TOML: see "
                   "docs/profiles.md for the form of the file).")


# --- checking -------------------------------------------------------------------------------

class _Checker:
    """Collects every problem of the file with its line."""

    def __init__(self, text: str, source: str):
        self.source, self.lines, self.problems = source, key_lines(text), []

    def at(self, where: tuple, key: str = "") -> int:
        keys = self.lines.get(where, {})
        return keys.get(key, keys.get("", 1))

    def say(self, where: tuple, key: str, problem: str) -> None:
        self.say_at(self.at(where, key), problem)

    def say_at(self, line: int, problem: str) -> None:
        self.problems.append((line, f"{self.source}:{line}: {problem}"))


def _number_text(value):
    """A size or count as the .env settings write it: TOML numbers and strings alike."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    return f"{value:g}" if isinstance(value, float) else str(value)


def _profile(check: _Checker, where, entry: dict, users, env_limits, images_dir) -> Profile:
    said = len(check.problems)
    for key in entry:
        if key not in PROFILE_KEYS:
            check.say(where, key, f"unknown key {key!r} in a profile; the keys are "
                      f"{', '.join(PROFILE_KEYS)}.")
    name = entry.get("name")
    if name is None:
        check.say(where, "", "this profile has no name: add name = \"...\".")
        name = ""
    elif not isinstance(name, str) or not _NAME.fullmatch(name):
        check.say(where, "name", f"name = {name!r} is not a valid profile name; use lowercase "
                  "letters, digits, '_' or '-', starting with a letter or digit, at most 40 "
                  "characters.")
    label = f"profile {name}" if isinstance(name, str) and name else "this profile"
    description = entry.get("description", "")
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        check.say(where, "description", f"{label}: description must be text of at most "
                  f"{MAX_DESCRIPTION} characters.")
        description = ""
    image, build = entry.get("image", ""), entry.get("build", "")
    if image and build:
        check.say(where, "build", f"{label} has both image and build: keep one (build: a "
                  "folder of this project; image: an image to pull).")
    if image and (not isinstance(image, str) or not IMAGE_REFERENCE.fullmatch(image)):
        check.say(where, "image", f"{label}: image = {image!r} is not an image reference like "
                  "name:tag.")
        image = ""
    folder = ""
    if build:
        folder = _build_folder(check, where, label, build, images_dir)
    memory, cpus = env_limits.mem_bytes, env_limits.cpus
    if "memory" in entry:
        text = _number_text(entry["memory"])
        memory, problem = user_limits.parse_memory(text, "memory") if text is not None else (
            0, f"memory={entry['memory']!r} is not a size like 2G, 1.5G or 512M.")
        if problem:
            check.say(where, "memory", f"{label}: {problem}")
    if "cpus" in entry:
        text = _number_text(entry["cpus"])
        cpus, problem = user_limits.parse_cpus(text, "cpus") if text is not None else (
            0.0, f"cpus={entry['cpus']!r} is not a number of cores like 1, 0.5 or 2.")
        if problem:
            check.say(where, "cpus", f"{label}: {problem}")
    gpus = entry.get("gpus", 0)
    if gpus == "all":
        gpus = -1
    elif isinstance(gpus, bool) or not isinstance(gpus, int) or not 0 <= gpus <= 64:
        check.say(where, "gpus", f"{label}: gpus = {gpus!r} is not a number of GPUs like 1 "
                  "(or \"all\"; 0 for none).")
        gpus = 0
    default = entry.get("default", False)
    if not isinstance(default, bool):
        check.say(where, "default", f"{label}: default must be true or false.")
        default = False
    groups = _groups(check, where, label, entry, default, users)
    if len(check.problems) > said:
        return None
    return Profile(name=name, description=description, image=image, build=folder,
                   mem_bytes=memory, cpus=cpus, gpus=gpus, groups=groups, default=default,
                   line=check.at(where))


def _build_folder(check: _Checker, where, label: str, build, images_dir) -> str:
    folder = build[len(IMAGES_DIR) + 1:] if isinstance(build, str) and build.startswith(
        IMAGES_DIR + "/") else None
    folder = folder.rstrip("/") if folder else folder
    if folder is None or not _NAME.fullmatch(folder) or folder in RESERVED_FOLDERS:
        hint = (" (notebook/ is the deployment's own image: leave build and image out to use "
                "it)" if build in ("notebook", "notebook/") else "")
        check.say(where, "build", f"{label}: build = {build!r} is not a folder like "
                  f"\"{IMAGES_DIR}/physics\" (lowercase letters, digits, '_' or '-'; not "
                  f"{', '.join(RESERVED_FOLDERS)}){hint}.")
        return ""
    if not (images_dir / folder / "Dockerfile").is_file():
        check.say(where, "build", f"{label}: build = {build!r}: there is no "
                  f"{IMAGES_DIR}/{folder}/Dockerfile in the project.")
        return ""
    return folder


def _groups(check: _Checker, where, label: str, entry: dict, default: bool, users) -> tuple:
    groups = entry.get("groups", [])
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        check.say(where, "groups", f"{label}: groups must be a list of group names, like "
                  "[\"physics\"].")
        return ()
    known = ", ".join(users.groups) or "none: add group=NAME words to userlist"
    for group in groups:
        if group not in users.groups:
            check.say(where, "groups", f"{label}: unknown group {group!r}; userlist's groups: "
                      f"{known}.")
    if len(set(groups)) != len(groups):
        check.say(where, "groups", f"{label} names a group twice.")
    if default and groups:
        check.say(where, "groups", f"{label} is the default, which everyone may use: remove "
                  "its groups (or its default = true).")
    elif not default and not groups:
        check.say(where, "", f"{label} names no group that may use it: add groups = "
                  "[\"...\"] with groups from userlist (or make it the default).")
    return tuple(groups)


def _share(check: _Checker, where, entry: dict, users) -> Share:
    said = len(check.problems)
    for key in entry:
        if key not in SHARE_KEYS:
            check.say(where, key, f"unknown key {key!r} in a shared folder; the keys are "
                      f"{', '.join(SHARE_KEYS)}.")
    group = entry.get("group")
    if not isinstance(group, str) or group not in users.groups:
        known = ", ".join(users.groups) or "none: add group=NAME words to userlist"
        check.say(where, "group", f"shared folder: group = {group!r} is not a group of "
                  f"userlist ({known}).")
    writable = entry.get("writable", "instructors")
    if writable not in WRITABLE:
        check.say(where, "writable", f"shared folder of {group}: writable = {writable!r} is "
                  "not \"instructors\" (the default) or \"everyone\".")
    if len(check.problems) > said:
        return None
    return Share(group=group, writable=writable, line=check.at(where))


def parse_profiles(text: str, users, env_limits, images_dir: Path, source: str = FILE,
                   userlist: str = "userlist") -> Profiles:
    """Check the file against userlist's groups; .env's limits fill in what a profile does
    not say. Raises Exit listing every problem, each with its line."""
    data = _toml(text, source)
    check = _Checker(text, source)
    for key in data:
        if key not in ("profiles", "shares"):
            check.say(("", 0), key, f"unknown {key!r}: the file holds [[profiles]] and "
                      "[[shares]] entries.")
    entries = {}
    for kind in ("profiles", "shares"):
        value = data.get(kind, [])
        if not isinstance(value, list) or not all(isinstance(e, dict) for e in value):
            check.say((kind, 0), "", f"{kind} must be written as [[{kind}]] entries.")
            value = []
        entries[kind] = value
    if not entries["profiles"]:
        check.say(("", 0), "", "no profile: add at least one [[profiles]] entry with "
                  "default = true (or remove the file for one profile from .env).")
    profiles, names = [], {}
    for index, entry in enumerate(entries["profiles"]):
        where = ("profiles", index)
        profile = _profile(check, where, entry, users, env_limits, images_dir)
        if profile is None:
            continue
        if profile.name in names:
            check.say(where, "name", f"profile {profile.name} is declared twice (first on line "
                      f"{names[profile.name]}); rename one.")
            continue
        names[profile.name] = profile.line
        profiles.append(profile)
    defaults = [p for p in profiles if p.default]
    if profiles and not defaults and len(check.problems) == 0:
        check.say(("", 0), "", "no profile has default = true: mark the one everyone may use "
                  "and users in no group get.")
    for extra in defaults[1:]:
        check.say_at(extra.line, f"profile {extra.name} is a second default (the first is on "
                     f"line {defaults[0].line}); keep one.")
    shares, groups_seen = [], {}
    for index, entry in enumerate(entries["shares"]):
        share = _share(check, ("shares", index), entry, users)
        if share is None:
            continue
        if share.group in groups_seen:
            check.say(("shares", index), "group", f"group {share.group} has a second shared "
                      f"folder (the first is on line {groups_seen[share.group]}); keep one.")
            continue
        groups_seen[share.group] = share.line
        shares.append(share)
    problems = [message for _, message in sorted(check.problems, key=lambda p: p[0])]
    used = {g for p in profiles for g in p.groups} | set(groups_seen)
    unused = [] if problems else [
        f"{userlist}:{users.group_lines[group]}: group {group} is used by no profile and no "
        f"shared folder in {source}: check its spelling, or use it there."
        for group in users.groups if group not in used]
    if problems or unused:
        files = f"{userlist} has" if unused else f"{source} has"
        raise Exit(f"{files} problems:\n  " + "\n  ".join(problems + unused))
    return Profiles(profiles=tuple(profiles), shares=tuple(shares))


def load_profiles(root: Path, users, env_limits):
    """The checked profiles.toml, or None when there is none (one profile: .env's)."""
    path = root / FILE
    if not path.is_file():
        return None
    return parse_profiles(path.read_text(encoding="utf-8"), users, env_limits,
                          root / IMAGES_DIR)
