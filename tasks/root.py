"""The root collection: what `inv --list` shows."""
from invoke import Collection

from tasks import backup, lifecycle

ns = Collection(
    lifecycle.build,
    lifecycle.up,
    lifecycle.down,
    lifecycle.status,
    lifecycle.logs,
    lifecycle.cert,
    lifecycle.notebook_image,
    lifecycle.deploy,
    backup.backup,
    backup.restore,
)
ns.configure({"backup": backup.DEFAULTS})
