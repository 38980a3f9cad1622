"""Private files written whole on this machine: the secrets, certificates, records and
backups the tasks keep. Nothing that runs inside a container imports this module (the
restore's swap program has its own copy of `sync_dir`: it runs with the standard library
alone in a helper container)."""
import os
import tempfile
from pathlib import Path


def sync_dir(path) -> None:
    """Make renames in a folder durable before the next step relies on them."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Replace `path` as a whole: readers see the old file or the new one, never a part.
    The mode is set on the private temporary file before the first byte lands, so a key or
    a password is never readable by others, and a failed write leaves no temporary file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_private(path: Path, text: str) -> None:
    """Write atomically with mode 0600 from the first byte, in a 0700 folder."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(path, text.encode("utf-8"), 0o600)
