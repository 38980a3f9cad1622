"""`python -m tasks` (tasks/program.py): what it tells the operator about SSH host keys."""
import shlex

import pytest

from tasks.program import forget_key_line, lost_message, short_command, trust_hint


@pytest.mark.parametrize("host, port, argument", [
    ("127.0.0.1", 2222, "[127.0.0.1]:2222"),
    ("hub.example.org", 22, "hub.example.org"),
])
def test_forget_key_line_splits_back_into_the_known_hosts_name(host, port, argument):
    assert shlex.split(forget_key_line(host, port)) == ["ssh-keygen", "-R", argument]


def test_forget_key_line_quotes_the_bracketed_form():
    assert forget_key_line("::1", 2200) == "ssh-keygen -R '[::1]:2200'"


def test_trust_hint_quotes_the_host():
    line = next(line for line in trust_hint("a b", 2200).splitlines() if "ssh-keyscan" in line)
    assert shlex.split(line.split(">>")[0]) == ["ssh-keyscan", "-p", "2200", "a b"]


def test_short_command_keeps_what_compose_is_asked():
    command = shlex.join(["env", "A=1", "B=x y", "docker", "compose", "--project-directory", "my dir",
                          "--file", "my dir/docker-compose.yml", "--profile", "images",
                          "build", "notebook"])
    assert short_command(command) == "docker compose build notebook"


def test_short_command_leaves_a_shell_line_as_written():
    assert short_command("cat d/.mark 2>/dev/null || true") == "cat d/.mark 2>/dev/null || true"


def test_lost_message_is_one_line_with_the_command_to_run_again():
    line = lost_message("admin@hub", "deploy", "uploading the project files", ["-H", "admin@hub", "deploy"])
    assert line == ("The SSH connection to admin@hub was lost during `deploy`, while uploading the "
                    "project files. Run `python -m tasks -H admin@hub deploy` again to finish it.")
