"""CRM cards (issue 10 §1): the app as a tab on deal, contact, company and lead cards.

The set-up binds the four placements (in the set-up batch, models/install.py); an iframe open from a
card names the record (`PLACEMENT`, `PLACEMENT_OPTIONS={"ID": "42"}`); a conference made there is bound
to it (its calendar event carries `crm_fields`) and the record's responsible person is the first invitee.
"""

from __future__ import annotations

import json
import logging

from models.bitrix24 import Bitrix24Error, Bitrix24Unavailable
from models.errors import ServiceError

log = logging.getLogger(__name__)

# placement code → (entity, crm.<entity>.get method, prefix in an event's crm_fields)
PLACEMENTS = {
    "CRM_DEAL_DETAIL_TAB": "deal",
    "CRM_CONTACT_DETAIL_TAB": "contact",
    "CRM_COMPANY_DETAIL_TAB": "company",
    "CRM_LEAD_DETAIL_TAB": "lead",
}
ENTITIES = ("deal", "contact", "company", "lead")
CRM_PREFIX = {"deal": "D", "contact": "C", "company": "CO", "lead": "L"}
MAX_ID = 2**31 - 1


def setup_commands(base_url: str, title: str) -> dict[str, tuple[str, dict]]:
    """Batch commands binding the app's page as a tab on each CRM card (keys `placement_<entity>`)."""
    handler = f"{base_url.rstrip('/')}/"
    return {
        f"placement_{entity}": ("placement.bind", {"PLACEMENT": code, "HANDLER": handler, "TITLE": title})
        for code, entity in PLACEMENTS.items()
    }


def record_setup(member_id: str, answer: dict) -> list[str]:
    """The entities whose tab is bound after the set-up batch; a refusal is logged, never fatal.

    A portal that did not grant the `placement` scope, or an admin-less token, refuses the binding: the
    app still works from the left menu, so the set-up goes on.
    """
    results = answer.get("result") or {}
    errors = answer.get("result_error") or {}
    bound = []
    for entity in ENTITIES:
        key = f"placement_{entity}"
        error = errors.get(key) if isinstance(errors.get(key), dict) else None
        if key in results and not error:
            bound.append(entity)
        elif error and "already" in str(error.get("error_description") or "").lower():
            bound.append(entity)
        else:
            log.warning(
                "portal %s did not bind the %s card tab (%s)",
                member_id,
                entity,
                (error or {}).get("error") or "no_answer",
            )
    return bound


def parse_id(value) -> int | None:
    """A record id as Bitrix24 sends it (a positive integer, maybe as text), or None."""
    if isinstance(value, bool):
        return None
    text = str(value).strip() if isinstance(value, (str, int)) else ""
    if not text.isascii() or not text.isdigit() or len(text) > 10:
        return None
    number = int(text)
    return number if 0 < number <= MAX_ID else None


def from_placement(placement: str | None, options: str | None) -> dict | None:
    """`{"entity", "id"}` of a CRM card open (`PLACEMENT` + `PLACEMENT_OPTIONS`), None for anything else."""
    entity = PLACEMENTS.get(str(placement or ""))
    if entity is None or not options or len(options) > 4096:
        return None
    try:
        parsed = json.loads(options)
    except ValueError:
        return None
    if not isinstance(parsed, dict):
        return None
    record_id = parse_id(parsed.get("ID"))
    return {"entity": entity, "id": record_id} if record_id is not None else None


def parse_filter(value: str | None) -> dict | None:
    """The list filter `deal:42` as `{"entity", "id"}`; raises ValueError on a malformed one."""
    entity, sep, raw = str(value or "").partition(":")
    record_id = parse_id(raw)
    if not sep or entity not in ENTITIES or record_id is None:
        raise ValueError("crm filter is entity:id")
    return {"entity": entity, "id": record_id}


def stored(binding: dict | None) -> str | None:
    """The binding as stored (canonical JSON text: equal bindings are equal strings, so the filter is `=`)."""
    if not binding:
        return None
    return json.dumps({"entity": binding["entity"], "id": int(binding["id"])}, separators=(",", ":"))


def crm_fields(binding_text: str | None) -> list[str]:
    """The calendar event's `crm_fields` of a stored binding (`D_42`, `C_7`, `CO_3`, `L_5`)."""
    if not binding_text:
        return []
    binding = json.loads(binding_text)
    return [f"{CRM_PREFIX[binding['entity']]}_{int(binding['id'])}"]


def context(client, entity: str, record_id: int) -> dict:
    """The record's title and responsible person (`ASSIGNED_BY_ID`) through `crm.<entity>.get`."""
    if entity not in ENTITIES:
        raise ServiceError("crm_entity_invalid", status=400)
    try:
        record = client.call(f"crm.{entity}.get", {"id": record_id}).result
    except Bitrix24Unavailable as exc:
        raise ServiceError("crm_unavailable", status=503) from exc
    except Bitrix24Error as exc:
        code = str(exc.code or "").upper()
        if code in ("NOT_FOUND", "ERROR_NOT_FOUND") or "not found" in str(exc.description or "").lower():
            raise ServiceError("crm_not_found", status=404) from exc
        if code in ("ACCESS_DENIED", "INSUFFICIENT_SCOPE", "ERROR_METHOD_NOT_FOUND", "AUTHORIZATION_ERROR"):
            raise ServiceError("crm_access_denied", status=403) from exc
        raise ServiceError("crm_unavailable", status=502, upstream=exc.code) from exc
    if not isinstance(record, dict):
        raise ServiceError("crm_not_found", status=404)
    responsible = parse_id(record.get("ASSIGNED_BY_ID"))
    title = record.get("TITLE") or " ".join(str(record.get(k) or "") for k in ("NAME", "LAST_NAME") if record.get(k))
    return {
        "entity": entity,
        "id": record_id,
        "title": str(title or "")[:255],
        "responsible_id": responsible,
    }
