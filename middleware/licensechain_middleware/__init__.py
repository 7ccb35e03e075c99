"""LicenseChain's framework-free license gate: WSGI and ASGI middleware.

It imports only ``flask_licensechain.core`` (never Flask) and verifies tokens with
the same core ``TokenVerifier`` as ``@requires_feature``. Public API:

* ``LicenseGate(wsgi_app, config)`` and ``LicenseGateASGI(asgi_app, config)``;
* ``GateConfig`` (``GateConfig.from_mapping(dict)`` for TOML), ``Rule``, ``ConfigError``;
* ``GateResult``, found in ``environ``/``scope["licensechain.result"]``, with the
  verified ``LicenseClaims`` in ``licensechain.claims``.
"""

from __future__ import annotations

from .asgi import LicenseGateASGI
from .config import ConfigError, GateConfig, Rule
from .engine import GateEngine, GateResult
from .wsgi import CLAIMS_KEY, RESULT_KEY, LicenseGate

__all__ = [
    "CLAIMS_KEY",
    "RESULT_KEY",
    "ConfigError",
    "GateConfig",
    "GateEngine",
    "GateResult",
    "LicenseGate",
    "LicenseGateASGI",
    "Rule",
]
