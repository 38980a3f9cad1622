"""`inv upgrade`: move a running deployment to the versions the project pins, with a verified
backup first and a way back that is taken, not only described, when a step fails.

Plan, act, re-check. The plan compares what the images that run now hold (read in them:
the Python packages, the proxy, the database schema their JupyterHub writes, and the one
the database is at) with what hub/ and notebook/ pin, and says what changes and what
happens to the users' servers; `--plan` stops there. Then: build the new images (the old
hub still serving), stop the hub (user servers keep running), back up its data volume with
`inv backup --hub`'s own archive and check that archive whole, upgrade the database
(`jupyterhub upgrade-db`) when the schema changes, start the new hub, and check that it
works: its version, its login page, and a server started, reached through the proxy and
stopped for a check user of its own. A failure after the hub stopped puts everything back:
the previous images under their names, the database from the archive, the previous hub,
and servers the new one started are stopped; then it says what failed.

The previous images stay tagged `<image>:previous` until the next upgrade.
"""
import shlex
import time

from invoke import task
from invoke.exceptions import Exit, UnexpectedExit

from tasks.names import USER_LABEL, label_filter
from tasks.upgradecheck import check_hub, remove_check_volume
from tasks.upgradeplan import (CHECK_USER, HUB_DB, STEPS, Versions, pinned, plan_upgrade, probe,
                               run_once, running_servers, shown_change)

PREVIOUS_TAG = "previous"


@task(help={"plan": "say what would change and the steps, and stop"})
def upgrade(c, plan=False):
    """Upgrade to the versions hub/ and notebook/ pin: backup, build, replace, upgrade-db, check; rolls back on failure."""
    from tasks.lifecycle import checked_run
    from tasks.run import Run

    run = Run.looking(c) if plan else checked_run(
        c, "upgrade", would="build the new images, stop the hub, back up its data, upgrade "
        "its database, start the new hub and check it, or put the previous one back")
    if plan:
        read_plan(run)
        print("steps:\n" + "\n".join(f"  {n}. {step}" for n, step in enumerate(STEPS, 1)))
        return
    Upgrade(run).go()


def read_plan(run, quiet: bool = False) -> tuple:
    """(plan, hub container, previous image ids {name: id}) from what runs; prints the plan."""
    from tasks.checks import hub_container, require_compose
    from tasks.images import image_id, is_project_image, server_image
    from tasks.project import compose_env, read_model
    from tasks.target import command_line

    client, settings = run.client, run.settings
    require_compose(run.c)
    model = read_model(run.c, compose_env(settings))
    hub = hub_container(client, settings.project)
    if hub is None:
        raise Exit(f"There is no hub in {settings.project} to upgrade: "
                   f"`{command_line(run.c, 'deploy')}` sets one up.")
    pins = pinned(run.root)
    hub_image = hub.attrs["Image"]
    running = hub.status == "running"
    hub_from = probe(client, hub_image, pins["hub"], container=hub if running else None,
                     volume="" if running else model.hub_volume)
    built = is_project_image(settings, model)
    notebook_name = server_image(settings, model)
    notebook_id = image_id(client, notebook_name)
    notebook_from = probe(client, notebook_id, pins["notebook"]).packages if built and notebook_id else {}
    plan = plan_upgrade(hub_from, notebook_from, pins, running_servers(client, settings.project),
                        built)
    if not quiet:
        print("upgrade plan for " + settings.project + ":\n"
              + "\n".join(f"  {line}" for line in plan.lines))
    previous = {model.hub_image: hub_image, notebook_name: notebook_id}
    return plan, hub, {name: i for name, i in previous.items() if i}, model


class Failed(Exception):
    """A step of the upgrade failed: `step` names it, the message says why."""

    def __init__(self, step: str, why: str):
        super().__init__(why)
        self.step = step


