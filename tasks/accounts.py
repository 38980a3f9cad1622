"""Initial passwords for the embedded login, so nobody can claim a name by signing up first.

`inv up` gives every userlist name that has none yet a random password in
secrets/initial-passwords (mode 0600); the hub creates those accounts before it serves
its first request (hub/hubauth.py). People change their password at /hub/change-password.
"""
import secrets
from pathlib import Path

from tasks.files import write_private

PASSWORDS_FILE = "initial-passwords"
HEADER = (
    "# Initial passwords for the hub's built-in login: give each person theirs.\n"
    "# Used only to create an account that does not exist yet; people change it at\n"
    "# /hub/change-password. Keep this file private (mode 0600, never in git).\n"
)


def _name(line: str):
    """The name a line gives a password to (as hub/hubauth.py reads it: split on any
    whitespace), or None for a blank line or a comment."""
    line = line.strip()
    return line.split(None, 1)[0] if line and not line.startswith("#") else None


def parse_passwords(text: str) -> dict:
    pairs = {}
    for line in text.splitlines():
        name = _name(line)
        if name is not None:
            rest = line.strip()[len(name):].strip()
            pairs[name] = rest
    return pairs


def plan_passwords(text: str, names, make=lambda: secrets.token_urlsafe(12)):
    """(the file's new text, the names that got a password, the names whose line went).
    Lines of names still listed are kept; a name no longer listed loses its line, so that
    listing it again later gives it a new password rather than the old one back."""
    names = list(names)
    listed = set(names)
    lines = text.splitlines(keepends=True)
    removed = [name for line in lines if (name := _name(line)) is not None and name not in listed]
    if removed:
        lines = [line for line in lines if _name(line) is None or _name(line) in listed]
    known = {_name(line) for line in lines}
    added = [name for name in names if name not in known]
    if not added and not removed:
        return text, [], []
    body = "".join(lines) if lines else HEADER
    if body and not body.endswith("\n"):
        body += "\n"
    return body + "".join(f"{name} {make()}\n" for name in added), added, removed


def ensure_initial_passwords(secrets_dir: Path, names) -> tuple:
    """(names given a password, names whose line was removed); the file is rewritten only
    when either is not empty. Its mode was checked before (tasks/secretfiles.py)."""
    path = secrets_dir / PASSWORDS_FILE
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    new_text, added, removed = plan_passwords(text, names)
    if added or removed:
        write_private(path, new_text)
    return added, removed
