"""A remote host's copy of the project: the files compose needs there, sent as one tar
stream, with a digest that says whether the copy there is current.

The project folder on this machine stays the source of truth; on this machine compose
runs in it and there is nothing to upload.
"""
import hashlib
import io
import shlex
from dataclasses import dataclass
from pathlib import Path

from invoke.exceptions import Exit

from tasks.target import REMOTE_CA_FILE, deploy_dir, is_remote, note_step

# What a remote host needs to run the deployment; secrets/ travels with mode 0600/0700.
PROJECT_FILES = ("docker-compose.yml", ".env", "userlist", "profiles.toml", "hub", "notebook",
                 "images", "secrets")
BUNDLE_MARK = ".bundle-sha256"


@dataclass(frozen=True)
class Bundle:
    data: bytes  # a tar of the project files
    digest: str  # its sha256: the same files give the same bytes
    names: frozenset = frozenset()  # every path it holds, folders too ("hub", "hub/Dockerfile")


def bundle(root: Path, ca_file: str = "") -> Bundle:
    """The project files a remote host needs, as one tar (small: no images, no backups)."""
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def clean(info):
            if "__pycache__" in info.name:
                return None
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0  # the same files give the same bytes, so the digest means "unchanged"
            return info

        for name in PROJECT_FILES:
            if (root / name).exists():
                tar.add(root / name, arcname=name, filter=clean)
        if ca_file:
            tar.add(ca_file, arcname=REMOTE_CA_FILE, filter=clean)
        names = frozenset(tar.getnames())
    data = buffer.getvalue()
    return Bundle(data, hashlib.sha256(data).hexdigest(), names)


def plan_removals(found, names) -> list:
    """What the remote copy holds that the bundle does not, as paths in it: `found` is
    every path there (`find .` below the copy), `names` the bundle's. A folder to remove
    takes what is in it, so only the topmost of each is listed. The mark stays: the upload
    rewrites it last. Paths that could reach outside the copy are never listed."""
    # The folders that hold a bundled file stay, listed in the bundle or not: tar.add of one
    # file (the CA bundle, as .build/ca-bundle.pem) puts no entry for its folder in the tar.
    kept = set(names)
    for name in names:
        parts = name.split("/")
        kept.update("/".join(parts[:end]) for end in range(1, len(parts)))
    removals = []
    for path in sorted(found):
        parts = path.split("/")
        if not path or path.startswith("/") or "" in parts or "." in parts or ".." in parts:
            continue
        if path in kept or path == BUNDLE_MARK:
            continue
        if any(path.startswith(f"{removed}/") for removed in removals):
            continue
        removals.append(path)
    return removals


def remote_mark(c) -> str:
    """The digest of the project files last uploaded in full to the remote host, or ""."""
    where = shlex.quote(deploy_dir(c))
    return c.run(f"cat {where}/{BUNDLE_MARK} 2>/dev/null || true", hide=True).stdout.strip()


def project_copy_current(run) -> bool:
    """Whether compose's folder holds the current project files: always here; on a remote
    host, when it holds what sync_project would upload now."""
    if not is_remote(run.c):
        return True
    return run.remote_mark == run.bundle.digest


def sync_project(run) -> str:
    """Make a remote host's copy equal to the current project files (no-op locally): one
    tar stream into `tar -x` over an SSH channel (no temporary file, nothing in shell
    history), then whatever the copy holds that the project no longer does is removed
    (a secret deleted here is deleted there), and nothing outside the copy. The copy is
    updated in place, not swapped for a new folder: the running hub's bind mount of
    secrets/ keeps seeing the current files. The digest goes first and comes back last, so
    an upload cut short is done again next time, whatever the files are by then."""
    from tasks.show import shown

    c = run.c
    if not is_remote(c):
        return ""
    sent = run.bundle
    if run.remote_mark == sent.digest:
        return f"project files on {c.host}: unchanged"
    note_step(c, "uploading the project files")
    folder = own_folder(deploy_dir(c))
    where = shlex.quote(folder)
    status, listing, errors = _remote_sh(
        c, f"cd -- {where} 2>/dev/null || exit 0; find . -mindepth 1 -print0")
    if status != 0:
        raise Exit(f"Listing the project's copy on {c.host}:{folder} failed: {errors.strip()}")
    found = [name[2:] for name in listing.decode("utf-8", "surrogateescape").split("\0") if name]
    removals = plan_removals(found, sent.names)
    remove = (f" && rm -rf -- {' '.join(shlex.quote(f'{folder}/{path}') for path in removals)}"
              if removals else "")
    status, _, errors = _remote_sh(
        c, f"umask 077 && mkdir -p -- {where} && rm -f -- {where}/{BUNDLE_MARK} "
           f"&& tar -x -m -p -C {where}{remove} && printf %s {sent.digest} > {where}/{BUNDLE_MARK}",
        sent.data)
    if status != 0:
        raise Exit(f"Uploading the project to {c.host}:{folder} failed: {errors.strip()}")
    run.remote_mark = sent.digest
    removed = f"; removed there: {', '.join(shown(path) for path in removals)}" if removals else ""
    return f"project files on {c.host}: uploaded ({len(sent.data) // 1024} KiB){removed}"


def own_folder(folder: str) -> str:
    """The remote copy's folder, refused when it could be more than the copy's own: the
    upload removes from it whatever the project does not hold."""
    parts = [part for part in folder.split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        raise Exit(f"remote_dir={folder!r} must name a folder of the project's copy's own, like "
                   "jupyterhub-deploy (in the remote user's home) or /srv/jupyterhub-deploy: "
                   "an upload removes from it whatever the project does not hold.")
    return folder


def _remote_sh(c, script: str, data: bytes = b"") -> tuple:
    """(status, stdout, stderr) of `sh -c SCRIPT` on the remote host, fed `data`, over a
    channel of the connection. Bytes both ways: file names need not be UTF-8."""
    channel = c.client.get_transport().open_session()
    try:
        channel.exec_command(shlex.join(["sh", "-c", script]).encode("utf-8", "surrogateescape"))
        if data:
            channel.sendall(data)
        channel.shutdown_write()
        out = channel.makefile("rb").read()
        errors = channel.makefile_stderr("rb").read().decode(errors="replace")
        status = channel.recv_exit_status()
    finally:
        channel.close()
    return status, out, errors
