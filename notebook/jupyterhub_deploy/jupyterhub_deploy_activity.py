"""Count a running computation as activity, so that the idle culler never stops it.

jupyter_server takes a server's last activity from API requests, terminals and kernels'
IOPub messages. A cell that computes for an hour without printing sends none of those, and
the hub's idle culler would stop the server under it (seen: a silent `time.sleep(400)` was
culled after 79 s with a 60 s timeout). While any kernel is busy, this extension records
"now" every `INTERVAL` seconds in a setting whose name ends with `_last_activity`:
`ServerWebApplication.last_activity()` counts every such setting, and
jupyterhub-singleuser reports that time to the hub.
"""
from datetime import datetime, timezone

from tornado.ioloop import PeriodicCallback

SETTING = "busy_kernels_last_activity"
INTERVAL = 10  # seconds; the hub hears of activity at most every 10 s anyway


def _jupyter_server_extension_points():
    return [{"module": __name__}]


def any_kernel_busy(kernel_manager) -> bool:
    """Whether a kernel of this server is running code now."""
    return any(
        getattr(kernel_manager.get_kernel(kernel_id), "execution_state", None) == "busy"
        for kernel_id in kernel_manager.list_kernel_ids()
    )


def mark_if_busy(settings: dict, kernel_manager, now=None) -> bool:
    if any_kernel_busy(kernel_manager):
        settings[SETTING] = now or datetime.now(timezone.utc)
        return True
    return False


def _load_jupyter_server_extension(serverapp):
    settings, kernels = serverapp.web_app.settings, serverapp.kernel_manager
    PeriodicCallback(lambda: mark_if_busy(settings, kernels), INTERVAL * 1000).start()
