"""flask-licensechain: LicenseChain license server, in-app gate and middleware core."""

from __future__ import annotations

from .extension import LicenseChain, LicenseChainState, get_state

__version__ = "0.1.0"

__all__ = ["LicenseChain", "LicenseChainState", "__version__", "get_state"]
