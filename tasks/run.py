"""One run of the tasks against one engine: what they need about the deployment, each
worked out once, on first use, and handed down rather than worked out again in each step.

`inv build up` runs two tasks in one process, and `python -m tasks -H a,b deploy` one task
per host. Invoke hands every task of one command line the same Config (and each a new
Context), so the Config carries the runs, one per engine: `inv build up` checks once and
uploads once, each host of `-H a,b` has its own, and nothing outlives the command line
(nor leaks from one test into the next).
"""
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from invoke.exceptions import Exit

from tasks.settings import load_settings, resolve_ca_bundle
from tasks.target import (
    applied_record, command_line, deploy_dir, docker_client, engine_id, host_name, project_dir,
)

_RUNS = "_jupyterhub_deploy_runs"  # a plain attribute of the Config, not a config value


def refuse_dry(c, task=(), would: str = "change the deployment") -> None:
    """Stop a task that changes things, under -R/--dry, before it does anything.

    Invoke's and Fabric's --dry echoes each command instead of running it; but these tasks
    also act through Docker's API (stopping a user's server, say) and write files, which
    nothing echoes. Rather than act under --dry, they say what they would do and stop."""
    if not c.config.run.dry:
        return
    what = f"`{command_line(c, *task)}`" if task else "This task"
    raise Exit(f"-R/--dry: nothing was done. {what} would {would}. It acts through Docker's "
               "API and on files as well as by commands, and --dry can only echo commands, so "
               "its steps are not simulated: run it without -R/--dry to do it.")


@dataclass(eq=False)
class Run:
    """The deployment on one engine, for one command line. `c` is the context of the first
    task that asked; the tasks after it on that engine run their commands through it too."""
    c: object
    # The quick check's verdict (tasks/quick.py): the record of the last `inv up` that
    # still holds, or None; asked by `inv build` and again by `inv up`, checked once.
    checked: bool = field(default=False, init=False)
    unchanged: object = field(default=None, init=False)
    said_unchanged: bool = field(default=False, init=False)

    @classmethod
    def of(cls, c, *task, would: str = "change the deployment") -> "Run":
        """The run of c's engine on this command line, made on first use, for a task that
        changes things: under -R/--dry it stops here, before anything is done (refuse_dry).
        `task` is the command line's words for it ("down"), `would` what it would do."""
        refuse_dry(c, task, would)
        return cls.looking(c)

    @classmethod
    def looking(cls, c) -> "Run":
        """The run for a task that only looks (status, logs): it runs under -R/--dry too,
        where the commands it would run are echoed and its Docker API reads answer."""
        runs = vars(c.config).get(_RUNS)
        if runs is None:
            runs = {}
            c.config._set(_RUNS, runs)
        engine = engine_id(c)
        if engine not in runs:
            runs[engine] = cls(c)
        return runs[engine]

    @cached_property
    def root(self) -> Path:
        return project_dir(self.c)

    @cached_property
    def settings(self):
        return load_settings(self.root)

    @cached_property
    def ca_file(self) -> str:
        """The CA bundle builds trust, on this machine ("" for none)."""
        return resolve_ca_bundle(self.settings.build_ca_bundle)

    @cached_property
    def record(self) -> Path:
        return applied_record(self.c)

    @cached_property
    def client(self):
        return docker_client(self.c)

    @cached_property
    def swarm(self):
        """The swarm the tool made on this engine (tasks/swarmnodes.py Swarm), or None: then
        the deployment is a single host, as by default."""
        from tasks.swarmnodes import swarm_of

        return swarm_of(self.client, self.settings.project)

    @cached_property
    def inputs(self) -> str:
        """The digest of every input (tasks/applied.py), as the files were when first asked."""
        return self.inputs_now()

    def inputs_now(self) -> str:
        """The digest of every input as it is now: to tell what changed since `inputs`."""
        from tasks import applied

        return applied.inputs_digest(self.root, os.environ, host_name(self.c), deploy_dir(self.c))

    @cached_property
    def bundle(self):
        """The project files a remote host's copy must hold (tasks/upload.py)."""
        from tasks.upload import bundle

        return bundle(self.root, self.ca_file)

    @cached_property
    def remote_mark(self) -> str:
        """The digest of the files last uploaded to the remote host (read once, then kept
        up to date by the upload)."""
        from tasks.upload import remote_mark

        return remote_mark(self.c)

    @contextmanager
    def writing_secrets(self):
        """Around steps that may write secrets/ (a certificate, passwords, a token): the
        digest and the upload worked out from the files before are dropped if they changed."""
        from tasks.applied import files_digest

        kept = {"inputs", "bundle"} & vars(self).keys()
        before = files_digest(self.root / "secrets") if kept else ""
        yield
        if kept and files_digest(self.root / "secrets") != before:
            for name in kept:
                del vars(self)[name]
