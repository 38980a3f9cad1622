"""A consistent copy of the hub's SQLite database, made inside the running hub's container
while the hub goes on writing, and removed again once the backup has read it.

writing.py runs this file's source with `python3 -I -c SOURCE copy DATABASE FOLDER` (and
`drop FOLDER` afterwards) in the hub's container: SQLite's online backup gives a
consistent copy even while the hub writes, and the copy lands in the data volume, where
the backup reads it. Standard library only: the hub's image has none of this project.

`copy` prints one JSON line: {"result": "none"} when there is no database, else
{"result": "copied", "check": <PRAGMA quick_check>, "bytes": <size of the copy>}.
"""
import json
import os
import shutil
import sqlite3
import stat
import sys


def copy(database, folder):
    if not os.path.isfile(database):
        return {"result": "none"}
    os.makedirs(folder, mode=0o700, exist_ok=True)
    for name in os.listdir(folder):
        os.unlink(os.path.join(folder, name))
    target_path = os.path.join(folder, os.path.basename(database))
    source = sqlite3.connect(database, timeout=60)
    target = sqlite3.connect(target_path)
    source.backup(target)
    check = target.execute("PRAGMA quick_check").fetchone()[0]
    target.close()
    source.close()
    info = os.stat(database)
    os.chown(target_path, info.st_uid, info.st_gid)
    os.chmod(target_path, stat.S_IMODE(info.st_mode))
    return {"result": "copied", "check": check, "bytes": os.path.getsize(target_path)}


def drop(folder):
    shutil.rmtree(folder, ignore_errors=True)


def main(argv):
    verb, args = argv[1], argv[2:]
    if verb == "copy":
        print(json.dumps(copy(*args)))
    elif verb == "drop":
        drop(*args)
    else:
        return f"unknown verb {verb!r}: copy DATABASE FOLDER, or drop FOLDER"
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
