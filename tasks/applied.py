"""The record of what the last successful `inv up` applied, and the digest of the inputs
it was applied from: pure, on files and plain data (tasks/quick.py does the checking).

`inv up` ends by writing `.state/applied.json`: a digest of every input the tasks read
(settings and the shell variables that override them, userlist, secrets/, hub/, notebook/,
docker-compose.yml, the tool's own code, this machine's name), the hub container it left
running, the images it ran and was built from, and the certificate's fingerprint and renewal
date. Nothing secret is kept: one digest over everything.
"""
import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from tasks.oauth import KEYS as OAUTH_KEYS
from tasks.settings import OPTIONAL, REQUIRED

RECORD = Path(".state") / "applied.json"
FORMAT = 1
# Files and folders of the project that the tasks read; the tool's own code is added too,
# so an upgrade of the tool goes through every step once.
PROJECT_INPUTS = ("docker-compose.yml", ".env", "userlist", "profiles.toml", "secrets", "hub",
                  "notebook", "images")
CODE_DIR = Path(__file__).resolve().parent
CODE_INPUTS = (CODE_DIR, CODE_DIR.with_suffix(".py"))
# Shell variables the tasks (or the engine's client) read: every setting (a shell variable
# beats .env), the GitHub OAuth app's, and where the engine is.
ENV_KEYS = (*REQUIRED, *OPTIONAL, *OAUTH_KEYS, "DOCKER_HOST", "DOCKER_CONTEXT")
SKIPPED = ("__pycache__", ".pytest_cache")


@dataclass(frozen=True)
class Applied:
    """What one successful `inv up` left running, and for which inputs."""
    inputs: str             # inputs_digest() at the end of that `inv up`
    written: str            # ISO time, UTC
    hub_container: str      # container id
    images: dict            # image name -> id: hub, notebook and the base they were built FROM
    cert_sha256: str
    renew_from: str         # ISO time from which `inv` would renew or warn about the certificate
    port: int
    url: str                # where the hub answers, as `inv up` said
    login: str              # who administers it and how they log in, as `inv up` said
    format: int = FORMAT


def _walk(path: Path):
    """A file itself, or every file under a folder in a stable order (no bytecode)."""
    if path.is_symlink() or not path.is_dir():
        yield path
        return
    for folder, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED)
        for name in sorted(files):
            if not name.endswith(".pyc"):
                yield Path(folder, name)


class Digest:
    """sha256 over a sequence of parts, each ended by a NUL, so that parts cannot run together."""

    def __init__(self):
        self._hash = hashlib.sha256()

    def add(self, *parts) -> None:
        for part in parts:
            self._hash.update(part if isinstance(part, bytes) else str(part).encode())
            self._hash.update(b"\0")

    def add_files(self, tops, base=None) -> None:
        """Every file under each of `tops` (names relative to `base`), its mode and bytes."""
        for top in tops:
            shown = (lambda path: path.relative_to(base)) if base else (lambda path: path)
            if not os.path.lexists(top):
                self.add(shown(top), "missing")
                continue
            for path in _walk(top):
                info = path.lstat()
                self.add(shown(path), oct(info.st_mode))
                self.add(os.readlink(path) if path.is_symlink() else path.read_bytes())

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def files_digest(*tops) -> str:
    """A digest of the files under each of `tops`: their names, modes and bytes."""
    digest = Digest()
    digest.add_files(list(tops))
    return digest.hexdigest()


def inputs_digest(root: Path, environ, host: str, where: str = "", code=CODE_INPUTS) -> str:
    """One digest of everything the tasks read, in the order given: names, modes and bytes;
    `host` and `where` name the engine's host and the folder compose runs in there."""
    digest = Digest()
    digest.add("host", host, "where", where)
    for key in ENV_KEYS:
        digest.add(key, environ[key] if key in environ else "\x01unset")
    digest.add_files([root / name for name in PROJECT_INPUTS], base=root)
    digest.add_files(list(code))
    return digest.hexdigest()


_HEX64 = re.compile(r"[0-9a-f]{64}")
_IMAGE_ID = re.compile(r"sha256:[0-9a-f]{64}")


def _valid(record: Applied) -> bool:
    """Every field as `inv up` writes it (a record edited by hand, or by another version, is
    no record): the ids and digests, the port, and a renewal time with its time zone."""
    strings = (record.inputs, record.written, record.hub_container, record.cert_sha256,
               record.renew_from, record.url, record.login)
    if not all(isinstance(value, str) for value in strings):
        return False
    if not (_HEX64.fullmatch(record.inputs) and _HEX64.fullmatch(record.hub_container)
            and _HEX64.fullmatch(record.cert_sha256)):
        return False
    if not isinstance(record.images, dict) or not record.images or not all(
            isinstance(name, str) and isinstance(image, str) and _IMAGE_ID.fullmatch(image)
            for name, image in record.images.items()):
        return False
    if type(record.port) is not int or not 1 <= record.port <= 65535:
        return False
    renew = datetime.fromisoformat(record.renew_from)
    return renew.tzinfo is not None


def read_record(path: Path):
    """The record, or None when there is none, it cannot be read, or it is not exactly what
    this version writes."""
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            return None
        record = Applied(**data)
        return record if _valid(record) else None
    except (OSError, ValueError, TypeError):
        return None


def write_record(path: Path, applied: Applied) -> None:
    path.parent.mkdir(exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(asdict(applied), indent=1) + "\n")
    os.replace(partial, path)


def forget(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def differences(applied: Applied, digest: str, hub: dict, image_ids: dict, now: datetime) -> list:
    """Why the record no longer describes what runs (empty: nothing changed). `hub` is the
    engine's inspection of the recorded container ({} when gone); `image_ids` the ids the
    recorded image names have now (None when gone)."""
    found = []
    if digest != applied.inputs:
        found.append("inputs changed")
    state = hub.get("State") or {}
    if not hub:
        found.append("the hub container is gone")
    elif not state.get("Running") or state.get("Restarting"):
        found.append(f"the hub container is {state.get('Status', 'not running')}")
    elif (state.get("Health") or {}).get("Status") != "healthy":
        found.append(f"the hub container is {(state.get('Health') or {}).get('Status', 'unchecked')}")
    elif hub.get("Image") != applied.images.get(hub.get("Config", {}).get("Image")):
        found.append("the hub container runs another image")
    moved = [name for name, wanted in applied.images.items() if image_ids.get(name) != wanted]
    if moved:
        found.append(f"image {', '.join(moved)} changed")
    if now >= datetime.fromisoformat(applied.renew_from):
        found.append("the certificate is due for renewal")
    return found


def now_utc() -> datetime:
    return datetime.now(timezone.utc)
