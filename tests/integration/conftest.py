"""A real deployment for the integration tier: a copy of the project, run with `inv` under a
unique compose project and port, on the real Docker engine; everything it creates carries
the project label and is removed by that label afterwards."""
import uuid

import pytest

from deployment_support import (  # noqa: F401  (the names other test modules use)
    PROJECT_FILES, PROJECT_LABEL, REPO, USERLIST, Deployment, copy_project,
    engine_for_tests, free_port, remove_images,
)
from tasks.names import label_filter

ARTIFACTS = REPO / "tests" / "artifacts"


def remove_labelled(client, project: str) -> None:
    filters = label_filter(project)
    for container in client.containers.list(all=True, filters=filters):
        container.remove(force=True, v=False)
    for volume in client.volumes.list(filters=filters):
        volume.remove(force=True)
    for network in client.networks.list(filters=filters):
        network.remove()
    remove_images(client, project)


@pytest.fixture(scope="session")
def docker_client(tmp_path_factory):
    return engine_for_tests(tmp_path_factory.mktemp("images"), "integration tier")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, docker_client):
    root = copy_project(tmp_path_factory.mktemp("deployment"))
    project = f"jht{uuid.uuid4().hex[:8]}"
    # Shell variables win over .env, as with compose: the copy keeps the shipped .env.
    d = Deployment(root=root, project=project, port=free_port(),
                   env={"COMPOSE_PROJECT_NAME": project})
    d.env["HUB_PORT"] = str(d.port)
    yield d
    d.inv("down")
    remove_labelled(docker_client, project)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture(autouse=True)
def logs_on_failure(request, docker_client):
    """On a failed test only: every container of the deployment, its state and its log."""
    yield
    report = getattr(request.node, "report_call", None)
    if report is None or not report.failed or "deployment" not in request.fixturenames:
        return
    d = request.getfixturevalue("deployment")
    for container in d.labelled(docker_client, "containers"):
        container.reload()
        print(f"\n===== {container.name} ({container.status}, {container.attrs['State']})")
        print(container.logs(tail=300).decode(errors="replace"))
