"""flask-licensechain: LicenseChain license server, in-app gate and middleware core."""

from __future__ import annotations

from .decorators import (
    current_license,
    get_current_license,
    requires_any_feature,
    requires_feature,
    requires_license,
)
from .extension import LicenseChain
from .state import IssuerState, LicenseChainState, get_issuer_state, get_state
from .version import __version__

__all__ = [
    "IssuerState",
    "LicenseChain",
    "LicenseChainState",
    "__version__",
    "current_license",
    "get_current_license",
    "get_issuer_state",
    "get_state",
    "requires_any_feature",
    "requires_feature",
    "requires_license",
]