class Upgrade:
    """One `inv upgrade`: its steps, what each left behind, and the way back."""

    def __init__(self, run):
        self.run, self.c, self.client = run, run.c, run.client
        self.settings = run.settings
        self.started = time.monotonic()
        self.timings = {}
        self.hub_stopped = False
        self.database_touched = False
        self.archive = None        # (path, sha256) of the backup
        self.stopped_at = None     # the engine's clock when the old hub stopped

    def step(self, name: str, action):
        started = time.monotonic()
        try:
            result = action()
        except Failed:
            raise
        except (Exit, UnexpectedExit) as error:
            raise Failed(name, exit_text(error)) from None
        except Exception as error:  # noqa: BLE001  (any failure of a step is rolled back)
            raise Failed(name, f"{type(error).__name__}: {error}") from None
        self.timings[name] = round(time.monotonic() - started, 1)
        return result

    def go(self) -> None:
        from tasks.lifecycle import holding, preflight

        with holding(self.run, "upgrade"):
            self.plan, self.hub, self.previous, self.model = read_plan(self.run)
            self.ready = preflight(self.run, starting=True)
            self.keep_previous()
            try:
                self.step("build", self.build)
            except Failed as failure:
                self.images_back()
                raise Exit(f"The upgrade stopped at the build: {failure}. Nothing else was "
                           "changed: the hub you had still runs, with its images and database.")
            self.target = self.step("read the new images", self.read_new)
            if self.unchanged():
                print("The images are as the running hub's: nothing to upgrade (`inv up` "
                      "applies changed settings).")
                return
            try:
                self.step("stop the hub", self.stop_hub)
                self.step("back up the hub's data", self.back_up)
                self.step("upgrade the database", self.upgrade_database)
                self.step("start the new hub", self.start_new)
                self.step("check the new hub", self.check)
            except Failed as failure:
                self.roll_back(failure)
        self.report()

    # --- the steps ---
    def keep_previous(self) -> None:
        """Tag what runs now `:previous`, so the way back needs no build and no registry."""
        for name, image in self.previous.items():
            self.client.images.get(image).tag(name.rsplit(":", 1)[0], PREVIOUS_TAG)
        print("previous images kept as " + ", ".join(
            f"{name.rsplit(':', 1)[0]}:{PREVIOUS_TAG}" for name in self.previous))

    def build(self) -> None:
        from tasks.lifecycle import build_steps

        build_steps(self.ready)

    def read_new(self) -> Versions:
        from tasks.images import image_id

        image = image_id(self.client, self.model.hub_image)
        found = probe(self.client, image, pinned(self.run.root)["hub"],
                      database=self.plan.hub_from.database)
        db = self.plan.hub_from.database
        if db and found.schema != db:
            if not found.knows:
                self.images_back()
                raise Exit(
                    f"The hub's database is at schema {db}, which JupyterHub "
                    f"{found.packages.get('jupyterhub')} does not know: a newer JupyterHub wrote "
                    "it, and a schema cannot be downgraded. Nothing was changed (the images are "
                    "back as they were). Pin the version the database was written by, or "
                    "restore a backup taken before that version.")
            print(f"database: schema {db} -> {found.schema}: `jupyterhub upgrade-db` runs")
        elif db:
            print(f"database: schema {db}, unchanged")
        return found

    def unchanged(self) -> bool:
        from tasks.images import image_id

        return all(image_id(self.client, name) == image for name, image in self.previous.items())

    def stop_hub(self) -> None:
        from tasks.project import compose_env
        from tasks.target import compose

        self.stopped_at = engine_now(self.client)
        self.hub_stopped = True
        compose(self.c, "stop", "hub", env=compose_env(self.settings), hide=True)
        print(f"hub stopped; user servers still running: {len(running_servers(self.client, self.settings.project))}")

    def back_up(self) -> None:
        from tasks.backup.archive import Limits
        from tasks.backup.commands import backup_folder, ensure_folder
        from tasks.backup.restoring import verify
        from tasks.backup.targets import hub_target, prepare
        from tasks.backup.writing import backup_one, report

        dep = prepare(self.c)
        folder = backup_folder(self.c)
        ensure_folder(folder)
        target = hub_target(dep)
        written = backup_one(dep, target, folder, compress=False)
        report(target, written)
        verify(written.path, written.sha256, Limits())
        self.archive = (written.path, written.sha256)
        print(f"backup checked whole: {written.path.name}")

    def upgrade_database(self) -> None:
        db = self.plan.hub_from.database
        if not db or self.target.schema == db:
            return
        self.database_touched = True
        # An empty config: the hub's own reads secrets/ and the settings, which this one-off
        # container has not, and upgrade-db needs only the database's URL.
        argv = ["sh", "-c", "touch /tmp/empty_config.py && exec jupyterhub upgrade-db "
                f"--db=sqlite:///{HUB_DB} --config=/tmp/empty_config.py"]
        code, output = run_once(self.client, self.model.hub_image, argv,
                                {self.model.hub_volume: {"bind": "/data", "mode": "rw"}},
                                "upgrade-db")
        text = output.decode(errors="replace")
        if code != 0:
            raise Exit(f"`jupyterhub upgrade-db` exited {code}: {text.strip()[-800:]}")
        now = self.probe_database()
        if now != self.target.schema:
            raise Exit(f"after `jupyterhub upgrade-db` the database is at {now or '(unread)'}, "
                       f"not {self.target.schema}")
        print(f"database upgraded: schema {db} -> {now}")

    def probe_database(self) -> str:
        return probe(self.client, self.model.hub_image, [], volume=self.model.hub_volume).database

    def start_new(self) -> None:
        from tasks.lifecycle import up_steps

        self.database_touched = True  # the new hub writes to it from its start
        self.ready = up_steps(self.ready, after_build=True) or self.ready

    def check(self) -> None:
        from tasks.target import hub_endpoint

        want = self.target.packages.get("jupyterhub")
        with hub_endpoint(self.c, self.settings.port) as endpoint:
            check_hub(self.c, self.ready, endpoint, want)
        remove_check_volume(self.client, self.settings.project)
        print(f"checked: JupyterHub {want} answers, its login page too; {CHECK_USER}'s server "
              "started, answered through the proxy and stopped")

    # --- the way back ---
    def images_back(self) -> None:
        """Every image name that moved points at the image it named before."""
        for name, image in self.previous.items():
            repository, tag = name.rsplit(":", 1)
            self.client.images.get(image).tag(repository, tag)

    def roll_back(self, failure: Failed) -> None:
        from tasks.lifecycle import begin_changes

        print(f"the upgrade failed at `{failure.step}`: {failure}\nputting the previous hub back...")
        begin_changes(self.ready)
        try:
            back = self.put_back()
        except Exception as error:  # noqa: BLE001  (say what to do by hand, whatever it was)
            raise Exit(self.by_hand(failure, exit_text(error)))
        raise Exit(f"The upgrade failed at `{failure.step}`: {failure}\nRolled back in "
                   f"{time.monotonic() - self.started:.0f} s: {back}")

    def put_back(self) -> str:
        from tasks.project import compose_env
        from tasks.target import compose

        settings = self.settings
        compose(self.c, "stop", "hub", env=compose_env(settings), hide=True, warn=True)
        self.images_back()
        if self.run.swarm is not None:  # the workers were sent the new images: send these back
            from tasks.swarmnodes import ensure_images_on_nodes

            for line in ensure_images_on_nodes(self.c, self.client, self.run.swarm,
                                               list(self.previous))[0]:
                print(line)
        restored = ""
        if self.database_touched and self.archive:
            restored = self.restore_database()
        ended = stop_servers_started_after(self.client, settings.project, self.stopped_at,
                                           self.run.swarm)
        remove_check_volume(self.client, settings.project)
        version = self.start_previous()
        said = [f"JupyterHub {version} (the previous hub) answers again",
                restored or "its database was not changed",
                "user servers that ran before run on"]
        if ended:
            said.append(f"servers the failed hub started were stopped ({', '.join(ended)}; "
                        "their files stay)")
        return "; ".join(said) + "."

    def restore_database(self) -> str:
        from tasks.backup.archive import Limits
        from tasks.backup.restoring import restore_volume
        from tasks.backup.targets import hub_target, prepare

        dep = prepare(self.c)
        path, sha = self.archive
        restore_volume(dep, hub_target(dep), path, sha, True, Limits())
        return f"its database restored from {path.name}"

    def start_previous(self) -> str:
        """The previous hub up again, on the images put back; not recorded as applied (the
        tree pins the versions that failed), so the next `inv up` does its whole work."""
        from tasks.lifecycle import hub_env
        from tasks.probe import wait_for_hub
        from tasks.target import compose, hub_endpoint

        compose(self.c, "up", "--detach", "--wait", "--no-build", "--force-recreate", "hub",
                env=hub_env(self.ready), hide=True)
        with hub_endpoint(self.c, self.settings.port) as endpoint:
            return wait_for_hub(endpoint, self.ready.cert.sha256).get("version", "?")

    def by_hand(self, failure: Failed, why: str) -> str:
        from tasks.target import command_line

        archive = f"--from {shlex.quote(str(self.archive[0]))}" if self.archive else ""
        tags = "; ".join(f"`docker tag {name.rsplit(':', 1)[0]}:{PREVIOUS_TAG} {name}`"
                         for name in self.previous)
        restore = (f" `{command_line(self.c, 'down')}`, `{command_line(self.c, 'restore', '--hub')} "
                   f"{archive}`," if archive and self.database_touched else "")
        return (f"The upgrade failed at `{failure.step}`: {failure}\nPutting the previous hub "
                f"back failed too: {why}\nBy hand: {tags};{restore} then "
                f"`{command_line(self.c, 'up')}`.")

    def report(self) -> None:
        changed = ([f"hub image: {shown_change(*c)}" for c in self.plan.hub]
                   + [f"user image: {shown_change(*c)}" for c in self.plan.notebook])
        print(f"upgraded in {time.monotonic() - self.started:.0f} s "
              f"({', '.join(f'{k} {v} s' for k, v in self.timings.items())}): "
              + ("; ".join(changed) or "the images were rebuilt"))
        if self.archive:
            print(f"the hub's data before the upgrade: {self.archive[0]} (`inv restore --hub` takes it)")


