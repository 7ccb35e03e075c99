"""The business pages' forms (flask-wtf). Every field has a label; the POST forms carry
and check the CSRF token; the search and filter forms are GET forms without one.

The limits are the API's (``field_limits``); the services check every value again, so a
form's validators only give a nicer message sooner.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    IntegerField,
    SelectField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length, NumberRange, Optional, ValidationError

from ... import field_limits as limits
from ...api.webhooks import DESCRIPTION as WEBHOOK_DESCRIPTION
from ...core.contract import LICENSE_STATUSES, SELLER_TIERS
from ..roles import ROLES


class GetForm(FlaskForm):
    """A search or filter form: read from the query string, no CSRF token (it changes
    nothing)."""

    class Meta:
        csrf = False


def split_list(text: str | None) -> list[str]:
    """``"a, b\\nc"`` -> ``["a", "b", "c"]`` (commas or new lines; blanks dropped)."""
    parts = (text or "").replace("\n", ",").split(",")
    return [part.strip() for part in parts if part.strip()]


def parse_when(text: str | None) -> datetime | None:
    """A date (``YYYY-MM-DD``, end of that day UTC) or an ISO 8601 date-time (naive: UTC);
    ``None`` for an empty value. ``ValueError`` otherwise."""
    value = (text or "").strip()
    if not value:
        return None
    if len(value) == 10:
        day = datetime.fromisoformat(value)
        return day.replace(hour=23, minute=59, second=59, tzinfo=UTC)
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _when(form: FlaskForm, field: Any) -> None:
    try:
        parse_when(field.data)
    except ValueError:
        raise ValidationError("Give a date (2027-01-31) or a date and time (UTC).") from None


def _json_object(form: FlaskForm, field: Any) -> None:
    text = (field.data or "").strip()
    if not text:
        return
    try:
        value = json.loads(text)
    except ValueError:
        raise ValidationError("Metadata must be a JSON object.") from None
    if not isinstance(value, dict):
        raise ValidationError("Metadata must be a JSON object.")


def _feature_list(form: FlaskForm, field: Any) -> None:
    features = split_list(field.data)
    if len(features) > limits.FEATURES:
        raise ValidationError(f"At most {limits.FEATURES} features.")
    if any(len(feature) > limits.FEATURE for feature in features):
        raise ValidationError(f"A feature has at most {limits.FEATURE} characters.")


_TIERS = [(tier, tier) for tier in SELLER_TIERS]


class AppForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=limits.NAME)])
    description = TextAreaField(
        "Description", validators=[Optional(), Length(max=limits.DESCRIPTION)]
    )
    tier = SelectField("Seller tier", choices=_TIERS, default="free")
    #: set at creation only (an app's mode never changes); ignored when editing
    mode = SelectField("Mode", choices=[("live", "Live"), ("test", "Test")], default="live")
    submit = SubmitField("Save")


class LicenseSearchForm(GetForm):
    q = StringField("Key, email or id", validators=[Optional(), Length(max=limits.LOOKUP)])
    app = SelectField("App", choices=[("", "Every app")], validate_choice=False)
    status = SelectField(
        "Status",
        choices=[("", "Any status"), *((s, s.title()) for s in LICENSE_STATUSES)],
        default="",
    )
    submit = SubmitField("Search")


class LicenseFieldsForm(FlaskForm):
    """Plan, features and expiry: what both the create and the edit forms change."""

    plan = StringField("Plan", validators=[Optional(), Length(max=limits.PLAN)])
    features = TextAreaField("Features (comma or line separated)", validators=[_feature_list])
    expires_at = StringField(
        "Expires (YYYY-MM-DD or date-time, UTC; empty: never)", validators=[_when]
    )
    submit = SubmitField("Save")


class LicenseCreateForm(LicenseFieldsForm):
    app_id = SelectField("App", choices=[], validate_choice=True)
    issued_to = StringField("Issued to", validators=[Optional(), Length(max=limits.ISSUED_TO)])
    issued_email = StringField("Licensee email", validators=[Optional(), Length(max=limits.EMAIL)])
    max_devices = IntegerField(
        "Devices allowed", default=1, validators=[NumberRange(1, limits.MAX_DEVICES)]
    )
    require_hwuid = BooleanField("Require a hardware id")
    metadata = TextAreaField("Metadata (JSON object)", validators=[_json_object])
    submit = SubmitField("Create license")


class ExtendForm(FlaskForm):
    # its own id: the edit form on the same page has an ``expires_at`` too
    expires_at = StringField(
        "New expiry (YYYY-MM-DD or date-time, UTC; empty: never)",
        validators=[_when],
        id="extend-expires_at",
    )
    submit = SubmitField("Extend")


class ReasonForm(FlaskForm):
    reason = StringField("Reason", validators=[Optional(), Length(max=limits.REASON)])
    submit = SubmitField("Revoke")


class ApiKeyForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=limits.NAME)])
    role = SelectField("Role", choices=[(role, role) for role in ROLES], default="developer")
    app_id = SelectField("App", choices=[], validate_choice=True)
    environment = SelectField(
        "Environment", choices=[("live", "live"), ("test", "test")], default="live"
    )
    submit = SubmitField("Create API key")


class AuditFilterForm(GetForm):
    action = StringField("Action", validators=[Optional(), Length(max=64)])
    actor = StringField("Actor id", validators=[Optional(), Length(max=limits.LOOKUP)])
    target = StringField("Target id", validators=[Optional(), Length(max=limits.LOOKUP)])
    app_id = StringField("App id", validators=[Optional(), Length(max=limits.APP_ID)])
    since = StringField("Since (YYYY-MM-DD)", validators=[_when])
    until = StringField("Until (YYYY-MM-DD)", validators=[_when])
    submit = SubmitField("Filter")


class InviteForm(FlaskForm):
    email = StringField("Email", validators=[DataRequired(), Length(max=limits.EMAIL)])
    display_name = StringField("Display name", validators=[Optional(), Length(max=200)])
    role = SelectField("Role", choices=[(role, role) for role in ROLES], default="support")
    app_ids = StringField("Limited to apps (ids, comma separated; empty: every app)")
    submit = SubmitField("Invite")


class RoleForm(FlaskForm):
    role = SelectField("Role", choices=[(role, role) for role in ROLES])
    submit = SubmitField("Change role")


class WebhookForm(FlaskForm):
    """A new webhook endpoint; ``events`` empty means every event (``*``)."""

    url = StringField(
        "Destination URL", validators=[DataRequired(), Length(max=limits.WEBHOOK_URL)]
    )
    description = StringField(
        "Description", validators=[Optional(), Length(max=WEBHOOK_DESCRIPTION)]
    )
    events = StringField(
        "Events (comma separated; empty: every event)", validators=[Optional(), Length(max=4096)]
    )
    app_id = SelectField("App", choices=[], validate_choice=True)
    submit = SubmitField("Create webhook")


class CustomerExportForm(FlaskForm):
    email = StringField("Customer's e-mail", validators=[DataRequired(), Length(max=limits.EMAIL)])
    submit = SubmitField("Download the export")


class CustomerEraseForm(FlaskForm):
    email = StringField("Customer's e-mail", validators=[DataRequired(), Length(max=limits.EMAIL)])
    confirm = StringField(
        "Type the e-mail again to confirm",
        validators=[DataRequired(), Length(max=limits.EMAIL)],
    )
    submit = SubmitField("Erase this customer's personal data")
