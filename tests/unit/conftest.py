"""What several unit test files share."""
from pathlib import Path

import pytest
from traitlets.config.loader import PyFileConfigLoader

HUB_DIR = Path(__file__).resolve().parents[2] / "hub"


@pytest.fixture
def hub_config(monkeypatch):
    """Apply hub/jupyterhub_config.py as JupyterHub loads it, with these environment
    variables (None unsets one, so the shell running the tests cannot change it)."""
    def load(environment: dict):
        for key, value in environment.items():
            if value is None:
                monkeypatch.delenv(key, raising=False)
            else:
                monkeypatch.setenv(key, value)
        return PyFileConfigLoader("jupyterhub_config.py", path=str(HUB_DIR)).load_config()

    return load
