"""What a new operator runs into, on the real engine: secrets others can read, two
operations at once, a refused run, a user with no server, a removed name's password, the
base image, and two deployments on one engine.

The tests share one deployment and run in file order; each leaves it up and unchanged.
"""
import os
import signal
import subprocess
import sys
import time

import pytest

from deployment_support import engine_state

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def up(deployment):
    deployment.inv_ok("build", "up")
    return deployment


def record_of(d):
    return (d.root / ".state" / "applied.json").read_bytes()


# --- a user with no server ------------------------------------------------------------------------

def test_logs_of_a_user_without_a_server_fails_with_one_line(up):
    result = up.inv("logs", "--user", "alice")
    assert result.returncode == 1, result.output
    assert result.output.strip().splitlines() == [
        f"alice has no server in {up.project}: it starts when they log in, or from the "
        "admin panel; then run this again."]


# --- a refused run keeps the record ---------------------------------------------------------------

def test_a_refused_up_leaves_the_record_of_the_last_up_as_it_was(up, docker_client):
    before, record = engine_state(docker_client, up), record_of(up)
    result = up.inv("up", env={"DOCKER_NOTEBOOK_IMAGE": "jht-no-such-image:1"})
    assert result.returncode == 1, result.output
    assert "jht-no-such-image:1 is not on this host" in result.output, result.output
    assert record_of(up) == record
    assert engine_state(docker_client, up) == before
    assert "nothing changed since the last `inv up`" in up.inv_ok("up").output
