"""`inv backup` and `inv restore`: their flags, their config (`backup.dir`,
`backup.compress`, `backup.max_size`) and the backup folder they name.

This is the one module of the package that `inv --list` imports: the tasks import the rest
(and through it the Docker SDK) when they run, so listing the tasks costs none of it.
"""
import os
from contextlib import ExitStack
from pathlib import Path

from invoke import task
from invoke.exceptions import Exit

from tasks.run import refuse_dry
from tasks.target import project_dir

DEFAULTS = {"dir": "backups", "compress": False, "max_size": "100G"}


def _config(c, key: str):
    section = c.config.get("backup") or {}
    return section.get(key, DEFAULTS[key])


def backup_folder(c, flag: str = "") -> Path:
    """The backup folder: --dir beats invoke config `backup.dir`; relative to the project."""
    folder = Path(flag or _config(c, "dir"))
    if not folder.is_absolute():
        folder = project_dir(c) / folder
    if folder.exists() and not folder.is_dir():
        raise Exit(f"The backup folder {folder} is a file: pass --dir with a folder, or move it.")
    return folder


def ensure_folder(folder: Path) -> None:
    """Made only when a backup is about to be written; private, since hub archives hold
    the cookie secret and password hashes."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise Exit(f"Cannot make the backup folder {folder} ({error.strerror}): pass --dir "
                   "with a folder you may write to.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise Exit(f"Cannot write to the backup folder {folder}: pass --dir with a folder you "
                   "may write to, or fix its permissions.")


def _size_limit(text) -> int:
    from tasks.backup.archive import parse_size

    try:
        return parse_size(text)
    except ValueError as error:
        raise Exit(f"--max-size: {error}.")


@task(auto_shortflags=False, help={
    "user": "back up this user's volume (their work/ folder)",
    "all": "back up every user's volume, every group's shared folder and the hub's data",
    "share": "back up a group's shared folder (profiles.toml's [[shares]])",
    "hub": "back up the hub's data: database (copied consistently while it runs), cookie secret",
    "list": "list the backups in the backup folder",
    "dir": "backup folder (default: backups/, or invoke config backup.dir)",
    "compress": "gzip the archive (fast level; smaller, and slower than the default)",
})
def backup(c, user="", all_=False, hub=False, share="", list_=False, dir_="", compress=False):
    """Back up a user's volume (--user NAME), a group's --share NAME, --hub, or --all."""
    from tasks.backup.nodes import Engines
    from tasks.backup.store import print_backups
    from tasks.profiles import check_group_name
    from tasks.userlist import check_name

    chosen = [flag for flag, on in (("--user", bool(user)), ("--all", all_), ("--hub", hub),
                                    ("--share", bool(share)), ("--list", list_)) if on]
    if len(chosen) != 1:
        raise Exit("Say what to back up: --user NAME, --share NAME, --hub or --all (or --list "
                   "to see the backups)"
                   f"{'; not ' + ' and '.join(chosen) + ' together' if chosen else ''}.")
    if user:
        check_name(user)
    if share:
        check_group_name(share)
    folder = backup_folder(c, dir_)
    if list_:  # reads only: runs under -R/--dry too
        print_backups(folder)
        return
    refuse_dry(c, ["backup", *chosen, *([user] if user else []), *([share] if share else [])],
               would=f"write an archive of each volume it names into {folder}")
    compress = bool(compress or _config(c, "compress"))
    with Engines() as engines:
        _backup(c, user, hub, share, folder, compress, engines)


def _backup(c, user, hub, share, folder, compress, engines) -> None:
    from tasks.backup.nodes import for_target
    from tasks.backup.targets import (engine_errors, hub_target, prepare, require_volume,
                                      share_target, share_targets, user_target, user_targets)
    from tasks.backup.writing import backup_one, report
    from tasks.show import shown

    with engine_errors("Backup"):
        dep = prepare(c)
        if user:
            targets = [user_target(dep, user)]
        elif share:
            targets = [share_target(dep, share)]
        elif hub:
            targets = [hub_target(dep)]
        else:
            targets = user_targets(dep) + share_targets(dep) + [hub_target(dep)]
        if len(targets) == 1:  # refused before the backup folder is made
            require_volume(for_target(dep, engines, targets[0]), targets[0])
    ensure_folder(folder)
    failed = []
    for target in targets:
        try:
            with engine_errors(f"Backup of {target.what}"):
                where = for_target(dep, engines, target)
                if len(targets) > 1 and (target.kind == "hub" or dep.swarm is not None):
                    require_volume(where, target)  # --all listed the volumes, not these
                report(target, backup_one(where, target, folder, compress))
        except Exception as error:  # an OSError, even a bug: it stops this volume's backup only
            if len(targets) == 1:
                raise
            reason = error.message if isinstance(error, Exit) else \
                f"{type(error).__name__}: {shown(error)}"
            said = f"Backup of {target.what} failed: "
            reason = reason[len(said):] if reason.startswith(said) else reason
            print(f"backup of {target.what} failed: {reason}")
            failed.append(f"  {target.what}: {reason}")
    if failed:
        raise Exit(f"{len(targets) - len(failed)} of {len(targets)} backed up; these failed:\n"
                   + "\n".join(failed))


@task(auto_shortflags=False, help={
    "user": "restore this user's volume",
    "share": "restore this group's shared folder",
    "hub": "restore the hub's data (stop the hub first: `inv down`)",
    "from": "the archive: a path, or a name in the backup folder",
    "force": "replace a volume that holds files, even while the user's server runs",
    "dir": "backup folder (default: backups/, or invoke config backup.dir)",
    "max-size": "refuse archives holding more than this (default 100G, or backup.max_size)",
    "node": "on a swarm: restore the user's volume on this node, which becomes their home",
})
def restore(c, user="", hub=False, share="", from_="", force=False, dir_="", max_size="",
            node=""):
    """Restore a user's volume (--user NAME), a --share NAME or --hub --from an archive."""
    from tasks import applied
    from tasks.backup.archive import ArchiveError, Limits, human_bytes
    from tasks.backup.nodes import Engines, move_home
    from tasks.backup.restoring import (check_kind, resolve_archive, restore_volume,
                                        running_servers)
    from tasks.backup.store import peek_metadata, shown_path
    from tasks.backup.targets import (Target, engine_errors, hub_target, prepare, share_target,
                                      user_target)
    from tasks.locks import operation
    from tasks.show import shown
    from tasks.profiles import check_group_name
    from tasks.target import applied_record, command_line, given_host, is_remote
    from tasks.userlist import check_name

    if [bool(user), bool(hub), bool(share)].count(True) != 1:
        raise Exit("Say what to restore: --user NAME, --share NAME or --hub, and --from FILE.")
    flags = ["--user", user] if user else ["--share", share] if share else ["--hub"]
    refuse_dry(c, ["restore", *flags], would="replace the volume's files with the archive's")
    if not from_:
        raise Exit("Say which archive to restore with --from FILE (`inv backup --list` shows "
                   "them).")
    if user:
        check_name(user)
    if share:
        check_group_name(share)
    limits = Limits(max_bytes=_size_limit(max_size or _config(c, "max_size")))
    folder = backup_folder(c, dir_)
    path, expected = resolve_archive(folder, from_)
    try:
        meta = peek_metadata(path)
    except (ArchiveError, OSError) as error:
        raise Exit(f"Refused {shown(path.name)}: {error}. Nothing was changed; pass an archive "
                   "`inv backup` wrote (`inv backup --list` shows them).")
    kind = "user" if user else "share" if share else "hub"
    check_kind(meta, Target(kind, "", user, share), path)
    with engine_errors("Restore"):
        dep = prepare(c)
    target = (user_target(dep, user) if user else share_target(dep, share) if share
              else hub_target(dep))
    with engine_errors(f"Restore of {target.what}"), ExitStack() as held:
        engines = held.enter_context(Engines())
        where, home = restore_place(dep, engines, target, node)
        if hub:  # no `inv up` may start the hub meanwhile: the deployment's lock
            held.enter_context(operation(dep.client, dep.project,
                                         f"`{command_line(c, 'restore', '--hub')}`",
                                         given_host(c) if is_remote(c) else ""))
            # The hub's users and groups may change: the next `inv up` takes every step.
            applied.forget(applied_record(c))
        summary = restore_volume(where, target, path, expected, force, limits)
        moved = move_home(dep, target.user, home) if home is not None else ""
        running = target.kind == "user" and running_servers(where, target.user)
    meta = summary.metadata
    print(f"restored {target.what} (volume {target.volume}) from {shown_path(path)}: "
          f"{summary.entries} entries, {human_bytes(summary.bytes)} of file data, "
          f"backed up {shown(meta['created'])} from project {shown(meta['project'])}")
    if moved:
        print(moved)
    if running:
        print(f"{target.user}'s server was running: restart it so it sees the restored files.")


