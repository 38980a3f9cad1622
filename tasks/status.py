"""`inv status`: what runs, what each user's server takes of the host against its limits and
how long it has been idle, and whether the hub answers.

It exits non-zero, with a one-line reason, when the hub is not up (no container, not
running, unhealthy, or not answering over HTTPS), so it can serve as a health check in
cron or a monitor; `--json` gives the same for scripts. The figures come from the engine
(two samples of each server's CPU time, a second apart) and from the hub's REST API (the
servers' last activity, with the tool's own token).
"""
import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from invoke import task
from invoke.exceptions import Exit

SAMPLE_S = 1.0  # between the two CPU readings
# Over SSH each stats request is a channel of the one connection (sshd allows 10).
PARALLEL = 4


def memory_used(stats: dict) -> int:
    """Memory a container uses as `docker stats` counts it: usage without the page cache
    the kernel can drop (inactive_file on cgroup v2, total_inactive_file on v1)."""
    memory = stats.get("memory_stats") or {}
    detail = memory.get("stats") or {}
    cache = detail.get("inactive_file", detail.get("total_inactive_file", 0))
    return max(0, int(memory.get("usage") or 0) - int(cache or 0))


def cpu_cores_used(before: dict, after: dict) -> float:
    """Cores busy between two stats samples of one container (1.0 = one core all along)."""
    from tasks.backup.helper import parse_engine_time

    def reading(stats):
        used = ((stats.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage") or 0
        return int(used), parse_engine_time(stats.get("read", ""))

    used0, t0 = reading(before)
    used1, t1 = reading(after)
    if t0 is None or t1 is None or t1 <= t0 or before.get("read", "").startswith("0001-"):
        return 0.0
    return max(0.0, (used1 - used0) / (t1 - t0))


def parse_hub_time(text):
    """A time the hub's API gives ("2026-12-01T10:00:00.123456Z"), or None."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def server_record(user: str, state: str, stats_before, stats_after, limits, last_activity,
                  now: datetime) -> dict:
    """One user's server, as `--json` gives it (None where a figure could not be had)."""
    record = {"user": user, "state": state,
              "memory_bytes": None, "memory_limit_bytes": limits.mem_bytes or None,
              "cpu_cores": None, "cpu_limit_cores": limits.cpus or None,
              "last_activity": None, "idle_seconds": None}
    if stats_after:
        record["memory_bytes"] = memory_used(stats_after)
        if stats_before:
            record["cpu_cores"] = round(cpu_cores_used(stats_before, stats_after), 3)
    if last_activity is not None:
        record["last_activity"] = last_activity.isoformat()
        record["idle_seconds"] = max(0, int((now - last_activity).total_seconds()))
    return record


def server_line(record: dict, culls_after_s: int) -> str:
    """`alice  running  mem 233M of 2G (11%)  cpu 0.02 of 1 core  idle 4 min (culled at 1 h)`."""
    from tasks.limits import human_bytes, human_seconds
    from tasks.show import shown

    parts = [f"{shown(record['user']):<16}", f"{record['state']:<8}"]
    mem, mem_limit = record["memory_bytes"], record["memory_limit_bytes"]
    if mem is not None:
        of = f" of {human_bytes(mem_limit)} ({100 * mem / mem_limit:.0f}%)" if mem_limit else " (no limit)"
        parts.append(f"mem {human_bytes(mem)}{of}")
    cpu, cpu_limit = record["cpu_cores"], record["cpu_limit_cores"]
    if cpu is not None:
        of = f" of {cpu_limit:g} core{'s' if cpu_limit != 1 else ''}" if cpu_limit else " (no limit)"
        parts.append(f"cpu {cpu:.2f}{of}")
    if record["idle_seconds"] is not None:
        cull = f" (stopped after {human_seconds(culls_after_s)})" if culls_after_s else ""
        parts.append(f"idle {human_seconds(record['idle_seconds'])}{cull}")
    return "  " + "  ".join(parts)


def hub_problem(hub: dict, c=None) -> str:
    """Why the hub is not up, in one line, or "" when it is; commands as they work for `c`."""
    from tasks.target import command_line

    if not hub.get("container"):
        return f"no hub container: start it with `{command_line(c, 'up')}`"
    if hub.get("state") != "running":
        return f"the hub container is {hub.get('state')}: start it with `{command_line(c, 'up')}`"
    if hub.get("health") not in (None, "healthy"):
        return f"the hub container is {hub.get('health')} (see `{command_line(c, 'logs')}`)"
    if not hub.get("answers"):
        return f"the hub does not answer: {hub.get('error') or 'no answer'}"
    return ""


def _stats_pairs(client, containers) -> dict:
    """container id -> (stats, stats a second later), for running containers."""
    import docker

    def sample(container):
        try:
            return container.stats(stream=False, one_shot=True)
        except (docker.errors.APIError, docker.errors.NotFound):
            return None

    running = [ct for ct in containers if ct.status == "running"]
    if not running:
        return {}
    with ThreadPoolExecutor(PARALLEL) as pool:
        first = list(pool.map(sample, running))
        time.sleep(SAMPLE_S)
        second = list(pool.map(sample, running))
    return {ct.id: (a, b) for ct, a, b in zip(running, first, second)}


def _hub_servers(run, cert_sha256: str) -> dict:
    """user -> last activity of their server, from the hub's API; {} when it cannot say."""
    from tasks.access import TOKEN_FILE, HubAPI, HubAPIError
    from tasks.target import hub_endpoint

    token_file = run.root / "secrets" / TOKEN_FILE
    if not token_file.is_file():
        return {}
    try:
        with hub_endpoint(run.c, run.settings.port) as endpoint:
            api = HubAPI(endpoint, cert_sha256, token_file.read_text().strip())
            status, users = api.call("GET", "users?state=active")
    except (HubAPIError, OSError):
        return {}
    if status != 200 or not isinstance(users, list):
        return {}
    found = {}
    for user in users:
        server = (user.get("servers") or {}).get("") or {}
        found[user.get("name")] = parse_hub_time(server.get("last_activity") or user.get("last_activity"))
    return found


def collect(run) -> dict:
    """Everything `inv status` shows, as plain data."""
    from tasks import certs
    from tasks.checks import hub_container, labelled_containers
    from tasks.names import USER_LABEL
    from tasks.probe import ProbeError, get_hub_api
    from tasks.target import hub_endpoint

    settings, client, now = run.settings, run.client, datetime.now(timezone.utc)
    report = {"project": settings.project, "port": settings.port}
    ct = hub_container(client, settings.project)
    hub = {"container": ct.name if ct else None, "state": ct.status if ct else None,
           "health": ((ct.attrs.get("State") or {}).get("Health") or {}).get("Status") if ct else None,
           "answers": False, "version": None, "error": None}
    try:
        info = certs.inspect_pair(*certs.read_pair(run.root / "secrets"))
        report["certificate"] = {"valid_until": info.not_after.isoformat(), "names": list(info.names),
                                 "days_left": (info.not_after - now).days,
                                 "source": "self-signed" if info.self_made else "yours"}
    except (certs.CertError, TypeError):
        info, report["certificate"] = None, None
    if settings.acme.on and ct is not None and ct.status == "running":
        # The hub serves what its ACME service got (hub/hubacme.py): report and pin that one.
        from tasks.acmestatus import certificate_report, read_status, served_info

        report["certificate"] = certificate_report(read_status(ct), settings.acme, info, now)
        info = served_info(report["certificate"]) or info
    if ct is not None and ct.status == "running" and info is not None:
        try:
            with hub_endpoint(run.c, settings.port) as endpoint:
                code, body = get_hub_api(endpoint, info.sha256)
            hub["answers"] = code == 200
            hub["version"] = json.loads(body).get("version") if code == 200 else None
            hub["error"] = None if code == 200 else f"HTTP {code}"
        except (ProbeError, OSError, ValueError) as error:
            hub["error"] = str(error)
    report["hub"] = hub
    limits = settings.limits
    report["limits"] = {"memory_bytes": limits.mem_bytes, "cpu_cores": limits.cpus,
                        "pids": limits.pids, "idle_cull_seconds": limits.cull_timeout_s,
                        "max_age_seconds": limits.cull_max_age_s}
    servers = labelled_containers(client, settings.project, "user-server")
    samples = _stats_pairs(client, servers)
    activity = _hub_servers(run, info.sha256) if hub["answers"] else {}
    report["servers"] = sorted((
        server_record(ct.labels.get(USER_LABEL, ct.name), ct.status, *samples.get(ct.id, (None, None)),
                      limits, activity.get(ct.labels.get(USER_LABEL)), now)
        for ct in servers), key=lambda r: r["user"])
    if run.swarm is not None:
        swarm_servers(report, run, client, activity, now)
    report["problem"] = hub_problem(hub, run.c)
    return report


def swarm_servers(report: dict, run, client, activity: dict, now) -> None:
    """The swarm's nodes, and the servers running as services there: which user's runs on
    which node (the figures of memory and CPU are on the nodes' engines, not asked here)."""
    from tasks.swarmnodes import service_task, service_user, user_services

    swarm, limits = run.swarm, run.settings.limits
    names = {node.id: node.name for node in swarm.nodes}
    report["nodes"] = [{"name": n.name, "id": n.id, "role": n.role, "state": n.state,
                        "availability": n.availability, "ssh": n.ssh, "homes": list(n.homes)}
                       for n in swarm.nodes]
    for service in user_services(client, run.settings.project):
        user = service_user(service)
        node_id, state = service_task(service)
        record = server_record(user, state, None, None, limits, activity.get(user), now)
        record["node"] = names.get(node_id, node_id[:12] or None)
        report["servers"].append(record)
    report["servers"].sort(key=lambda r: r["user"])


def print_report(report: dict, c=None) -> None:
    from tasks.limits import human_bytes, human_seconds
    from tasks.show import shown
    from tasks.target import command_line

    hub = report["hub"]
    start = f"none (run `{command_line(c, 'up')}`)"
    print(f"hub container: {shown(hub['container']) + ' ' + hub['state'] if hub['container'] else start}"
          + (f" ({hub['health']})" if hub["health"] and hub["health"] != "healthy" else ""))
    cert = report["certificate"]
    if cert and cert.get("source") == "acme":
        from tasks.acmestatus import describe

        print("\n".join(describe(cert)))
    elif cert:
        print(f"certificate: valid until {cert['valid_until'][:10]} ({cert['days_left']} days), "
              f"{', '.join(cert['names'])}")
    else:
        print(f"certificate: none or unreadable (run `{command_line(c, 'cert')}`)")
    if hub["answers"]:
        print(f"hub answers on port {report['port']}: JupyterHub {shown(hub['version'])}")
    elif hub["error"]:
        print(f"hub does not answer on port {report['port']}: {shown(hub['error'])}")
    limits = report["limits"]
    each = ", ".join([
        f"memory {human_bytes(limits['memory_bytes'])}" if limits["memory_bytes"] else "memory unlimited",
        f"{limits['cpu_cores']:g} CPU" if limits["cpu_cores"] else "CPU unlimited",
        f"{limits['pids']} processes" if limits["pids"] else "processes unlimited"])
    cull = (f"stopped after {human_seconds(limits['idle_cull_seconds'])} idle"
            if limits["idle_cull_seconds"] else "never stopped for being idle")
    if limits["max_age_seconds"]:
        cull += f" or {human_seconds(limits['max_age_seconds'])} old"
    print(f"each user's server: {each}; {cull}")
    for node in report.get("nodes", ()):
        homes = f"; files of {len(node['homes'])} user(s)" if node["homes"] else ""
        print(f"node {shown(node['name'])}: {node['role']}, {node['state']}, {node['availability']}"
              f"{' (ssh ' + shown(node['ssh']) + ')' if node['ssh'] else ''}{homes}")
    servers = report["servers"]
    print(f"user servers: {len(servers)}")
    for record in servers:
        where = f"  on {shown(record['node'])}" if record.get("node") else ""
        print(server_line(record, limits["idle_cull_seconds"]) + where)


@task(help={"json": "print the status as one JSON object, for scripts"})
def status(c, json_=False):
    """Show the hub, the certificate, and each user's server with its memory, CPU and idle
    time; exits non-zero when the hub is not up."""
    from tasks.run import Run

    report = collect(Run.looking(c))  # reads only: it runs under -R/--dry too
    if json_:
        print(json.dumps(report, indent=1))
    else:
        print_report(report, c)
    if report["problem"]:
        raise Exit(f"hub not up: {report['problem']}", code=1)


@task(help={"user": "show this user's server instead of the hub",
            "follow": "keep printing new lines", "tail": "how many lines to start with"})
def logs(c, user="", follow=False, tail=200):
    """Show the hub's log, or a user's server log with --user NAME."""
    import shlex

    from tasks.checks import labelled_containers
    from tasks.project import compose_env
    from tasks.run import Run
    from tasks.target import compose
    from tasks.userlist import check_name

    run = Run.looking(c)  # reads only: under -R/--dry it echoes the log command
    settings = run.settings
    follow_flag = ["--follow"] if follow else []
    if user:
        check_name(user)
        # The hub labels each server with its user (hub/jupyterhub_config.py): found by
        # that, the container's name need not be worked out again here.
        found = labelled_containers(run.client, settings.project, "user-server", user=user)
        if not found and run.swarm is not None:  # a service on a worker: the manager has its log
            from tasks.swarmnodes import user_services

            found = user_services(run.client, settings.project, user=user)
            if found:
                run.c.run(shlex.join(["docker", "service", "logs", "--tail", str(int(tail)),
                                      *follow_flag, found[0].name]), warn=True)
                return
        if not found:
            raise Exit(f"{user} has no server in {settings.project}: it starts when they log "
                       "in, or from the admin panel; then run this again.")
        run.c.run(shlex.join(["docker", "logs", "--tail", str(int(tail)), *follow_flag,
                              found[0].name]), warn=True)
    else:
        compose(run.c, "logs", "--tail", str(int(tail)), *follow_flag, "hub", env=compose_env(settings))
