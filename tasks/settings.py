"""The deployment's settings: `.env`, with the shell's variables winning, as compose reads them."""
import os
import re
from dataclasses import dataclass
from pathlib import Path

from invoke.exceptions import Exit

from tasks import acmecert
from tasks import limits as user_limits

REQUIRED = (
    "COMPOSE_PROJECT_NAME",
    "HUB_PORT",
    "BASE_IMAGE",
    "BUILD_CA_BUNDLE",
    "HUB_AUTHENTICATOR",
)
# DOCKER_NOTEBOOK_IMAGE empty (or unset): the image notebook/ builds for this deployment.
OPTIONAL = ("DOCKER_NOTEBOOK_IMAGE", "HUB_HOSTNAMES", "GITHUB_URL", "GITHUB_ALLOWED_ORGS",
            *user_limits.KEYS, *acmecert.KEYS)
AUTHENTICATORS = ("native", "github")
DEFAULT_GITHUB_URL = "https://github.com"
# Where distributions keep the system CA bundle (Debian/Ubuntu, then Fedora/RHEL).
SYSTEM_CA_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")

_PROJECT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,40}$")
_IMAGE = re.compile(r"^[a-z0-9][a-z0-9._/:@-]*$")
# GitHub's own rules: an organization is letters, digits and hyphens; a team is named by
# its slug (as in its URL), which may also hold '_' and '.'.
_ORG_OR_TEAM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*(:[A-Za-z0-9][A-Za-z0-9_.-]*)?$")


@dataclass(frozen=True)
class Settings:
    project: str
    port: int
    hostnames: tuple  # HUB_HOSTNAMES, one checked name each
    notebook_image: str
    base_image: str
    build_ca_bundle: str
    authenticator: str
    github_url: str = DEFAULT_GITHUB_URL
    github_allowed_orgs: tuple = ()
    limits: user_limits.Limits = user_limits.Limits()
    acme: acmecert.Acme = acmecert.Acme()


def read_env_file(path: Path) -> dict:
    """The variables of a dotenv file, without expanding or exporting anything."""
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path, interpolate=False).items() if v is not None}


def parse_settings(file_values: dict, environ: dict) -> Settings:
    """Validate settings; raise Exit naming every bad or missing key and how to fix it."""
    from tasks.certs import name_problem, split_hostnames  # cryptography: not for `inv --list`

    values = dict(file_values)
    values.update({k: environ[k] for k in REQUIRED + OPTIONAL if k in environ})
    missing = [k for k in REQUIRED if not values.get(k, "").strip()]
    if missing:
        raise Exit(
            f"Missing in .env: {', '.join(missing)}. Add them (see the comments in the "
            ".env that ships with this project, or `git show HEAD:.env`)."
        )
    problems = []
    project = values["COMPOSE_PROJECT_NAME"].strip()
    if not _PROJECT.match(project):
        problems.append(
            f"COMPOSE_PROJECT_NAME={project!r} must be lowercase letters, digits, - or _, "
            "starting with a letter or digit, at most 41 characters."
        )
    port_text = values["HUB_PORT"].strip()
    port = int(port_text) if port_text.isascii() and port_text.isdigit() else 0
    if not 1 <= port <= 65535:
        problems.append(f"HUB_PORT={port_text!r} must be a port number from 1 to 65535.")
    for key in ("DOCKER_NOTEBOOK_IMAGE", "BASE_IMAGE"):
        value = values.get(key, "").strip()  # BASE_IMAGE is required: missing was refused
        if value and not _IMAGE.match(value):
            problems.append(f"{key}={values[key]!r} is not an image reference like name:tag.")
    authenticator = values["HUB_AUTHENTICATOR"].strip()
    if authenticator not in AUTHENTICATORS:
        problems.append(
            f"HUB_AUTHENTICATOR={authenticator!r} is not one of: {', '.join(AUTHENTICATORS)}."
        )
    github_url, problem = parse_github_url(values.get("GITHUB_URL", ""))
    problems += [problem] if problem else []
    orgs = tuple(o for o in re.split(r"[,\s]+", values.get("GITHUB_ALLOWED_ORGS", "")) if o)
    bad_orgs = [o for o in orgs if not _ORG_OR_TEAM.match(o)]
    if bad_orgs:
        problems.append(
            f"GITHUB_ALLOWED_ORGS: {', '.join(map(repr, bad_orgs))} is not an organization "
            "('my-org') or a team ('my-org:team-slug', the name as in the team's URL)."
        )
    hostnames = split_hostnames(values.get("HUB_HOSTNAMES", ""))
    problems += [p for p in (name_problem(name, "HUB_HOSTNAMES") for name in hostnames) if p]
    limits, limit_problems = user_limits.parse_limits(values)
    problems += limit_problems
    acme, acme_problems = acmecert.parse_acme(values, port)
    problems += acme_problems
    if problems:
        raise Exit(settings_refusal(problems, {k for k in REQUIRED + OPTIONAL if k in environ}))
    return Settings(
        project=project,
        port=port,
        hostnames=tuple(hostnames),
        notebook_image=values.get("DOCKER_NOTEBOOK_IMAGE", "").strip(),
        base_image=values["BASE_IMAGE"].strip(),
        build_ca_bundle=values["BUILD_CA_BUNDLE"].strip(),
        authenticator=authenticator,
        github_url=github_url,
        github_allowed_orgs=orgs,
        limits=limits,
        acme=acme,
    )


