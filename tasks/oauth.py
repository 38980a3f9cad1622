"""GitHub login: the OAuth app's client id, secret and callback URL, checked before anything changes.

The three come from the shell (GITHUB_CLIENT_ID, GITHUB_CLIENT_SECRET, OAUTH_CALLBACK_URL)
or from secrets/oauth.env (mode 0600); the shell wins, as it does over .env. `inv up` writes
what the shell gave into that file, and the hub reads the file from its read-only secrets/
mount: the secret is never in the hub's environment (which `docker inspect` shows), in an
image, or on a command line (which `ps` shows).
"""
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from invoke.exceptions import Exit

OAUTH_FILE = "oauth.env"
KEYS = ("GITHUB_CLIENT_ID", "GITHUB_CLIENT_SECRET", "OAUTH_CALLBACK_URL")
CALLBACK_PATH = "/hub/oauth_callback"
# What every dotenv reader (compose, and python-dotenv in the tasks and the hub) takes the
# same way without quotes: GitHub's ids and secrets are hex, callback URLs have no spaces.
_PLAIN = re.compile(r"^[A-Za-z0-9._~:/?&=%+,;@\[\]!*()-]+$")


@dataclass(frozen=True)
class OAuthApp:
    client_id: str
    client_secret: str = field(repr=False)  # so a traceback or a debug print never shows it
    callback_url: str = ""


@dataclass(frozen=True)
class OAuthFile:
    """What secrets/oauth.env holds, and its permission bits (None: there is no such file)."""
    values: dict = field(repr=False)
    mode: int | None = None


def read_oauth_file(secrets_dir: Path) -> OAuthFile:
    from tasks.settings import read_env_file

    path = secrets_dir / OAUTH_FILE
    if not path.exists():
        return OAuthFile({}, None)
    if not path.is_file():
        raise Exit(f"secrets/{OAUTH_FILE} is not a file: remove it, or put the GitHub "
                   "OAuth settings in it as KEY=value lines.")
    try:
        values = read_env_file(path)
    except OSError as error:
        raise Exit(f"secrets/{OAUTH_FILE} cannot be read ({error.strerror}): check its owner.")
    return OAuthFile(values, stat.S_IMODE(path.stat().st_mode))


def callback_problem(url: str, names, port: int) -> str:
    """Why the callback URL is not https://<one of our names>[:port]/hub/oauth_callback, or ""."""
    from tasks.certs import canonical_name

    port_part = "" if port == 443 else f":{port}"
    expected = f"https://{_url_host(names[0])}{port_part}{CALLBACK_PATH}"
    try:
        parts = urlsplit(url)
        url_port = parts.port or (443 if parts.scheme == "https" else None)
    except ValueError:
        parts, url_port = None, None
    host = (parts.hostname or "") if parts else ""
    canonical = {canonical_name(n) for n in names}
    if (parts is not None and parts.scheme == "https" and canonical_name(host) in canonical
            and url_port == port and parts.path == CALLBACK_PATH
            and not (parts.query or parts.fragment or parts.username or parts.password)):
        return ""
    others = f" (or another of the certificate's names: {', '.join(names[1:])})" if names[1:] else ""
    return (
        f"OAUTH_CALLBACK_URL={url!r} does not match this hub: expected {expected}{others}. "
        "Use the same URL as the callback of the OAuth app registered on GitHub."
    )


def plan_oauth(oauth_file: OAuthFile, environ, names, port: int) -> OAuthApp:
    """The OAuth app the hub will use; raise Exit naming every missing or bad item."""
    if oauth_file.mode is not None and oauth_file.mode & 0o077:
        raise Exit(
            f"secrets/{OAUTH_FILE} can be read by other users (mode {oauth_file.mode:04o}) and "
            f"holds the GitHub client secret: run `chmod 600 secrets/{OAUTH_FILE}`."
        )
    values = {k: oauth_file.values.get(k, "") for k in KEYS}
    values.update({k: environ[k] for k in KEYS if k in environ})
    values = {k: v.strip() for k, v in values.items()}
    missing = [k for k in KEYS if not values[k]]
    if missing:
        raise Exit(
            f"HUB_AUTHENTICATOR=github needs {', '.join(missing)}: give "
            f"{'it' if len(missing) == 1 else 'them'} as environment variables to `inv up` "
            f"(it keeps them in secrets/{OAUTH_FILE}, mode 0600) or write KEY=value lines "
            f"in secrets/{OAUTH_FILE} yourself. They come from the OAuth app you register "
            "on GitHub (Settings > Developer settings > OAuth Apps)."
        )
    problems = [
        f"{k} holds characters that do not fit an unquoted KEY=value line (spaces, quotes, "
        "'#', '$' or a backslash); check that you copied it whole."
        for k in KEYS if not _PLAIN.match(values[k])
    ]
    if not problems:
        problem = callback_problem(values["OAUTH_CALLBACK_URL"], names, port)
        problems += [problem] if problem else []
    if problems:
        raise Exit("GitHub login settings:\n  " + "\n  ".join(problems))
    return OAuthApp(values["GITHUB_CLIENT_ID"], values["GITHUB_CLIENT_SECRET"],
                    values["OAUTH_CALLBACK_URL"])


def render_oauth_file(app: OAuthApp) -> str:
    return (
        "# The GitHub OAuth app the hub logs people in with. Keep this file private\n"
        "# (mode 0600, never in git). `inv up` rewrites it from the environment variables\n"
        "# of the same names when you give them.\n"
        f"GITHUB_CLIENT_ID={app.client_id}\n"
        f"GITHUB_CLIENT_SECRET={app.client_secret}\n"
        f"OAUTH_CALLBACK_URL={app.callback_url}\n"
    )


def check_login(root: Path, settings, names, environ=None):
    """The checks `inv` runs before anything changes; the OAuthApp for GitHub login, else None."""
    if settings.authenticator != "github":
        return None
    return plan_oauth(read_oauth_file(root / "secrets"),
                      os.environ if environ is None else environ, names, settings.port)


def ensure_oauth_file(secrets_dir: Path, app: OAuthApp) -> str:
    """Keep secrets/oauth.env in step with what the operator gave; returns what was done."""
    from tasks.files import write_private

    current = read_oauth_file(secrets_dir)
    if {k: current.values.get(k, "").strip() for k in KEYS} == dict(zip(KEYS, (
            app.client_id, app.client_secret, app.callback_url))):
        return f"secrets/{OAUTH_FILE}: kept"
    write_private(secrets_dir / OAUTH_FILE, render_oauth_file(app))
    return f"secrets/{OAUTH_FILE}: written from the environment (mode 0600)"


def _url_host(name: str) -> str:
    return f"[{name}]" if ":" in name else name
