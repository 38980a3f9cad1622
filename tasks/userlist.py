"""The `userlist` file: who may log in, who is an administrator, and who is in which group.

A line is a name, then words: `admin`, `group=NAME` (a member of that group) and
`instructor=NAME` (a member who may also write into the group's shared folder). A group
exists because a line names it; `inv up` makes the hub's groups equal to the file's
(tasks/groups.py), and profiles.toml refers to them (tasks/profiles.py).
"""
import re
from dataclasses import dataclass, field
from pathlib import Path

from invoke.exceptions import Exit

from tasks.names import escape_username

ROLES = ("admin",)
# Conservative on purpose: JupyterHub lowercases names, NativeAuthenticator refuses
# spaces, commas and slashes, and every name becomes part of a container and a volume name.
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
# A group's name is part of its shared folder's volume and mount path: kept as strict.
_GROUP = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
GROUP_WORDS = ("group", "instructor")
# The hub group in which `inv up` records who came from userlist (tasks/access.py).
RESERVED_GROUPS = ("userlist",)


@dataclass(frozen=True)
class Users:
    admins: tuple[str, ...]
    users: tuple[str, ...]  # everyone who is not an admin
    # group -> its members and its instructors, in file order (instructors are members).
    groups: dict = field(default_factory=dict)
    instructors: dict = field(default_factory=dict)
    group_lines: dict = field(default_factory=dict)  # group -> the first line naming it

    @property
    def everyone(self) -> tuple[str, ...]:
        return self.admins + self.users


def group_words(words: list, where: str, name: str) -> tuple:
    """(roles, {group: is_instructor}, problems) from the words after a name."""
    roles, groups, problems = [], {}, []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep:
            roles.append(word)
            continue
        if key not in GROUP_WORDS:
            problems.append(f"{where}: unknown word {word!r} for {name}; write group=NAME or "
                            "instructor=NAME.")
            continue
        for group in value.split(","):
            if not _GROUP.fullmatch(group):
                problems.append(
                    f"{where}: {key}={group!r} for {name} is not a valid group name; use "
                    "lowercase letters, digits, '_' or '-', starting with a letter or digit, "
                    "at most 40 characters.")
            elif group in RESERVED_GROUPS:
                problems.append(f"{where}: the group name {group!r} is the one `inv up` keeps "
                                "for itself; choose another.")
            elif group in groups:
                problems.append(f"{where}: {name} is put in group {group} twice; write it "
                                "once (instructor= makes a member too).")
            else:
                groups[group] = key == "instructor"
    return roles, groups, problems


def parse_userlist(text: str, source: str = "userlist") -> Users:
    """Parse `name [admin] [group=G...] [instructor=G...]` lines; raise Exit listing every
    problem with its line."""
    problems, seen, escaped = [], {}, {}
    admins, users = [], []
    groups, instructors, group_lines = {}, {}, {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, *words = line.split()
        where = f"{source}:{number}"
        if not _NAME.fullmatch(name):
            hint = " (JupyterHub lowercases names: write it in lowercase)" if name.lower() != name else ""
            problems.append(
                f"{where}: {name!r} is not a valid user name{hint}; use lowercase letters, "
                "digits, '.', '_' or '-', starting with a letter or digit, at most 64 characters."
            )
            continue
        roles, member_of, group_problems = group_words(words, where, name)
        if group_problems:
            problems += group_problems
            continue
        unknown = [r for r in roles if r not in ROLES]
        if unknown:
            problems.append(
                f"{where}: unknown role {' '.join(unknown)!r} for {name}; "
                "the only role is 'admin' (or nothing, for a user); groups are "
                "group=NAME or instructor=NAME."
            )
            continue
        if len(roles) > 1:
            problems.append(f"{where}: 'admin' is given more than once for {name}; write it once.")
            continue
        if name in seen:
            problems.append(f"{where}: {name} is listed twice (first on line {seen[name]}); keep one line.")
            continue
        key = escape_username(name)
        if key in escaped:
            problems.append(
                f"{where}: {name} and {escaped[key]} map to the same container and volume name "
                f"{key!r}; rename one of them."
            )
            continue
        seen[name], escaped[key] = number, name
        (admins if roles else users).append(name)
        for group, teaches in member_of.items():
            groups.setdefault(group, []).append(name)
            group_lines.setdefault(group, number)
            if teaches:
                instructors.setdefault(group, []).append(name)
    if problems:
        raise Exit(f"{source} has problems:\n  " + "\n  ".join(problems))
    if not admins:
        raise Exit(f"{source} names no administrator: add ' admin' after at least one name.")
    return Users(admins=tuple(admins), users=tuple(users),
                 groups={g: tuple(names) for g, names in groups.items()},
                 instructors={g: tuple(names) for g, names in instructors.items()},
                 group_lines=group_lines)


def check_name(name: str) -> str:
    """A user name given on the command line, refused unless it could be in userlist."""
    if not _NAME.fullmatch(name):
        raise Exit(
            f"{name!r} is not a valid user name: lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, at most 64 characters."
        )
    return name


def load_userlist(root: Path) -> Users:
    path = root / "userlist"
    if not path.is_file():
        raise Exit(f"No userlist in {root}: create it with one line 'YOURNAME admin'.")
    return parse_userlist(path.read_text(encoding="utf-8"), source="userlist")
