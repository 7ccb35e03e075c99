"""The distribution's version, in a module of its own so that any module can read it."""

from __future__ import annotations

from typing import Final

__version__: Final = "0.1.0"
