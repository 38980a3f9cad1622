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
PROJECT_FILES = ("docker-compose.yml", ".env", "userlist", "hub", "notebook", "secrets")
BUNDLE_MARK = ".bundle-sha256"


@dataclass(frozen=True)
class Bundle:
    data: bytes  # a tar of the project files
    digest: str  # its sha256: the same files give the same bytes


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
    data = buffer.getvalue()
    return Bundle(data, hashlib.sha256(data).hexdigest())


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
    """Give a remote host the current project files (no-op locally). One tar stream into
    `tar -x` over an SSH channel: no temporary file, nothing in shell history. The digest
    is written last, so an upload cut short is simply done again next time."""
    c = run.c
    if not is_remote(c):
        return ""
    sent = run.bundle
    if run.remote_mark == sent.digest:
        return f"project files on {c.host}: unchanged"
    note_step(c, "uploading the project files")
    where = shlex.quote(deploy_dir(c))
    script = (f"umask 077 && mkdir -p {where} && tar -x -m -C {where} "
              f"&& printf %s {sent.digest} > {where}/{BUNDLE_MARK}")
    channel = c.client.get_transport().open_session()
    try:
        channel.exec_command(shlex.join(["sh", "-c", script]))
        channel.sendall(sent.data)
        channel.shutdown_write()
        errors = channel.makefile_stderr("rb").read().decode(errors="replace")
        status = channel.recv_exit_status()
    finally:
        channel.close()
    if status != 0:
        raise Exit(f"Uploading the project to {c.host}:{deploy_dir(c)} failed: {errors.strip()}")
    run.remote_mark = sent.digest
    return f"project files on {c.host}: uploaded ({len(sent.data) // 1024} KiB)"