def settings_refusal(problems: list, from_shell: set) -> str:
    """The message for bad settings, saying where each came from: .env, or the shell's
    environment, whose variables win over .env (as compose reads them)."""
    lines, places = [], set()
    for problem in problems:
        key = re.match(r"[A-Z_]+", problem)
        if key and key.group(0) in from_shell:
            lines.append(f"{problem} (set in the shell's environment, which wins over .env)")
            places.add("the shell's environment")
        else:
            lines.append(problem)
            places.add(".env")
    return f"Bad settings in {' and '.join(sorted(places))}:\n  " + "\n  ".join(lines)


def parse_github_url(text: str) -> tuple:
    """(url, problem): GitHub or a GitHub Enterprise server, as OAuthenticator's github_url.

    OAuthenticator derives every endpoint from it: the browser is sent to URL/login/oauth/
    authorize, the hub calls URL/login/oauth/access_token and the API, which is
    api.github.com for github.com and URL/api/v3 for any other server."""
    from urllib.parse import urlsplit

    url = text.strip().rstrip("/") or DEFAULT_GITHUB_URL
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError:
        parts = None
    if (parts is None or parts.scheme not in ("https", "http") or not parts.hostname
            or parts.username or parts.password or parts.query or parts.fragment
            or not re.fullmatch(r"[A-Za-z0-9.:\[\]-]+", parts.netloc)):
        return url, (
            f"GITHUB_URL={text.strip()!r} must be the address of GitHub or of a GitHub "
            "Enterprise server, like https://github.example.org (no query, no user name)."
        )
    return url, ""


def resolve_ca_bundle(setting: str, exists=os.path.isfile) -> str:
    """The CA bundle file builds should trust, or "" for none."""
    if setting == "none":
        return ""
    if setting == "auto":
        return next((path for path in SYSTEM_CA_BUNDLES if exists(path)), "")
    if not exists(setting):
        raise Exit(
            f"BUILD_CA_BUNDLE={setting!r}: no such file. Point it at a PEM CA bundle, "
            "or set it to auto or none."
        )
    return os.path.abspath(setting)


def load_settings(root: Path, environ=None) -> Settings:
    env_file = root / ".env"
    if not env_file.is_file():
        raise Exit(f"No .env in {root}: restore it with `git checkout -- .env`.")
    return parse_settings(read_env_file(env_file), os.environ if environ is None else environ)
