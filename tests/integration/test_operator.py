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
