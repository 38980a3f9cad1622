"""What `inv upgrade` reads before it acts: the versions the running images hold, the ones
the project pins, and the plan that compares them (pure, but for `probe` and `run_once`, which
run a one-off container of an image to read what it holds)."""
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from invoke.exceptions import Exit

from tasks.names import PROJECT_LABEL, USER_LABEL, label_filter, labels

# The hub config lets the tool's service start, reach and stop this one user's server
# (hub/jupyterhub_config.py, CHECK_USER): a name no GitHub account can have (no "."), never
# in a userlist the tool wrote, made for the check and deleted after it.
CHECK_USER = "deploy.check"
HUB_DB = "/data/jupyterhub.sqlite"
PINNED = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][0-9A-Za-z.+!-]*)")
PROXY = "configurable-http-proxy"

# Run with python3 inside an image: the versions it holds, as JSON. argv: the packages to
# look up, then the database revision the caller knows ("" for none). With /data mounted or
# present (the hub's volume) it also reads the database's revision.
PROBE = r"""
import importlib.metadata as meta, json, os, shutil, subprocess, sys
names, known = sys.argv[1:-1], sys.argv[-1]
out = {"packages": {}, "schema": "", "database": "", "knows": None}
for name in names:
    try:
        out["packages"][name] = meta.version(name)
    except meta.PackageNotFoundError:
        out["packages"][name] = None
if shutil.which("configurable-http-proxy"):
    done = subprocess.run(["configurable-http-proxy", "--version"], capture_output=True,
                          text=True, timeout=60)
    out["packages"]["configurable-http-proxy"] = done.stdout.strip() or None
try:
    import jupyterhub
    from alembic.config import Config
    from alembic.script import ScriptDirectory
except ImportError:
    scripts = None
else:
    config = Config()
    config.set_main_option("script_location", os.path.join(os.path.dirname(jupyterhub.__file__), "alembic"))
    scripts = ScriptDirectory.from_config(config)
    out["schema"] = scripts.get_current_head()
if os.path.exists("/data/jupyterhub.sqlite"):
    import sqlite3
    db = sqlite3.connect("file:/data/jupyterhub.sqlite?mode=ro", uri=True)
    try:
        out["database"] = db.execute("select version_num from alembic_version").fetchone()[0]
    except sqlite3.Error:
        out["database"] = ""
    db.close()
known = known or out["database"]
if scripts is not None and known:
    try:
        out["knows"] = scripts.get_revision(known) is not None
    except Exception:
        out["knows"] = False
print(json.dumps(out))
"""


@dataclass(frozen=True)
class Versions:
    """What one image holds (and, for the hub, where its database is)."""
    packages: dict             # name -> version, None when not installed
    schema: str = ""           # the database schema its JupyterHub writes (alembic head)
    database: str = ""         # the schema the hub's database is at ("" when not read)
    knows: bool = None         # whether its JupyterHub knows the database's schema


def read_pins(text: str) -> dict:
    """name (lowercase, `-` for `_`) -> version, from a requirements file's `name==version` lines."""
    found = {}
    for line in text.splitlines():
        match = PINNED.fullmatch(line.split("#", 1)[0].strip())
        if match:
            found[match[1].lower().replace("_", "-")] = match[2]
    return found


def proxy_pin(package_json: str) -> str:
    return json.loads(package_json).get("dependencies", {}).get(PROXY, "")


def pinned(root: Path) -> dict:
    """What the project pins: {"hub": {name: version}, "notebook": {...}}."""
    hub = read_pins((root / "hub" / "requirements.txt").read_text(encoding="utf-8"))
    hub[PROXY] = proxy_pin((root / "hub" / "package.json").read_text(encoding="utf-8"))
    notebook = read_pins((root / "notebook" / "requirements.txt").read_text(encoding="utf-8"))
    return {"hub": hub, "notebook": notebook}


def changes(before: dict, after: dict) -> list:
    """[(name, from, to)] of the packages whose version differs, in the pins' order, JupyterHub first."""
    names = sorted(set(before) | set(after), key=lambda n: (n != "jupyterhub", n))
    return [(n, before.get(n), after.get(n)) for n in names if before.get(n) != after.get(n)]


def shown_change(name: str, old, new) -> str:
    return f"{name} {old or '(none)'} -> {new or '(none)'}"


def major(version) -> str:
    return (version or "").split(".", 1)[0]


@dataclass
class Plan:
    """What the upgrade will do, worked out before it does anything."""
    hub: list                  # [(name, from, to)] in the hub image
    notebook: list             # the same in the user image ([] when not ours to build)
    hub_from: Versions
    servers: list              # names of users whose server runs now
    notebook_built: bool       # whether notebook/ is built (else DOCKER_NOTEBOOK_IMAGE is pulled)
    lines: list = field(default_factory=list)


