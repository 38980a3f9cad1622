"""`python -m tasks`: the same tasks as `inv`, plus Fabric's `-H host` to run them on a
remote host over SSH. Invoke's own `inv` has no -H, and Fabric's `fab` looks for a
fabfile; this program is Fabric's with our collection and host-key checking added."""
import shlex
from pathlib import Path

from fabric import Config, Connection, Executor
from fabric.main import Fab
from fabric.tasks import ConnectionCall
from invoke.exceptions import Exit

from tasks.root import ns


def trust_hint(host: str, port: int) -> str:
    scan = shlex.join(["ssh-keyscan", host] if port == 22 else ["ssh-keyscan", "-p", str(port), host])
    return (f"Check the host's key fingerprint with its administrator, then trust it with:\n"
            f"  {scan} >> ~/.ssh/known_hosts\n"
            "(or connect once with `ssh` and answer yes after checking the fingerprint).")


def forget_key_line(host: str, port: int) -> str:
    """`ssh-keygen -R` for the host as known_hosts names it, quoted: `[host]:port` is a
    glob that zsh (macOS's shell) and bash with failglob refuse unquoted."""
    return shlex.join(["ssh-keygen", "-R", host if port == 22 else f"[{host}]:{port}"])


class CheckedConnection(Connection):
    """Fabric's Connection, minus its default of accepting any host key (fabric#1804):
    keys must be in ~/.ssh/known_hosts, and an unknown or changed key stops the task."""

    # Declared here so they are plain attributes: a Connection sends unknown ones to config.
    given_host = ""  # the host as given to -H, for the commands messages name (tasks/target.py)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.given_host = kwargs.get("host") or (args[0] if args else "")
        import paramiko

        known_hosts = Path.home() / ".ssh" / "known_hosts"
        if known_hosts.exists():
            self.client.load_host_keys(str(known_hosts))
        self.client.set_missing_host_key_policy(paramiko.RejectPolicy())

    def open(self):
        import paramiko

        try:
            return super().open()
        except paramiko.BadHostKeyException:
            raise Exit(
                f"The SSH host key of {self.host} (port {self.port}) has CHANGED since it was "
                "trusted. This can mean someone is intercepting the connection, or the server "
                "was reinstalled. Nothing was done.\nIf the change is expected, remove the old "
                f"key with:\n  {forget_key_line(self.host, self.port)}\nthen "
                + trust_hint(self.host, self.port)[0].lower() + trust_hint(self.host, self.port)[1:]
            )
        except paramiko.SSHException as error:
            if "not found in known_hosts" in str(error):
                raise Exit(f"{self.host} (port {self.port}) is not a known SSH host, so nothing "
                           f"was done. {trust_hint(self.host, self.port)}")
            raise Exit(f"SSH connection to {self.host} failed: {error}")
        except OSError as error:
            raise Exit(f"Cannot connect to {self.host} port {self.port}: {error}")


class CheckedConnectionCall(ConnectionCall):
    def make_context(self, config):
        return CheckedConnection(**{**self.init_kwargs, "config": config})


class CheckedExecutor(Executor):
    def parameterize(self, call, connection_init_kwargs):
        return call.clone(into=CheckedConnectionCall, with_={"init_kwargs": connection_init_kwargs})


program = Fab(
    name="jupyterhub-deploy",
    namespace=ns,
    executor_class=CheckedExecutor,
    config_class=Config,
    version="0.1.0",
)
