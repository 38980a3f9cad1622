"""Docker Engine and the compose plugin on a bare Debian or Ubuntu host, before
`python -m tasks -H host deploy` uses them: what bin/setup does here, done there over SSH.

It looks first (one SSH command that only reads), decides (a pure function), and refuses
a host it cannot handle (not Debian/Ubuntu, no sudo without a password, no compose plugin
for its CPU) before it changes anything. Then, with sudo when the SSH user is not root:
apt installs Debian's docker.io (and debootstrap, which `inv build` uses when no registry
answers for the base image), the engine is started (systemctl, or in the background where
no init system runs), the compose plugin comes from the distribution (Ubuntu's
docker-compose-v2) or is copied from this machine, and a non-root user joins the docker
group. A host that has it all costs one read and changes nothing.
"""
import platform
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from invoke.exceptions import Exit

# Only reads; fixed text, no input reaches it. One `key=value` line per fact.
FACTS = r"""
. /etc/os-release 2>/dev/null
PATH="$PATH:/usr/sbin:/sbin"  # dockerd and debootstrap are there; a user's PATH may lack it
echo "id=${ID:-}"; echo "like=${ID_LIKE:-}"; echo "name=${PRETTY_NAME:-unknown}"
echo "uid=$(id -u)"; echo "user=$(id -un)"; echo "arch=$(uname -m)"
if [ "$(id -u)" = 0 ]; then echo sudo=root
elif ! command -v sudo >/dev/null 2>&1; then echo sudo=missing
elif sudo -n true 2>/dev/null; then echo sudo=yes
else echo sudo=password; fi
command -v dockerd >/dev/null 2>&1 && echo dockerd=yes || echo dockerd=no
docker info >/dev/null 2>&1 && echo engine=yes || echo engine=no
docker compose version >/dev/null 2>&1 && echo compose=yes || echo compose=no
command -v debootstrap >/dev/null 2>&1 && echo debootstrap=yes || echo debootstrap=no
[ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1 && echo systemd=yes || echo systemd=no
apt-cache show docker-compose-v2 >/dev/null 2>&1 && echo compose_package=yes || echo compose_package=no
"""
# Where the docker CLI finds plugins for every user (bin/setup installs it there too).
PLUGIN_PATH = "/usr/local/lib/docker/cli-plugins/docker-compose"
LOCAL_PLUGIN_DIRS = ["~/.docker/cli-plugins", "/usr/local/lib/docker/cli-plugins",
                     "/usr/local/libexec/docker/cli-plugins", "/usr/lib/docker/cli-plugins",
                     "/usr/libexec/docker/cli-plugins"]
ENGINE_WAIT_S = 60


@dataclass(frozen=True)
class Facts:
    os_id: str
    os_like: str
    os_name: str
    root: bool
    user: str
    arch: str
    sudo: str            # root, yes, password, missing
    dockerd: bool        # the engine is installed
    engine: bool         # it answers this user
    compose: bool        # `docker compose` works for this user
    debootstrap: bool
    systemd: bool
    compose_package: bool  # apt offers docker-compose-v2 (Ubuntu)


def parse_facts(text: str) -> Facts:
    found = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    yes = lambda key: found.get(key) == "yes"  # noqa: E731
    return Facts(found.get("id", ""), found.get("like", ""), found.get("name", "unknown"),
                 found.get("uid") == "0", found.get("user", ""), found.get("arch", ""),
                 found.get("sudo", "missing"), yes("dockerd"), yes("engine"), yes("compose"),
                 yes("debootstrap"), yes("systemd"), yes("compose_package"))


@dataclass(frozen=True)
class Plan:
    packages: tuple      # for apt to install
    start_engine: bool
    compose_from: str    # "" (present), "package" (in packages), "upload" (this machine's)
    join_group: bool     # add the SSH user to the docker group

    @property
    def empty(self) -> bool:
        return not (self.packages or self.start_engine or self.compose_from or self.join_group)


