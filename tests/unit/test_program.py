"""`python -m tasks` (tasks/program.py): what it tells the operator about SSH host keys."""
import shlex

import pytest

from tasks.program import forget_key_line, trust_hint


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

