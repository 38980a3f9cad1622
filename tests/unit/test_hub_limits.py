"""The hub's share of the host per user server, its hardening, and the idle culler, as
hub/jupyterhub_config.py applies them (a traitlets Config, as JupyterHub loads it), and the
server-side extension that makes a busy kernel count as activity."""
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from dockerspawner import DockerSpawner

from tasks.limits import Limits, hub_env
from tasks.names import user_volume_template

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "notebook" / "jupyterhub_deploy"))
import jupyterhub_deploy_activity as activity  # noqa: E402  (copied into the user image)

GIB = 1 << 30
ENV = {
    "COMPOSE_PROJECT_NAME": "proj", "DOCKER_NETWORK_NAME": "proj-network",
    "DOCKER_NOTEBOOK_IMAGE": "img:1", "HUB_AUTHENTICATOR": "native",
    "JUPYTERHUB_ADMINS": "ann", "JUPYTERHUB_USERS": "bob",
    "USER_VOLUME_TEMPLATE": user_volume_template("proj"),
    "HUB_SECRETS_DIR": None, "GITHUB_URL": None, "GITHUB_ALLOWED_ORGS": None,
}


@pytest.fixture
def load(hub_config, tmp_path):
    def apply(limits: Limits, **changes):
        return hub_config({**ENV, "HUB_SECRETS_DIR": str(tmp_path), **hub_env(limits), **changes})
    return apply


def test_every_server_gets_the_limits_and_no_privileges(load):
    c = load(Limits(mem_bytes=2 * GIB, cpus=1.5, pids=512))
    assert c.DockerSpawner.mem_limit == 2 * GIB
    assert c.DockerSpawner.cpu_limit == 1.5
    assert c.DockerSpawner.extra_host_config == {
        "cap_drop": ["ALL"], "security_opt": ["no-new-privileges"],
        "memswap_limit": 2 * GIB, "pids_limit": 512,
    }


def test_a_limit_at_0_is_off_and_the_hardening_stays(load):
    c = load(Limits(mem_bytes=0, cpus=0, pids=0))
    assert "mem_limit" not in c.DockerSpawner and "cpu_limit" not in c.DockerSpawner
    assert c.DockerSpawner.extra_host_config == {"cap_drop": ["ALL"],
                                                  "security_opt": ["no-new-privileges"]}


def test_dockerspawner_turns_the_config_into_these_container_settings(load):
    """What DockerSpawner 14 makes of the config: the host config the engine gets."""
    c = load(Limits(mem_bytes=GIB, cpus=0.5, pids=256))
    spawner = DockerSpawner(config=c, user=type("U", (), {"name": "bob", "url": "/user/bob/"})())
    assert spawner.mem_limit == GIB and spawner.cpu_limit == 0.5
    assert spawner.extra_host_config["pids_limit"] == 256


def test_the_hub_refuses_to_start_without_the_limits_inv_sets(hub_config):
    with pytest.raises(SystemExit, match="start the hub with `inv up`"):
        hub_config({**ENV, **{key: None for key in hub_env(Limits())}})


def test_the_culler_runs_as_a_service_with_only_the_scopes_it_needs(load):
    c = load(Limits(cull_timeout_s=3600))
    culler = next(s for s in c.JupyterHub.services if s["name"] == "idle-culler")
    assert culler["command"][1:] == ["-m", "jupyterhub_idle_culler", "--timeout=3600",
                                     "--cull-every=300"]
    role = next(r for r in c.JupyterHub.load_roles if r["name"] == "idle-culler")
    assert role == {"name": "idle-culler", "services": ["idle-culler"],
                    "scopes": ["list:users", "read:users:activity", "read:servers",
                               "delete:servers"]}
    assert "api_token" not in culler  # the hub makes and hands over its token itself


def test_a_short_timeout_makes_servers_and_the_proxy_report_activity_sooner(load):
    c = load(Limits(cull_timeout_s=60))
    assert c.JupyterHub.last_activity_interval == 15
    assert c.Spawner.environment == {"JUPYTERHUB_ACTIVITY_INTERVAL": "15"}
    culler = next(s for s in c.JupyterHub.services if s["name"] == "idle-culler")
    assert "--cull-every=15" in culler["command"]


def test_a_maximum_age_alone_never_culls_for_idleness(load):
    c = load(Limits(cull_timeout_s=0, cull_max_age_s=8 * 3600))
    command = next(s for s in c.JupyterHub.services if s["name"] == "idle-culler")["command"]
    assert f"--timeout={10 * 365 * 86400}" in command and "--max-age=28800" in command


def test_culling_off_runs_no_culler(load):
    c = load(Limits(cull_timeout_s=0, cull_max_age_s=0))
    assert all(s["name"] != "idle-culler" for s in c.JupyterHub.get("services", []))
    assert "last_activity_interval" not in c.JupyterHub


class Kernels:
    """What the extension uses of jupyter_server's kernel manager."""

    def __init__(self, *states):
        self.kernels = {str(i): type("K", (), {"execution_state": s})() for i, s in enumerate(states)}

    def list_kernel_ids(self):
        return list(self.kernels)

    def get_kernel(self, kernel_id):
        return self.kernels[kernel_id]


def test_a_busy_kernel_is_recorded_as_activity_and_an_idle_one_is_not():
    now = datetime(2026, 12, 1, tzinfo=timezone.utc)
    settings = {}
    assert activity.mark_if_busy(settings, Kernels("idle", "idle"), now) is False
    assert settings == {}
    assert activity.mark_if_busy(settings, Kernels("idle", "busy"), now) is True
    # jupyter_server's last_activity() counts every setting whose name ends so.
    assert settings == {"busy_kernels_last_activity": now}
    assert activity.SETTING.endswith("_last_activity")
