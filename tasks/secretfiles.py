"""secrets/ and who may read it: the folder and every file in it are the owner's alone,
but for the certificate, which the hub hands to every browser anyway.

Checked by every task that reads or writes secrets/, before anything else, the quick
check included: a key or a password others could read has to be fixed by the operator,
and is never quietly used or quietly chmod-ed.
"""
import os
import shlex
import stat
from pathlib import Path

from invoke.exceptions import Exit

FOLDER = "secrets"
PUBLIC = ("jupyterhub.crt",)
# What each file holds, for the message; anything else in the folder is read by the hub too.
HOLDS = {
    FOLDER: "every secret below",
    "jupyterhub.key": "the hub's private key",
    "initial-passwords": "the users' first passwords",
    "hub-api-token": "the tool's token for the hub's API",
    "oauth.env": "the GitHub client secret",
}


def open_to_others(root: Path) -> list:
    """(path relative to root, mode, is a folder) of secrets/ and of each thing below it
    (links followed) that users other than its owner may read, write or enter."""
    top = root / FOLDER
    if not top.is_dir():
        return []
    found = []

    def check(path: Path):
        info = path.stat()
        if info.st_mode & 0o077:
            found.append((path.relative_to(root).as_posix(), stat.S_IMODE(info.st_mode),
                          stat.S_ISDIR(info.st_mode)))

    check(top)
    for folder, dirs, files in os.walk(top):
        dirs.sort()
        for name in sorted(dirs + files):
            path = Path(folder, name)
            if not (path.parent == top and name in PUBLIC) and path.exists():
                check(path)
    return found


def refusal(path: str, mode: int, folder: bool = False) -> str:
    """The message for one thing others can read, with the command that fixes it."""
    from tasks.show import shown

    fix = f"chmod {700 if folder else 600} {shlex.quote(path)}"
    holds = HOLDS.get(path.rsplit("/", 1)[-1], "a secret the hub reads")
    return (f"{shown(path)} can be read by other users (mode {mode:04o}) and holds {holds}: "
            f"run `{shown(fix)}`.")


def require_private(root: Path) -> None:
    """Refuse, before anything changes, when others may read secrets/ or what it holds."""
    found = open_to_others(root)
    if found:
        raise Exit("\n".join(refusal(*item) for item in found))