def exit_text(error) -> str:
    """The one line an Exit or a failed command says."""
    if isinstance(error, UnexpectedExit):
        result = error.result
        tail = (result.stderr or result.stdout or "").strip().splitlines()[-3:]
        return f"`{result.command[:120]}` exited {result.exited}: " + " / ".join(tail)
    text = getattr(error, "message", None) or str(error)
    return str(text).strip()


def engine_now(client) -> str:
    """The engine's clock (its containers' StartedAt is on it), as RFC 3339."""
    return client.info().get("SystemTime", "")


def stop_servers_started_after(client, project: str, since: str, swarm=None) -> list:
    """Stop the user servers started after `since` (the engine's time the old hub stopped):
    only a hub that is being rolled back can have started them. Their volumes stay."""
    from tasks.lifecycle import stop_and_remove

    if not since:
        return []
    ended = []
    for container in client.containers.list(filters=label_filter(project, "user-server")):
        if container.attrs["State"].get("StartedAt", "") > since[:26]:
            stop_and_remove(container)
            ended.append(container.labels.get(USER_LABEL, container.name))
    if swarm is not None:  # its servers are services, on the workers
        from tasks.swarmnodes import service_user, user_services

        for service in user_services(client, project):
            if service.attrs.get("CreatedAt", "") > since[:26]:
                service.remove()
                ended.append(service_user(service))
    return sorted(set(ended))