def plan(facts: Facts, host: str, local_plugin: Path | None, local_arch: str) -> Plan:
    """What the host needs (pure); Exit naming the problem and the fix when it cannot be
    done here, before anything changes."""
    if facts.engine and facts.compose:
        return Plan((), False, "", False)
    if "debian" not in f"{facts.os_id} {facts.os_like}" and "ubuntu" not in facts.os_id:
        raise Exit(f"{host} runs {facts.os_name}: this tool installs Docker only on Debian or "
                   "Ubuntu. Install Docker Engine and its compose plugin there yourself "
                   "(https://docs.docker.com/engine/install/), then run deploy again.")
    if facts.sudo in ("password", "missing"):
        why = ("asks for a password" if facts.sudo == "password" else "is not installed")
        raise Exit(f"{host} has no Docker Engine, and installing it needs root: sudo there "
                   f"{why} for {facts.user}. Allow it without a password (a line "
                   f"`{facts.user} ALL=(ALL) NOPASSWD: ALL` in /etc/sudoers.d/), connect as "
                   "root, or install Docker Engine and its compose plugin there yourself.")
    packages = [] if facts.dockerd else ["docker.io"]
    if not facts.debootstrap:
        packages.append("debootstrap")
    compose_from = ""
    if not facts.compose:
        if facts.compose_package:
            compose_from = "package"
            packages.append("docker-compose-v2")
        elif local_plugin is not None and facts.arch == local_arch:
            compose_from = "upload"
        else:
            raise Exit(f"{host} has no docker compose plugin and its packages offer none "
                       f"(Debian has only the old docker-compose), and this machine has no "
                       f"plugin for its CPU ({facts.arch}) to copy. Install the compose v2 "
                       f"plugin there as {PLUGIN_PATH} (https://docs.docker.com/compose/"
                       "install/linux/), then run deploy again.")
    # The engine may run and only refuse this user (not yet in the docker group).
    start = not facts.engine
    join = not facts.root and not facts.engine
    return Plan(tuple(packages), start, compose_from, join)


def local_compose_plugin() -> Path | None:
    """This machine's compose v2 plugin, when it is a Linux binary the host could run."""
    if platform.system() != "Linux":
        return None
    for folder in LOCAL_PLUGIN_DIRS:
        candidate = Path(folder).expanduser() / "docker-compose"
        if candidate.is_file():
            return candidate
    return None


def ensure_engine_on_host(c, host: str) -> None:
    """Docker Engine, compose and debootstrap on the SSH host c, installed when missing."""
    local = local_compose_plugin()
    facts = parse_facts(c.run(shlex.join(["sh", "-c", FACTS]), hide=True, warn=True).stdout)
    needed = plan(facts, host, local, platform.machine())
    if needed.empty:
        return
    sudo = [] if facts.root else ["sudo", "-n"]
    say = lambda text: print(f"setup on {host}: {text}")  # noqa: E731
    if needed.packages:
        say(f"installing {', '.join(needed.packages)} with apt (as bin/setup does here)")
        c.run(shlex.join([*sudo, "apt-get", "update", "-qq"]), hide=True)
        c.run(shlex.join([*sudo, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install",
                          "-y", "-qq", "--no-install-recommends", *needed.packages]), hide=True)
    if needed.compose_from == "upload":
        say(f"copying this machine's docker compose plugin to {PLUGIN_PATH}")
        staged = c.run("mktemp", hide=True).stdout.strip()
        c.put(str(local), staged)
        c.run(shlex.join([*sudo, "install", "-D", "-m", "0755", staged, PLUGIN_PATH]), hide=True)
        c.run(shlex.join(["rm", "-f", staged]), hide=True)
    if needed.start_engine:
        start_engine(c, sudo, facts.systemd, say)
    if needed.join_group:
        say(f"adding {facts.user} to the docker group (the engine's socket)")
        c.run(shlex.join([*sudo, "usermod", "-aG", "docker", facts.user]), hide=True)
        # A group joined now counts from the next login: open a new connection.
        c.close()
    check = c.run("docker info --format '{{.ServerVersion}}' && docker compose version --short",
                  hide=True, warn=True)
    if check.failed:
        raise Exit(f"Docker was set up on {host}, but `docker info` or `docker compose version` "
                   f"still fails for {facts.user} there: {check.stderr.strip()[-400:]}")
    engine, compose = check.stdout.split()[:2]
    say(f"Docker Engine {engine} and compose {compose} are ready")


def start_engine(c, sudo: list, systemd: bool, say) -> None:
    """The engine running (and, with systemd, started at every boot)."""
    if systemd:
        say("starting Docker Engine with systemctl (and at every boot)")
        c.run(shlex.join([*sudo, "systemctl", "enable", "--now", "docker"]), hide=True)
    elif c.run(shlex.join([*sudo, "docker", "info"]), hide=True, warn=True).failed:
        # No init system to ask (a container): the daemon in the background, its own
        # session, so it outlives this SSH channel.
        say("starting dockerd in the background (no init system; log: /var/log/dockerd.log)")
        c.run(shlex.join([*sudo, "sh", "-c", "nohup setsid dockerd >/var/log/dockerd.log 2>&1 "
                          "</dev/null &"]), hide=True)
    deadline = time.monotonic() + ENGINE_WAIT_S
    while c.run(shlex.join([*sudo, "docker", "info"]), hide=True, warn=True).failed:
        if time.monotonic() > deadline:
            log = c.run(shlex.join([*sudo, "tail", "-n", "20", "/var/log/dockerd.log"]),
                        hide=True, warn=True).stdout
            raise Exit(f"Docker Engine did not answer within {ENGINE_WAIT_S} s after it was "
                       f"started; the end of its log:\n{log}")
        time.sleep(0.5)
