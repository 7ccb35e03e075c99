"""The variable that switches prometheus-client to multiprocess mode, kept apart so the
command can set it before ``prometheus_client`` is imported anywhere."""

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
