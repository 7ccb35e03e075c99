"""URL converters of the API's routes: a license reference, and a hardware id."""

from __future__ import annotations

from typing import Final

from werkzeug.routing import BaseConverter

#: the fixed paths beside /licenses/<id or key>: never taken for a license reference, so
#: a wrong method on them answers 405, not "license not found"
RESERVED_LICENSE_PATHS: Final = (
    "verify",
    "validate-hardware",
    "jwks",
    "introspect",
    "revoke-token",
    "stats",
)
#: the converters' names in the app's URL map (prefixed: the map is the host app's too)
LICENSE_CONVERTER: Final = "lc_license"
HWUID_CONVERTER: Final = "lc_hwuid"


class LicenseRefConverter(BaseConverter):
    """A license id or key in a URL path: one segment, not one of the fixed paths."""

    regex = "(?!(?:" + "|".join(RESERVED_LICENSE_PATHS) + ")$)[^/]+"


class HwuidConverter(BaseConverter):
    """A hardware id in a URL path: the rest of the path, slashes and all.

    Verify accepts any hardware id up to 256 characters, ``/`` included, so the release
    route must take every one of them; the rule also turns off slash merging. A client that
    normalizes dot segments (``.``, ``..``) cannot send those in a path: the query form
    ``DELETE .../devices?hwuid=`` takes any hardware id.
    """

    regex = r"[\s\S]+"
    part_isolating = False


CONVERTERS: Final = {LICENSE_CONVERTER: LicenseRefConverter, HWUID_CONVERTER: HwuidConverter}