def plan_upgrade(hub_from: Versions, notebook_from: dict, pins: dict, servers: list,
                 notebook_built: bool) -> Plan:
    """The plan's changes and its lines, from what runs and what is pinned (pure)."""
    hub = changes({k: v for k, v in hub_from.packages.items() if k in pins["hub"]}, pins["hub"])
    notebook = changes({k: v for k, v in notebook_from.items() if k in pins["notebook"]},
                       pins["notebook"]) if notebook_built else []
    plan = Plan(hub, notebook, hub_from, servers, notebook_built)
    jupyterhub_to = pins["hub"].get("jupyterhub")
    lines = [f"JupyterHub {hub_from.packages.get('jupyterhub') or '?'} -> {jupyterhub_to}"
             if hub_from.packages.get("jupyterhub") != jupyterhub_to
             else f"JupyterHub {jupyterhub_to}: unchanged"]
    lines += [f"hub image: {shown_change(*c)}" for c in hub if c[0] != "jupyterhub"]
    lines += [f"user image: {shown_change(*c)}" for c in notebook]
    if not notebook_built:
        lines.append("user image: DOCKER_NOTEBOOK_IMAGE names another image; it is pulled as "
                     "`inv build` does")
    if hub_from.database:
        same = major(hub_from.packages.get("jupyterhub")) == major(jupyterhub_to)
        lines.append(f"database: schema {hub_from.database}; "
                     + ("the new JupyterHub's is read from its image once built; a change "
                        "runs `jupyterhub upgrade-db`" if not same or hub else "no change expected"))
    lines.append(servers_line(servers, notebook))
    plan.lines = lines
    return plan


def servers_line(servers: list, notebook: list) -> str:
    if not servers:
        return "user servers: none running"
    names = ", ".join(servers)
    if not notebook:
        return (f"user servers: {len(servers)} running ({names}); they keep running through "
                "the upgrade (their browser tabs reconnect once the new hub is up)")
    return (f"user servers: {len(servers)} running ({names}); they keep running through the "
            "upgrade, on the user image they started from; each gets the new one when it next "
            "starts (the user's restart, or the idle culler)")


STEPS = ["build the new images while the hub serves",
         "stop the hub (user servers keep running)",
         "back up the hub's data (an `inv backup --hub` archive) and check the archive whole",
         "upgrade the database if its schema changes (`jupyterhub upgrade-db`)",
         "start the new hub",
         f"check it: its version, its login page, and a server started and stopped for {CHECK_USER}",
         "on a failure: the previous images, the database from the archive and the previous hub back"]


# --- reading what runs ------------------------------------------------------------------------
def probe(client, image: str, names, *, container=None, volume: str = "",
          database: str = "") -> Versions:
    """What `image` holds (PROBE): run in the hub container when it is given (it has the
    database), else in a one-off container of the image (with the hub's volume read-only
    when `volume` is given)."""
    argv = ["python3", "-c", PROBE, *names, database]
    if container is not None:
        result = container.exec_run(argv)
        code, output = result.exit_code, result.output
    else:
        volumes = {volume: {"bind": "/data", "mode": "ro"}} if volume else {}
        code, output = run_once(client, image, argv, volumes, "upgrade-probe")
    if code != 0:
        raise Exit(f"Could not read the versions in {image}: {output.decode(errors='replace')[-500:]}")
    found = json.loads(output.decode().strip().splitlines()[-1])
    return Versions(found["packages"], found["schema"], found["database"], found["knows"])


def run_once(client, image: str, argv: list, volumes: dict, role: str) -> tuple:
    """(exit code, output) of `argv` in a one-off container of `image`, without network,
    labelled with the deployment's project (found and removed by label if left over)."""
    project = client_project(client, image)
    container = client.containers.create(
        image, argv, entrypoint=[], network_disabled=True, volumes=volumes,
        labels=labels(project, role) if project else {})
    try:
        container.start()
        code = container.wait(timeout=600).get("StatusCode", 1)
        return code, container.logs(stdout=True, stderr=True)
    finally:
        container.remove(force=True)


def client_project(client, image: str) -> str:
    try:
        return client.images.get(image).labels.get(PROJECT_LABEL, "")
    except Exception:  # noqa: BLE001  (a label is a nicety here)
        return ""


def running_servers(client, project: str) -> list:
    """The names of users whose server container runs now."""
    found = client.containers.list(filters=label_filter(project, "user-server"))
    return sorted({ct.labels.get(USER_LABEL, ct.name) for ct in found} - {CHECK_USER})
