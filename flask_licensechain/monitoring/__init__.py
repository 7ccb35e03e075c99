"""Monitoring of the license server: security signals, Prometheus metrics, structured access
logs and security headers.

- ``signals``: hardware-id churn, key sharing and failed-verification spikes per license,
  reported as ``security.anomaly`` changes (``windows``: where they are counted);
- ``metrics``: the Prometheus metrics, correct under several gunicorn workers;
- ``access_log``: one JSON line per request, opt-in;
- ``headers``: the security headers of every response;
- ``setup``: ``install_monitoring(app, state)``, called once by ``init_app``;
- ``gunicorn``: the server hook of prometheus-client's multiprocess mode.

This package's ``__init__`` imports nothing, so that the API's views may import ``signals``
while ``setup`` imports the API.
"""
