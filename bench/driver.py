"""A load driver: people using a deployed hub over HTTP and websockets, timed phase by phase.

Each session does what a person does: log in (through the login form, or with an API
token), start their server, open JupyterLab, start a kernel, run `5*4` and check that the
answer is `20`, and stop the server. Sessions are bounded in count and in time, and every
phase has a deadline, so a hub that hangs gives failed sessions, not a hung driver.

    .venv/bin/python -m bench.driver --url https://127.0.0.1:443 \\
        --cafile secrets/jupyterhub.crt --passwords secrets/initial-passwords \\
        --users alice,bob --sessions 4 --concurrency 2
"""
import argparse
import json
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hubclient import HubClient  # the integration tier's client (bench/__init__ finds it)

from bench.stats import summary

PHASES = ("login", "spawn", "open", "kernel", "execute", "stop")
CODE, EXPECTED = "5*4", "20"


class DriverError(Exception):
    """A step did not give what a person sees when things work."""


@dataclass(frozen=True)
class Credentials:
    name: str
    password: str = ""  # log in through the form...
    token: str = ""     # ...or with an API token


@dataclass
class Result:
    """One session: how long each phase took, and where it failed if it did."""
    user: str
    phases: dict = field(default_factory=dict)  # phase -> seconds, for the phases done
    ok: bool = False
    failed_phase: str = ""
    error: str = ""

    @property
    def total(self) -> float:
        return sum(self.phases.values())


class HubUser(HubClient):
    """The integration tier's HubClient, plus the steps timing needs: a spawn followed on
    the hub's progress stream (the moment the hub says "ready", where polling would blur
    the figure), opening JupyterLab, and a stop that waits until the server is gone."""

    def login_form(self, name: str, password: str) -> None:
        response = self.login(name, password)
        if response.status_code != 302:
            raise DriverError(f"the login form refused {name} (HTTP {response.status_code})")
        self.make_token(name)  # the API calls below use it, as JupyterLab uses its cookie

    def login_token(self, name: str, token: str) -> None:
        self.token = token
        response = self.request("GET", "/hub/api/user")
        if response.status_code != 200 or response.json().get("name") != name:
            raise DriverError(f"the token is not {name}'s (HTTP {response.status_code})")

    def spawn(self, name: str, deadline_s: float = 120) -> None:
        """POST the server; the hub answers 201 when it is ready within its
        slow_spawn_timeout, else 202, and then the progress stream says when."""
        response = self.request("POST", f"/hub/api/users/{name}/server")
        if response.status_code == 201:
            return
        if response.status_code != 202:
            raise DriverError(f"starting the server: HTTP {response.status_code} {response.text[:300]}")
        self.wait_ready(name, deadline_s)

    def wait_ready(self, name: str, deadline_s: float) -> None:
        end = time.monotonic() + deadline_s
        seen = []
        with self.session.get(
            self.base + f"/hub/api/users/{name}/server/progress",
            headers={"Authorization": f"token {self.token}"}, verify=self.cafile,
            stream=True, timeout=(10, deadline_s),
        ) as response:
            if response.status_code != 200:
                raise DriverError(f"progress stream: HTTP {response.status_code}")
            for line in response.iter_lines(chunk_size=None):
                if line.startswith(b"data:"):
                    event = json.loads(line[len(b"data:"):])
                    seen.append(event.get("message", ""))
                    if event.get("ready"):
                        return
                    if event.get("failed"):
                        raise DriverError(f"spawn failed: {event.get('message')}")
                if time.monotonic() > end:
                    break
        raise DriverError(f"{name}'s server not ready within {deadline_s} s; progress: {seen[-3:]}")

    def open_lab(self, name: str) -> None:
        """Load JupyterLab's page as the browser does after the spawn: with the login cookie
        that is the OAuth round trip through the hub; with only a token, the token."""
        if self.session.cookies.get("jupyterhub-session-id"):
            response = self.browse(f"/user/{name}/lab")
        else:
            response = self.request("GET", f"/user/{name}/lab")
        if response.status_code != 200 or not response.url.split("?")[0].endswith(f"/user/{name}/lab"):
            raise DriverError(f"JupyterLab did not open: HTTP {response.status_code} at {response.url}")

    def run_check(self, name: str, kernel: str, deadline_s: float = 60) -> None:
        answer = self.execute(name, kernel, CODE, deadline_s)
        if answer != EXPECTED:
            raise DriverError(f"{CODE} gave {answer!r}, not {EXPECTED}")

    def stop(self, name: str, deadline_s: float = 60) -> None:
        """DELETE the server; 204 means stopped, 202 that it is still stopping."""
        response = self.request("DELETE", f"/hub/api/users/{name}/server")
        if response.status_code == 204:
            return
        if response.status_code != 202:
            raise DriverError(f"stopping the server: HTTP {response.status_code} {response.text[:300]}")
        end = time.monotonic() + deadline_s
        last = None
        while time.monotonic() < end:
            last = self.user(name).get("servers")
            if not last:
                return
            time.sleep(0.05)
        raise DriverError(f"{name}'s server did not stop within {deadline_s} s; last: {last}")


