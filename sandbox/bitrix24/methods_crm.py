"""Portal REST methods: crm.deal.get, crm.contact.get, crm.company.get, crm.lead.get (seeded records)."""

from __future__ import annotations

from typing import Any

from .forms import ci_get
from .rest import Ctx, method
from .shapes import RestError


def _get(ctx: Ctx, entity: str, params: dict[str, Any]) -> dict[str, Any]:
    raw = str(ci_get(params, "id", default="") or "").strip()
    if not raw.isdigit() or int(raw) <= 0:
        raise RestError("", "ID is not defined or invalid.", 400)
    with ctx.state.lock:
        record = ctx.portal.crm.get(entity, {}).get(int(raw))
        if record is None:
            raise RestError("", "Not found", 400)
        return dict(record)


@method("crm.deal.get")
def deal_get(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    """One deal by id."""
    return _get(ctx, "deal", params)


@method("crm.contact.get")
def contact_get(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    """One contact by id."""
    return _get(ctx, "contact", params)


@method("crm.company.get")
def company_get(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    """One company by id."""
    return _get(ctx, "company", params)


@method("crm.lead.get")
def lead_get(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    """One lead by id."""
    return _get(ctx, "lead", params)
