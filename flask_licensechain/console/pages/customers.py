"""Customers: a data subject's export and erasure (README, "Data protection").

Export (``customers:read``) downloads the versioned JSON document of
``services.customers.export_customer``. Erasure (``customers:erase``) asks for the second
factor again (``requires_recent_mfa``) and for the address typed twice, then calls
``services.customers.erase_customer``. Both run as the signed-in user (``console_actor``).
A user of every app reaches the whole store; an app-limited user only its apps' licenses and
the records about them, as an app-limited API key.
"""

from __future__ import annotations

import json
from typing import Any, Final

from flask import Response, flash, redirect, render_template, url_for

from ...services import customers as service
from ...state import get_issuer_state
from ...store.customers import WHOLE_STORE, Reach, fold
from ..auth import requires_recent_mfa, requires_scope
from ..blueprint import bp
from ..state import console_state
from .common import console_actor, service_call, visible_app_ids
from .forms import CustomerEraseForm, CustomerExportForm

#: the navigation link: (label, endpoint, scope)
NAV: Final = ("Customers", "console.customers", "customers:read")
#: the two forms' field prefixes: one page, no two controls with the same id
_EXPORT: Final = "export"
_ERASE: Final = "erase"


def _reach() -> Reach:
    apps = visible_app_ids()
    return WHOLE_STORE if apps is None else Reach(apps, store_wide=False)


def _page(
    status: int = 200,
    export: CustomerExportForm | None = None,
    erase: CustomerEraseForm | None = None,
) -> tuple[str, int]:
    return (
        render_template(
            "console/pages/customers.html",
            export_form=export or CustomerExportForm(formdata=None, prefix=_EXPORT),
            erase_form=erase or CustomerEraseForm(formdata=None, prefix=_ERASE),
            personal_keys=get_issuer_state().settings.personal_metadata_keys,
            mfa_minutes=int(console_state().mfa_max_age.total_seconds() // 60),
        ),
        status,
    )


@bp.get("/customers")
@requires_scope("customers:read")
def customers() -> Any:
    return _page()


@bp.post("/customers/export")
@requires_scope("customers:read")
def export_customer() -> Any:
    form = CustomerExportForm(prefix=_EXPORT)
    if not form.validate_on_submit():
        return _page(400, export=form)
    with service_call() as outcome:
        document = service.export_customer(
            get_issuer_state(), console_actor(), email=form.email.data or "", reach=_reach()
        )
    if not outcome.ok:
        return _page(outcome.status, export=form)
    return Response(
        json.dumps(document, indent=2, ensure_ascii=False),
        mimetype="application/json",
        headers={
            "Content-Disposition": 'attachment; filename="customer-export.json"',
            "Cache-Control": "no-store",
        },
    )


@bp.post("/customers/erase")
@requires_scope("customers:erase")
@requires_recent_mfa
def erase_customer() -> Any:
    form = CustomerEraseForm(prefix=_ERASE)
    if not form.validate_on_submit():
        return _page(400, erase=form)
    if fold(form.email.data or "") != fold(form.confirm.data or ""):
        form.confirm.errors = ["The two e-mails differ."]
        return _page(400, erase=form)
    with service_call() as outcome:
        result = service.erase_customer(
            get_issuer_state(), console_actor(), email=form.email.data or "", reach=_reach()
        )
    if not outcome.ok:
        return _page(outcome.status, erase=form)
    flash(
        f"Erased: {result['licenses']} license(s), {result['auditEvents']} audit event(s), "
        f"{result['webhookDeliveries']} webhook delivery(ies) and {result['devices']} "
        f"device(s) changed. The customer is now {result['pseudonym']}.",
        "info",
    )
    return redirect(url_for("console.customers"), 303)