def session(url: str, cafile: str, who: Credentials, spawn_deadline_s: float = 120,
            deadline_s: float = 60, stop: bool = True) -> Result:
    """One person's visit, start to finish. Never raises: failures are in the Result. With
    stop=False the visit ends at the cell's answer and the server stays up (a class that
    starts and goes on working); a failed session still stops its server."""
    user = HubUser(url, cafile)
    result = Result(user=who.name)
    kernel = ""

    def timed(phase, step, *args):
        started = time.perf_counter()
        try:
            return step(*args)
        except Exception as error:  # noqa: BLE001  (anything a step raises fails the session)
            result.failed_phase = phase
            result.error = f"{type(error).__name__}: {error}"[:500]
            raise
        finally:
            result.phases[phase] = time.perf_counter() - started

    try:
        if who.token:
            timed("login", user.login_token, who.name, who.token)
        else:
            timed("login", user.login_form, who.name, who.password)
        timed("spawn", user.spawn, who.name, spawn_deadline_s)
        timed("open", user.open_lab, who.name)
        kernel = timed("kernel", user.start_kernel, who.name)
        timed("execute", user.run_check, who.name, kernel, deadline_s)
        if stop:
            timed("stop", user.stop, who.name, deadline_s)
        result.ok = True
    except Exception:  # noqa: BLE001
        if user.token and result.failed_phase != "stop":
            try:  # leave no server behind for the next session; not timed
                user.stop(who.name, deadline_s)
            except Exception:  # noqa: BLE001
                pass
    # Phases that failed keep their time but count as not done.
    if result.failed_phase:
        result.phases.pop(result.failed_phase, None)
    return result


@dataclass
class Report:
    results: list
    wall_s: float
    sessions: int
    concurrency: int
    time_limit_s: float

    @property
    def succeeded(self) -> int:
        return sum(r.ok for r in self.results)

    @property
    def failed(self) -> int:
        return len(self.results) - self.succeeded

    def phase_summary(self) -> dict:
        """Per phase, the figures over every session that got through that phase; `total`
        over the sessions that succeeded."""
        figures = {p: summary(r.phases[p] for r in self.results if p in r.phases) for p in PHASES}
        figures["total"] = summary(r.total for r in self.results if r.ok)
        return figures

    def to_json(self) -> dict:
        return {
            "sessions_requested": self.sessions, "concurrency": self.concurrency,
            "time_limit_s": self.time_limit_s, "wall_s": self.wall_s,
            "run": len(self.results), "succeeded": self.succeeded, "failed": self.failed,
            "phases": self.phase_summary(), "results": [asdict(r) for r in self.results],
        }


def run(url: str, cafile: str, users: list, sessions: int, concurrency: int = 1,
        time_limit_s: float = 600, spawn_deadline_s: float = 120, deadline_s: float = 60,
        stop: bool = True) -> Report:
    """`sessions` sessions by `concurrency` people at once (each person has one session at
    a time; the users are shared out among them). No session starts after time_limit_s.
    stop=False: see session()."""
    if not users:
        raise ValueError("the driver needs at least one user")
    concurrency = max(1, min(concurrency, len(users)))
    started = time.monotonic()
    stop_at = started + time_limit_s
    lock = threading.Lock()
    results = []
    begun = 0

    def person(index):
        nonlocal begun
        mine = users[index::concurrency]
        turn = 0
        while True:
            with lock:
                if begun >= sessions or time.monotonic() >= stop_at:
                    return
                begun += 1
            result = session(url, cafile, mine[turn % len(mine)], spawn_deadline_s, deadline_s, stop)
            turn += 1
            with lock:
                results.append(result)

    threads = [threading.Thread(target=person, args=(i,), daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Report(results, time.monotonic() - started, sessions, concurrency, time_limit_s)


def read_credentials(path: Path) -> dict:
    """`name secret` lines (secrets/initial-passwords, or a file of tokens) as a dict."""
    found = {}
    for line in Path(path).read_text().splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and not line.startswith("#"):
            found[parts[0]] = parts[1].strip()
    return found


def format_report(report: Report) -> str:
    lines = [f"{'phase':<8} {'n':>3} {'p50 s':>7} {'p95 s':>7} {'max s':>7}"]
    for phase, s in report.phase_summary().items():
        lines.append(f"{phase:<8} {s['n']:>3} {s['p50']:>7.2f} {s['p95']:>7.2f} {s['max']:>7.2f}")
    lines.append(f"sessions: {report.sessions} asked, {len(report.results)} run, "
                 f"{report.succeeded} succeeded, {report.failed} failed, in {report.wall_s:.1f} s "
                 f"({report.concurrency} at a time)")
    for r in report.results:
        if not r.ok:
            lines.append(f"  {r.user}: failed at {r.failed_phase}: {r.error}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.driver", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the hub, e.g. https://127.0.0.1:443")
    parser.add_argument("--cafile", required=True, help="CA or certificate the hub's TLS is verified with")
    parser.add_argument("--passwords", help="`name password` lines: log in through the form")
    parser.add_argument("--tokens", help="`name token` lines: log in with API tokens instead")
    parser.add_argument("--users", required=True, help="comma-separated user names")
    parser.add_argument("--sessions", type=int, default=2, help="how many sessions in all")
    parser.add_argument("--concurrency", type=int, default=1, help="how many people at once")
    parser.add_argument("--time-limit", type=float, default=600, help="start no session after this (s)")
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args(argv)
    if bool(args.passwords) == bool(args.tokens):
        parser.error("give exactly one of --passwords and --tokens")
    secrets = read_credentials(args.passwords or args.tokens)
    names = [n for n in args.users.split(",") if n]
    missing = [n for n in names if n not in secrets]
    if missing:
        parser.error(f"no secret for {', '.join(missing)} in {args.passwords or args.tokens}")
    users = [Credentials(n, password=secrets[n]) if args.passwords else Credentials(n, token=secrets[n])
             for n in names]
    report = run(args.url, args.cafile, users, args.sessions, args.concurrency, args.time_limit)
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_json(), indent=2))
    return 0 if report.failed == 0 and report.results else 1


if __name__ == "__main__":
    sys.exit(main())
