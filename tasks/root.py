"""The root collection: what `inv --list` shows."""
from invoke import Collection

from tasks import lifecycle, status, swarm, upgrade
from tasks.backup import commands as backup
from tasks.target import CONFIG_DEFAULTS

ns = Collection(
    lifecycle.build,
    lifecycle.up,
    lifecycle.down,
    status.status,
    status.logs,
    lifecycle.cert,
    lifecycle.notebook_image,
    lifecycle.deploy,
    upgrade.upgrade,
    backup.backup,
    backup.restore,
    swarm.swarm_init,
    swarm.swarm_join,
    swarm.swarm_drain,
)
ns.configure({"backup": backup.DEFAULTS})
# Where the project is here and where a remote host keeps its copy: declared, so that
# invoke's usual overrides reach them (INVOKE_PROJECT_DIR, a config file, -f).
ns.configure(CONFIG_DEFAULTS)
