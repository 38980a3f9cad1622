"""The `userlist` file: who may log in, and who is an administrator."""
import re
from dataclasses import dataclass
from pathlib import Path

from invoke.exceptions import Exit

from tasks.names import escape_username

ROLES = ("admin",)
# Conservative on purpose: JupyterHub lowercases names, NativeAuthenticator refuses
# spaces, commas and slashes, and every name becomes part of a container and a volume name.
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Users:
    admins: tuple[str, ...]
    users: tuple[str, ...]  # everyone who is not an admin

    @property
    def everyone(self) -> tuple[str, ...]:
        return self.admins + self.users


def parse_userlist(text: str, source: str = "userlist") -> Users:
    """Parse `name` or `name admin` lines; raise Exit listing every problem with its line."""
    problems, seen, escaped = [], {}, {}
    admins, users = [], []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, *roles = line.split()
        where = f"{source}:{number}"
        if not _NAME.fullmatch(name):
            hint = " (JupyterHub lowercases names: write it in lowercase)" if name.lower() != name else ""
            problems.append(
                f"{where}: {name!r} is not a valid user name{hint}; use lowercase letters, "
                "digits, '.', '_' or '-', starting with a letter or digit, at most 64 characters."
            )
            continue
        unknown = [r for r in roles if r not in ROLES]
        if unknown:
            problems.append(
                f"{where}: unknown role {' '.join(unknown)!r} for {name}; "
                "the only role is 'admin' (or nothing, for a user)."
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
    if problems:
        raise Exit(f"{source} has problems:\n  " + "\n  ".join(problems))
    if not admins:
        raise Exit(f"{source} names no administrator: add ' admin' after at least one name.")
    return Users(admins=tuple(admins), users=tuple(users))


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
