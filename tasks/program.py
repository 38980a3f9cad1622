"""`python -m tasks`: the same tasks as `inv`, plus Fabric's `-H host` to run them on a
remote host over SSH. Invoke's own `inv` has no -H, and Fabric's `fab` looks for a
fabfile; this program is Fabric's with our collection and host-key checking added."""
import logging
import shlex
import sys
from pathlib import Path

from fabric import Config, Connection, Executor
from fabric.main import Fab
from fabric.tasks import ConnectionCall
from invoke.exceptions import Exit

from tasks.root import ns

# paramiko logs what the tasks report themselves (a refused channel to the hub's port, a
# dropped connection) at ERROR; with no handler of its own, Python would print those lines
# between the task's own. The program says what happened, in its words.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


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
    doing = ""  # the step under way on the host (tasks/target.py note_step), for lost_message
    opened = False  # whether it was ever connected: only then can it be lost

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
            result = super().open()
            self.opened = True
            return result
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

    def run(self, command, **kwargs):
        self.doing = f"running `{short_command(command)}`"
        return super().run(command, **kwargs)

    def lost(self) -> bool:
        """Whether the connection was up and is gone now. The transport may not have seen
        the end yet when a channel has: then one new channel, or its failure, tells."""
        import paramiko

        transport = self.client.get_transport()
        if not self.opened or transport is None:
            return False
        if transport.is_active():
            try:
                transport.open_session(timeout=10).close()
                return False
            except paramiko.ChannelException:  # refused (too many sessions?): the host answered
                return False
            except Exception:  # noqa: BLE001  any other failure: the connection does not answer
                pass
        return True


def short_command(command: str) -> str:
    """A command as the operator knows it: without the variables and the folder options
    every compose command carries (tasks/target.py compose_argv)."""
    try:
        words = shlex.split(command)
    except ValueError:
        return command
    if words[:1] != ["env"] and words[:2] != ["docker", "compose"]:
        return command  # as the task wrote it: shlex.join would quote its shell operators
    if words[:1] == ["env"]:
        words = words[1:]
        while words and "=" in words[0]:
            words = words[1:]
    if words[:2] == ["docker", "compose"]:
        rest, words = words[2:], words[:2]
        while rest:
            if rest[0] in ("--project-directory", "--file", "--profile"):
                rest = rest[2:]
            else:
                words.append(rest.pop(0))
    return shlex.join(words)


def lost_message(host: str, task: str, doing: str, argv: list) -> str:
    """The one line for an SSH connection that dropped mid-task: where, and what finishes it
    (every task is idempotent: the same command again takes it from where it stopped)."""
    again = shlex.join(["python", "-m", "tasks", *argv])
    return (f"The SSH connection to {host} was lost during `{task}`"
            f"{', while ' + doing if doing else ''}. Run `{again}` again to finish it.")


class CheckedConnectionCall(ConnectionCall):
    def __init__(self, *args, **kwargs):
        self.executor = kwargs.pop("executor")
        super().__init__(*args, **kwargs)

    def make_context(self, config):
        connection = CheckedConnection(**{**self.init_kwargs, "config": config})
        self.executor.running = (self.called_as or self.task.name, connection)
        return connection


class CheckedExecutor(Executor):
    running = None  # (task name, its connection) of the task under way

    def parameterize(self, call, connection_init_kwargs):
        return call.clone(into=CheckedConnectionCall,
                          with_={"init_kwargs": connection_init_kwargs, "executor": self})

    def execute(self, *args, **kwargs):
        """Run the tasks; a failure that comes of a lost SSH connection is said as such, in
        one line (paramiko and invoke would end with status 255 and say nothing)."""
        try:
            return super().execute(*args, **kwargs)
        except BaseException:
            if self.running is None:
                raise
            task, connection = self.running
            if not connection.lost():
                raise
            raise Exit(lost_message(connection.given_host, task, connection.doing, sys.argv[1:]),
                       code=255) from None


program = Fab(
    name="jupyterhub-deploy",
    namespace=ns,
    executor_class=CheckedExecutor,
    config_class=Config,
    version="0.1.0",
)
