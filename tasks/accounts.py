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


def parse_passwords(text: str) -> dict:
    pairs = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, *rest = line.split(None, 1)  # as hub/hubauth.py reads it: any whitespace
            pairs[name] = rest[0].strip() if rest else ""
    return pairs


def plan_passwords(text: str, names, make=lambda: secrets.token_urlsafe(12)):
    """The file's new text and the names that got a password; existing lines are kept."""
    known = parse_passwords(text)
    added = [name for name in names if name not in known]
    if not added:
        return text, []
    body = text if text else HEADER
    if body and not body.endswith("\n"):
        body += "\n"
    return body + "".join(f"{name} {make()}\n" for name in added), added


def ensure_initial_passwords(secrets_dir: Path, names) -> list:
    """The names given a password. A file others can read was refused before
    (tasks/secretfiles.py)."""
    path = secrets_dir / PASSWORDS_FILE
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    new_text, added = plan_passwords(text, names)
    if added:
        write_private(path, new_text)
    return added
