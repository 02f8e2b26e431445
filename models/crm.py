"""CRM cards (issue 10 §1): the app as a tab on deal, contact, company and lead cards.

The set-up binds the four placements (in the set-up batch, models/install.py); an iframe open from a
card names the record (`PLACEMENT`, `PLACEMENT_OPTIONS={"ID": "42"}`); a conference made there is bound
to it (its calendar event carries `crm_fields`) and the record's responsible person is the first invitee.
"""

from __future__ import annotations

import json
import logging

from models.bitrix24 import Bitrix24AccessDenied, Bitrix24Error, Bitrix24Unavailable, command_errors
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


def setup_commands(base_url: str, title: str, titles: dict[str, str] | None = None) -> dict[str, tuple[str, dict]]:
    """Batch commands binding the app's page as a tab on each CRM card (keys `placement_<entity>`); `title` in
    the portal's language, `titles` per language (LANG_ALL: each user sees the tab in theirs)."""
    handler = f"{base_url.rstrip('/')}/"
    params = {"HANDLER": handler, "TITLE": title}
    if titles:
        params["LANG_ALL"] = {lang: {"TITLE": text} for lang, text in titles.items() if text}
    return {
        f"placement_{entity}": ("placement.bind", {"PLACEMENT": code, **params}) for code, entity in PLACEMENTS.items()
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
    """The record's title and responsible person (`ASSIGNED_BY_ID` and their name) in one batch round trip."""
    if entity not in ENTITIES:
        raise ServiceError("crm_entity_invalid", status=400)
    commands = {
        "record": (f"crm.{entity}.get", {"id": record_id}),
        # The responsible person's name for the invitee picker, from the record's answer in the same batch.
        "user": ("user.get", {"ID": "$result[record][ASSIGNED_BY_ID]"}),
    }
    try:
        answer = client.batch(commands)
    except Bitrix24Unavailable as exc:
        raise ServiceError("crm_unavailable", status=503) from exc
    except Bitrix24AccessDenied as exc:
        raise ServiceError("crm_access_denied", status=403) from exc
    except Bitrix24Error as exc:
        raise ServiceError("crm_unavailable", status=502, upstream=exc.code) from exc
    error = command_errors(answer).get("record")
    if error is not None:
        if isinstance(error, Bitrix24AccessDenied) or error.code.upper() in ("ACCESS_DENIED", "ERROR_METHOD_NOT_FOUND"):
            raise ServiceError("crm_access_denied", status=403)
        if "not found" in error.description.lower() or error.code.upper() in ("NOT_FOUND", "ERROR_NOT_FOUND"):
            raise ServiceError("crm_not_found", status=404)
        raise ServiceError("crm_unavailable", status=502, upstream=error.code or "error")
    record = (answer.get("result") or {}).get("record")
    if not isinstance(record, dict):
        raise ServiceError("crm_not_found", status=404)
    responsible = parse_id(record.get("ASSIGNED_BY_ID"))
    title = record.get("TITLE") or " ".join(str(record[k]) for k in ("NAME", "LAST_NAME") if record.get(k))
    users = (answer.get("result") or {}).get("user")
    person = users[0] if isinstance(users, list) and users and isinstance(users[0], dict) else {}
    name = " ".join(str(person[k]) for k in ("NAME", "LAST_NAME") if person.get(k))
    return {
        "entity": entity,
        "id": record_id,
        "title": str(title or "")[:255],
        "responsible_id": responsible,
        "responsible_name": name[:255] if responsible and parse_id(person.get("ID")) == responsible else "",
    }
