"""Finish or undo a restore inside a volume: the one step a restore cannot do through the
Docker archive API, because it renames things.

helper.py runs this file's source with `python3 -I -c SOURCE MOUNTPOINT` in a
short-lived helper container that mounts the volume (it runs no tar and touches nothing
but the volume); the unit tier runs `settle` on a local folder. Standard library only.

A restore first puts the checked archive into WORK/staging, then the marker WORK/commit,
then starts this. Every step leaves the volume in a state this same program recognises,
so whatever interrupts it (a killed `inv`, a crashed engine, a power cut), running it
again finishes the restore or undoes it, and never mixes the two:

    WORK without commit       the upload did not finish or was not checked: remove WORK,
                              the volume is as it was (undo)
    WORK/staging + commit     give staged entries the times the engine could not set
                              (before 1970: WORK/times.jsonl), then rename staging ->
                              incoming: from here on, finish
    WORK/incoming             move every root entry but WORK into WORK/old, then rename
                              incoming -> place
    WORK/place                move its entries to the root, give the root the archive's
                              owner and mode, remove place
    WORK + commit, no more    remove WORK/old (the old contents), then WORK, then set the
                              root's time: done (cut short, what is left is removed)
"""
import json
import os
import shutil
import stat
import sys

WORK = ".jupyterhub-deploy-restore"  # archive.RESTORE_DIR is this name


class NotOurs(Exception):
    """WORK exists but a restore did not make it (a restore makes it root's, mode 0700)."""


def sync_dir(path):
    """Make renames in a folder durable before the next step relies on them."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _is_dir(path):
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def set_times(work, staging):
    """Set the times WORK/times.jsonl lists (one [path, seconds] a line, paths relative to
    the volume's root): those the engine's archive API sets to 1970-01-01. Run again after
    a crash, it sets the same times. The next step's fsync of WORK commits them too (the
    file system journals metadata in order)."""
    try:
        file = open(os.path.join(work, "times.jsonl"), encoding="utf-8")
    except FileNotFoundError:
        return
    with file:
        for line in file:
            path, seconds = json.loads(line)
            os.utime(os.path.join(staging, path), (seconds, seconds), follow_symlinks=False)


def settle(root, owner=0):
    """Bring the volume at `root` to a whole state; returns what was done."""
    work = os.path.join(root, WORK)
    try:
        info = os.lstat(work)
    except FileNotFoundError:
        return "clean"
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != owner or info.st_mode & 0o077:
        raise NotOurs(work)
    if not os.path.lexists(os.path.join(work, "commit")):
        # The upload did not finish or was not checked (the root was never touched), or
        # this is what is left of a finished swap's last removal.
        undone = _is_dir(os.path.join(work, "staging"))
        before = None
        try:
            with open(os.path.join(work, "root.json"), encoding="utf-8") as file:
                before = json.load(file).get("before_ns") if undone else None
        except (OSError, ValueError):
            pass
        shutil.rmtree(work)
        if before is not None:  # making and removing WORK changed the root's time
            atime = os.stat(root).st_atime_ns
            os.utime(root, ns=(atime, int(before)), follow_symlinks=False)
        sync_dir(root)
        return "undone" if undone else "cleaned"
    with open(os.path.join(work, "root.json"), encoding="utf-8") as file:
        attrs = json.load(file)
    staging, incoming, place, old = (
        os.path.join(work, name) for name in ("staging", "incoming", "place", "old"))
    if _is_dir(staging):
        set_times(work, staging)
        os.rename(staging, incoming)
        sync_dir(work)
    if _is_dir(incoming):
        os.makedirs(old, mode=0o700, exist_ok=True)
        for name in os.listdir(root):
            if name != WORK:
                os.rename(os.path.join(root, name), os.path.join(old, name))
        sync_dir(old)
        sync_dir(root)
        os.rename(incoming, place)
        sync_dir(work)
    if _is_dir(place):
        for name in os.listdir(place):
            os.rename(os.path.join(place, name), os.path.join(root, name))
        sync_dir(root)
        os.chown(root, int(attrs["uid"]), int(attrs["gid"]))
        os.chmod(root, int(attrs["mode"]) & 0o1777)
        os.rmdir(place)
        sync_dir(work)
    if _is_dir(old):
        shutil.rmtree(old)  # the previous contents: the long part, with the marker kept
    shutil.rmtree(work)
    # Last, because removing WORK changes the root's time.
    os.utime(root, (int(attrs["mtime"]), int(attrs["mtime"])), follow_symlinks=False)
    sync_dir(root)
    return "finished"


def main(argv):
    try:
        print(json.dumps({"result": settle(argv[1])}))
    except NotOurs as error:
        print(json.dumps({"result": "not ours", "path": str(error)}))
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
