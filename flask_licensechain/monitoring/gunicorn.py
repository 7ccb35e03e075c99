"""gunicorn server hooks for prometheus-client's multiprocess mode.

In the gunicorn config file (``gunicorn -c gunicorn.conf.py``)::

    from flask_licensechain.monitoring.gunicorn import child_exit  # noqa: F401

so that the gauges of a worker that exited stop counting (``live*`` modes). Set
``PROMETHEUS_MULTIPROC_DIR`` to an empty directory before gunicorn starts.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import multiprocess


def child_exit(server: Any, worker: Any) -> None:
    """gunicorn's ``child_exit`` hook: drop the dead worker's live gauges."""
    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
