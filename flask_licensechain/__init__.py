"""flask-licensechain: LicenseChain license server, in-app gate and middleware core."""

from __future__ import annotations

# Defined before the imports: submodules (the API's health endpoint) read it.
__version__ = "0.1.0"

from .decorators import (
    current_license,
    get_current_license,
    requires_any_feature,
    requires_feature,
    requires_license,
)
from .extension import LicenseChain, LicenseChainState, get_state

__all__ = [
    "LicenseChain",
    "LicenseChainState",
    "__version__",
    "current_license",
    "get_current_license",
    "get_state",
    "requires_any_feature",
    "requires_feature",
    "requires_license",
]
