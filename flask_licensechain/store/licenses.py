"""Licenses and their bound devices (one aggregate: devices live and die with their license)."""

from __future__ import annotations

import builtins
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa

from .. import field_limits as limits
from ..core.errors import Conflict, InvalidRequest, NotFound
from . import validation as check
from .apps import EVERY_APP, AppScope
from .database import Database
from .fastpath import FastQuery
from .records import AppRecord, BindOutcome, DeviceRecord, LicenseRecord
from .revocations import Announce, RevocationRepository, narrowing
from .schema import apps, devices, licenses, to_utc

KEY_ALPHABET: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_KEY_GROUPS = 3
_KEY_GROUP_LENGTH = 6
_KEY_ATTEMPTS = 8
_MAX_KEY_INPUT = 64  # longer input cannot be a key: answer "no" without a query
STORED_STATUSES: Final = ("ACTIVE", "SUSPENDED", "REVOKED")
#: the members of ``LicenseRepository.stats``
STATS_FIELDS: Final = ("total", "active", "expired", "revoked", "suspended")
#: a known device's last_seen_at is refreshed at most this often (a write per verify is too dear)
LAST_SEEN_RESOLUTION: Final = timedelta(minutes=1)

# Prebuilt statements: built once, so SQLAlchemy's compiled cache always hits.
_APP_COLUMNS = [column.label(f"app__{column.name}") for column in apps.c]
_DEVICE_COLUMNS = [devices.c.hwuid, devices.c.bound_at, devices.c.last_seen_at]
_LICENSE_WITH_DEVICES = (
    sa.select(licenses, *_DEVICE_COLUMNS)
    .select_from(licenses.outerjoin(devices, devices.c.license_id == licenses.c.id))
    .order_by(devices.c.bound_at, devices.c.hwuid)
)
_BY_ID = _LICENSE_WITH_DEVICES.where(licenses.c.id == sa.bindparam("value"))
_BY_KEY = _LICENSE_WITH_DEVICES.where(licenses.c.key == sa.bindparam("value"))
# The verify hot path: license, app and devices in one indexed statement.
_FOR_VERIFICATION = (
    sa.select(licenses, *_APP_COLUMNS, *_DEVICE_COLUMNS)
    .select_from(
        licenses.join(apps, apps.c.id == licenses.c.app_id).outerjoin(
            devices, devices.c.license_id == licenses.c.id
        )
    )
    .where(licenses.c.key == sa.bindparam("key"))
    .order_by(devices.c.bound_at, devices.c.hwuid)
)
_DEVICES_OF = (
    sa.select(devices.c.license_id, *_DEVICE_COLUMNS)
    .where(devices.c.license_id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(devices.c.bound_at, devices.c.hwuid)
)
_LOCK_LICENSE = (
    sa.select(licenses.c.max_devices)
    .where(licenses.c.id == sa.bindparam("license_id"))
    .with_for_update()  # PostgreSQL row lock; SQLite is already serialized by BEGIN IMMEDIATE
)
# One consistent read of a license's slots: its max_devices and its devices.
_SLOTS_OF_LICENSE = (
    sa.select(licenses.c.max_devices, *_DEVICE_COLUMNS)
    .select_from(licenses.outerjoin(devices, devices.c.license_id == licenses.c.id))
    .where(licenses.c.id == sa.bindparam("license_id"))
    .order_by(devices.c.bound_at, devices.c.hwuid)
)
_DEVICES_OF_ONE = (
    sa.select(*_DEVICE_COLUMNS)
    .where(devices.c.license_id == sa.bindparam("license_id"))
    .order_by(devices.c.bound_at, devices.c.hwuid)
)


def new_license_key() -> str:
    """``LC-XXXXXX-XXXXXX-XXXXXX`` from a CSPRNG (about 93 bits)."""
    groups = (
        "".join(secrets.choice(KEY_ALPHABET) for _ in range(_KEY_GROUP_LENGTH))
        for _ in range(_KEY_GROUPS)
    )
    return "LC-" + "-".join(groups)


def normalize_key(value: object) -> str | None:
    """Keys are upper case; surrounding blanks from copy and paste are forgiven."""
    if not check.is_lookup(value) or len(value) > _MAX_KEY_INPUT:
        return None
    return value.strip().upper()


def _license_record(row: Mapping[Any, Any], bound: tuple[DeviceRecord, ...]) -> LicenseRecord:
    return LicenseRecord(
        id=row["id"],
        app_id=row["app_id"],
        key=row["key"],
        plan=row["plan"],
        status=row["status"],
        issued_to=row["issued_to"],
        issued_email=row["issued_email"],
        expires_at=row["expires_at"],
        features=tuple(row["features"]),
        metadata=row["meta"],
        max_devices=row["max_devices"],
        require_hwuid=row["require_hwuid"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        devices=bound,
    )


def _device(row: Mapping[Any, Any]) -> DeviceRecord:
    return DeviceRecord(
        hwuid=row["hwuid"], bound_at=row["bound_at"], last_seen_at=row["last_seen_at"]
    )


def _joined_devices(rows: Iterable[Mapping[Any, Any]]) -> tuple[DeviceRecord, ...]:
    """Devices of outer-joined rows (one row with a NULL hwuid when there are none)."""
    return tuple(_device(row) for row in rows if row["hwuid"] is not None)


def _prefixed_app(row: Mapping[Any, Any]) -> AppRecord:
    return AppRecord(
        id=row["app__id"],
        name=row["app__name"],
        slug=row["app__slug"],
        description=row["app__description"],
        tier=row["app__tier"],
        created_at=row["app__created_at"],
        updated_at=row["app__updated_at"],
        webhook_url=row["app__webhook_url"],
        allowed_origins=tuple(row["app__allowed_origins"] or ()),
        mode=row["app__mode"],
    )


def _status_filter(status: str, now: datetime) -> sa.ColumnElement[bool]:
    """EXPIRED is derived: stored ACTIVE with ``expires_at`` in the past."""
    wanted = status.upper() if isinstance(status, str) else None
    not_expired = sa.or_(licenses.c.expires_at.is_(None), licenses.c.expires_at > now)
    if wanted == "EXPIRED":
        return sa.and_(licenses.c.status == "ACTIVE", sa.not_(not_expired))
    if wanted == "ACTIVE":
        return sa.and_(licenses.c.status == "ACTIVE", not_expired)
    if wanted in STORED_STATUSES:
        return licenses.c.status == wanted
    raise InvalidRequest("status must be one of ACTIVE, SUSPENDED, REVOKED, EXPIRED.")


#: updatable field -> (column, validator)
_UPDATABLE: Final[Mapping[str, tuple[str, Callable[[Any], Any]]]] = {
    "plan": ("plan", lambda v: check.optional_text(v, "plan", max_length=limits.PLAN)),
    "issued_to": (
        "issued_to",
        lambda v: check.optional_text(v, "issued_to", max_length=limits.ISSUED_TO),
    ),
    "issued_email": (
        "issued_email",
        lambda v: check.optional_text(v, "issued_email", max_length=limits.EMAIL),
    ),
    "expires_at": ("expires_at", lambda v: check.optional_datetime(v, "expires_at")),
    "features": ("features", lambda v: list(check.features(v))),
    "metadata": ("meta", check.metadata),
    "max_devices": (
        "max_devices",
        lambda v: check.integer(v, "max_devices", minimum=1, maximum=limits.MAX_DEVICES),
    ),
    "require_hwuid": ("require_hwuid", lambda v: check.boolean(v, "require_hwuid")),
}


def _change_time() -> datetime:
    """The time of a change, read once the change holds the license's row: a verify that
    read the license before the change landed issued its token no later than this, so the
    change's mark (``before_mark``) voids it whatever the wait for the write lock was."""
    return datetime.now(UTC)


def _settled_without_write(
    bound: tuple[DeviceRecord, ...], max_devices: int, hwuid: str, now: datetime
) -> BindOutcome | None:
    """The answer a consistent read already gives, or ``None`` when only a write can tell."""
    for device in bound:
        if device.hwuid == hwuid:
            recent = now - device.last_seen_at < LAST_SEEN_RESOLUTION
            return BindOutcome("known", bound) if recent else None
    return BindOutcome("full", bound) if len(bound) >= max_devices else None


class _JoinedReader:
    """A hot-path query over ``parent LEFT JOIN devices``: the parent's columns are decoded
    from the first row only, the device columns from every row that has a device."""

    def __init__(self, statement: sa.Select[Any], db: Database, *, bypass: bool) -> None:
        self.query = FastQuery(statement, db, bypass=bypass)
        device_keys = [str(column.key) for column in _DEVICE_COLUMNS]
        parent_keys = [
            str(c.key) for c in statement.selected_columns if str(c.key) not in device_keys
        ]
        self.head = self.query.decoder(parent_keys)
        self._device = self.query.decoder(device_keys)
        self._hwuid = self.query.position("hwuid")

    def devices(self, rows: Iterable[Sequence[Any]]) -> tuple[DeviceRecord, ...]:
        return tuple(_device(self._device(row)) for row in rows if row[self._hwuid] is not None)


class LicenseRepository:
    """Licenses and their devices. A change that narrows a license or blocks it records the
    revocation in the same transaction (``store/revocations.py``), then hands the entries to
    ``announce`` (``Denylist.publish``) once committed.

    ``bypass_core``: the verify hot path's two reads (``find_for_verification`` and the
    slot check of ``bind_device``) run on the driver's cursor (``store/fastpath.py``, where
    the measured saving is given). ``False``, set before the first such read, runs them
    through SQLAlchemy's ``Connection``; the answers are the same.
    """

    bypass_core: bool = True

    def __init__(self, db: Database, revocations: RevocationRepository) -> None:
        self._db = db
        self._revocations = revocations
        self._verification: _JoinedReader | None = None
        self._slots: _JoinedReader | None = None

    def _verification_reader(self) -> _JoinedReader:
        # Compiled on first use, once the dialect has met the server.
        if self._verification is None:
            self._verification = _JoinedReader(_FOR_VERIFICATION, self._db, bypass=self.bypass_core)
        return self._verification

    def _slots_reader(self) -> _JoinedReader:
        if self._slots is None:
            self._slots = _JoinedReader(_SLOTS_OF_LICENSE, self._db, bypass=self.bypass_core)
        return self._slots

    def create(
        self,
        app_id: str,
        *,
        plan: str | None = None,
        issued_to: str | None = None,
        issued_email: str | None = None,
        expires_at: datetime | None = None,
        features: Iterable[str] = (),
        metadata: Mapping[str, Any] | None = None,
        max_devices: int = 1,
        require_hwuid: bool = False,
    ) -> LicenseRecord:
        given = {
            "plan": plan,
            "issued_to": issued_to,
            "issued_email": issued_email,
            "expires_at": expires_at,
            "features": features,
            "metadata": metadata,
            "max_devices": max_devices,
            "require_hwuid": require_hwuid,
        }
        values = {column: validate(given[name]) for name, (column, validate) in _UPDATABLE.items()}
        if not check.is_lookup(app_id):
            raise NotFound("App not found.")
        now = datetime.now(UTC)
        with self._db.write() as conn:
            if conn.scalar(sa.select(apps.c.id).where(apps.c.id == app_id)) is None:
                raise NotFound("App not found.")
            key = self._unused_key(conn)
            row = {
                **values,
                "id": check.new_id("lic"),
                "app_id": app_id,
                "key": key,
                "status": "ACTIVE",
                "created_at": now,
                "updated_at": now,
            }
            conn.execute(sa.insert(licenses).values(**row))
        return _license_record(row, ())

    @staticmethod
    def _unused_key(conn: sa.Connection) -> str:
        # A clash in a 36**18 space is all but impossible; the unique index stays the guard.
        for _ in range(_KEY_ATTEMPTS):
            key = new_license_key()
            if conn.scalar(sa.select(licenses.c.id).where(licenses.c.key == key)) is None:
                return key
        raise Conflict("Could not generate a unique license key.")

    def get(self, license_id: str) -> LicenseRecord | None:
        if not check.is_lookup(license_id):
            return None
        return self._one(_BY_ID, license_id)

    def get_by_key(self, key: str) -> LicenseRecord | None:
        normalized = normalize_key(key)
        return None if normalized is None else self._one(_BY_KEY, normalized)

    def get_by_id_or_key(self, value: str) -> LicenseRecord | None:
        if isinstance(value, str) and value.startswith("lic_"):
            return self.get(value)
        return self.get_by_key(value)

    def _one(self, statement: sa.Select[Any], value: str) -> LicenseRecord | None:
        with self._db.single() as conn:
            rows = conn.execute(statement, {"value": value}).mappings().all()
        return _license_record(rows[0], _joined_devices(rows)) if rows else None

    def find_for_verification(self, key: str) -> tuple[LicenseRecord, AppRecord] | None:
        """The license, its app and its devices in one statement (verify's hot path)."""
        normalized = normalize_key(key)
        if normalized is None:
            return None
        reader = self._verification_reader()
        rows = reader.query.rows({"key": normalized})
        if not rows:
            return None
        head = reader.head(rows[0])
        return _license_record(head, reader.devices(rows)), _prefixed_app(head)

    def ids_of_app(self, app_id: str) -> builtins.list[str]:
        """The ids of every license of ``app_id`` (in the caller's unit, when there is one)."""
        statement = sa.select(licenses.c.id).where(licenses.c.app_id == app_id)
        with self._db.read() as conn:
            return [row.id for row in conn.execute(statement)]

    def list(
        self,
        *,
        app_id: str | None = None,
        status: str | None = None,
        page: int = 1,
        limit: int = limits.DEFAULT_PAGE_SIZE,
        now: datetime | None = None,
        email: str | None = None,
        scope: AppScope = EVERY_APP,
    ) -> tuple[builtins.list[LicenseRecord], int]:
        """One page of licenses, newest first, and the total that match: of ``app_id``,
        with the (effective) ``status``, issued to ``email`` (compared without case)."""
        page = check.integer(page, "page", minimum=1, maximum=limits.PAGE)
        limit = check.integer(limit, "limit", minimum=1, maximum=limits.PAGE_SIZE)
        now = to_utc(now) if now is not None else datetime.now(UTC)
        conditions: builtins.list[sa.ColumnElement[bool]] = [scope.clause(licenses.c.app_id)]
        if app_id is not None:
            conditions.append(licenses.c.app_id == check.text(app_id, "app_id"))
        if status is not None:
            conditions.append(_status_filter(status, now))
        if email is not None:
            wanted = check.text(email, "email", max_length=limits.EMAIL).lower()
            conditions.append(sa.func.lower(licenses.c.issued_email) == wanted)
        count = sa.select(sa.func.count()).select_from(licenses).where(*conditions)
        page_rows = (
            sa.select(licenses)
            .where(*conditions)
            .order_by(licenses.c.created_at.desc(), licenses.c.id.desc())
            .limit(limit)
            .offset((page - 1) * limit)
        )
        with self._db.read() as conn:  # one snapshot: the total matches the page
            total = int(conn.scalar(count) or 0)
            rows = conn.execute(page_rows).all()
            by_license: dict[str, builtins.list[DeviceRecord]] = {row.id: [] for row in rows}
            if rows:
                device_rows = conn.execute(_DEVICES_OF, {"ids": list(by_license)}).mappings()
                for device_row in device_rows:
                    by_license[device_row["license_id"]].append(_device(device_row))
        records = [_license_record(row._mapping, tuple(by_license[row.id])) for row in rows]
        return records, total

    def stats(
        self,
        *,
        app_id: str | None = None,
        now: datetime | None = None,
        scope: AppScope = EVERY_APP,
    ) -> dict[str, int]:
        """``{"total", "active", "expired", "revoked", "suspended"}``: license counts by
        effective status (EXPIRED derived from ``expires_at``), of one app when given, of
        the apps in ``scope``."""
        now = to_utc(now) if now is not None else datetime.now(UTC)
        expired = sa.and_(licenses.c.expires_at.is_not(None), licenses.c.expires_at <= now)

        def count_of(condition: sa.ColumnElement[bool]) -> Any:
            return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)

        active = licenses.c.status == "ACTIVE"
        statement = (
            sa.select(
                sa.func.count().label("total"),
                count_of(sa.and_(active, sa.not_(expired))).label("active"),
                count_of(sa.and_(active, expired)).label("expired"),
                count_of(licenses.c.status == "REVOKED").label("revoked"),
                count_of(licenses.c.status == "SUSPENDED").label("suspended"),
            )
            .select_from(licenses)
            .where(scope.clause(licenses.c.app_id))
        )
        if app_id is not None:
            statement = statement.where(licenses.c.app_id == check.text(app_id, "app_id"))
        with self._db.single() as conn:
            row = conn.execute(statement).one()
        return {name: int(row._mapping[name]) for name in STATS_FIELDS}

    def update(
        self, license_id: str, *, announce: Announce | None = None, **changes: Any
    ) -> LicenseRecord | None:
        unknown = sorted(set(changes) - set(_UPDATABLE))
        if unknown:
            raise InvalidRequest(f"Unknown license field(s): {', '.join(unknown)}.")
        values = {
            _UPDATABLE[name][0]: _UPDATABLE[name][1](value) for name, value in changes.items()
        }
        return self._change(license_id, values, announce)

    def set_status(
        self, license_id: str, status: str, *, announce: Announce | None = None
    ) -> LicenseRecord | None:
        if status not in STORED_STATUSES:
            raise InvalidRequest("status must be one of ACTIVE, SUSPENDED, REVOKED.")
        return self._change(license_id, {"status": status}, announce)

    def _change(
        self, license_id: str, values: dict[str, Any], announce: Announce | None
    ) -> LicenseRecord | None:
        if not check.is_lookup(license_id):
            return None
        with self._db.write() as conn:
            before = self._locked(conn, license_id)
            if before is None:
                return None
            now = _change_time()
            values["updated_at"] = now
            conn.execute(sa.update(licenses).where(licenses.c.id == license_id).values(**values))
            rows = conn.execute(_BY_ID, {"value": license_id}).mappings().all()
            after = _license_record(rows[0], _joined_devices(rows))
            entries = narrowing(before, after, now.timestamp())
            self._revocations.record(conn, entries, now.timestamp())
        if entries and announce is not None:
            announce(entries)
        return after

    def locked(self, license_id: str) -> LicenseRecord | None:
        """The license as it is now, its row locked until the transaction ends (inside a
        unit of work, ``store/changes.py``: until the unit ends), so that a service reads
        the state its change starts from. ``None`` when there is no such license."""
        if not check.is_lookup(license_id):
            return None
        with self._db.write() as conn:
            return self._locked(conn, license_id)

    @staticmethod
    def _locked(conn: sa.Connection, license_id: str) -> LicenseRecord | None:
        """The license as it is before a change, its row locked for the transaction."""
        if conn.scalar(_LOCK_LICENSE, {"license_id": license_id}) is None:
            return None
        rows = conn.execute(_BY_ID, {"value": license_id}).mappings().all()
        return _license_record(rows[0], _joined_devices(rows))

    def bind_device(self, license_id: str, hwuid: str, now: datetime) -> BindOutcome:
        """Bind ``hwuid`` if it is new and a slot is free. Atomic across processes.

        ``known`` refreshes ``last_seen_at`` at most once per ``LAST_SEEN_RESOLUTION``. A
        known-and-recent or a full answer comes from one consistent read without taking the
        write lock, so repeated verifies (or a flood of foreign hwuids) cost no write.
        """
        settled = self.settled_binding(license_id, hwuid, now)
        return settled if settled is not None else self.bind_locked(license_id, hwuid, now)

    def settled_binding(self, license_id: str, hwuid: str, now: datetime) -> BindOutcome | None:
        """The first half of ``bind_device``: the answer one consistent read already gives
        (``known`` and recent, or ``full``), or ``None`` when only ``bind_locked`` can tell.
        Raises ``NotFound``, ``InvalidRequest`` for a bad hwuid."""
        hwuid = check.required_text(hwuid, "hwuid", max_length=limits.HWUID)
        now = to_utc(now)
        if not check.is_lookup(license_id):
            raise NotFound("License not found.")
        reader = self._slots_reader()
        rows = reader.query.rows({"license_id": license_id})
        if not rows:
            raise NotFound("License not found.")
        max_devices = reader.head(rows[0])["max_devices"]
        return _settled_without_write(reader.devices(rows), max_devices, hwuid, now)

    def bind_locked(self, license_id: str, hwuid: str, now: datetime) -> BindOutcome:
        """The second half of ``bind_device``: under the license's row lock, refresh a known
        device, refuse when full, or bind (``bound``). Raises ``NotFound``."""
        hwuid = check.required_text(hwuid, "hwuid", max_length=limits.HWUID)
        return self._bind_locked(license_id, hwuid, to_utc(now))

    def _bind_locked(self, license_id: str, hwuid: str, now: datetime) -> BindOutcome:
        with self._db.write() as conn:
            max_devices = conn.scalar(_LOCK_LICENSE, {"license_id": license_id})
            if max_devices is None:
                raise NotFound("License not found.")
            rows = conn.execute(_DEVICES_OF_ONE, {"license_id": license_id}).mappings()
            bound = [_device(row) for row in rows]
            known = next((i for i, device in enumerate(bound) if device.hwuid == hwuid), None)
            if known is not None:
                conn.execute(
                    sa.update(devices)
                    .where(devices.c.license_id == license_id, devices.c.hwuid == hwuid)
                    .values(last_seen_at=now)
                )
                previous = bound[known]
                bound[known] = DeviceRecord(hwuid, previous.bound_at, now)
                return BindOutcome("known", tuple(bound))
            if len(bound) >= max_devices:
                return BindOutcome("full", tuple(bound))
            conn.execute(
                sa.insert(devices).values(
                    license_id=license_id, hwuid=hwuid, bound_at=now, last_seen_at=now
                )
            )
            bound.append(DeviceRecord(hwuid, now, now))
            return BindOutcome("bound", tuple(bound))

    def release_device(
        self, license_id: str, hwuid: str, *, announce: Announce | None = None
    ) -> bool:
        """Unbind a device. Tokens issued before are void (a token may carry the binding)."""
        if not (check.is_lookup(license_id) and check.is_lookup(hwuid)):
            return False
        with self._db.write() as conn:
            before = self._locked(conn, license_id)
            if before is None:
                return False
            now = _change_time()
            result = conn.execute(
                sa.delete(devices).where(
                    devices.c.license_id == license_id, devices.c.hwuid == hwuid
                )
            )
            if result.rowcount == 0:
                return False
            conn.execute(
                sa.update(licenses).where(licenses.c.id == license_id).values(updated_at=now)
            )
            entries = narrowing(before, before, now.timestamp(), released=True)
            self._revocations.record(conn, entries, now.timestamp())
        if announce is not None:
            announce(entries)
        return True