def restore_place(dep, engines, target, node: str) -> tuple:
    """(the deployment as seen from the engine that holds the volume, the user's home node
    or None). On a swarm a user's volume is restored on their home node, or on --node,
    which then becomes their home; their server may not run meanwhile on another node."""
    from tasks.backup.nodes import on_node
    from tasks.show import shown
    from tasks.swarmnodes import user_services
    from tasks.target import command_line

    if dep.swarm is None or target.kind != "user":
        if node:
            raise Exit("--node is for a user's volume on a swarm (swarm-init); "
                       + ("this deployment runs on one host." if dep.swarm is None else
                          "the hub's data and the groups' folders live on the manager."))
        return dep, None
    home = dep.swarm.home_of(target.user)
    dest = dep.swarm.node(node) if node else home
    if dest is None:
        raise Exit(f"{target.user} has no home node on this swarm yet: name the node to restore "
                   f"on with --node (`{command_line(dep.c, 'status')}` lists the nodes).")
    if dest.role != "worker" or not dest.usable:
        raise Exit(f"Node {shown(dest.name)} cannot hold users' files now ({dest.role}, "
                   f"{dest.state}, {dest.availability}): choose a ready, active worker.")
    if home is not None and home.id != dest.id and user_services(dep.client, dep.project,
                                                                 user=target.user):
        raise Exit(f"{target.user}'s server runs (on {shown(home.name)}): stop it first (the "
                   "admin panel, or the user's File > Hub Control Panel), then restore.")
    return on_node(dep, engines, dest), dest
