"""A few CRM records every sandbox portal has (for the app's CRM card tabs), each with a responsible person."""

from __future__ import annotations

from typing import Any


def seed_crm() -> dict[str, dict[int, dict[str, Any]]]:
    """Deals 42 and 43, contact 8, company 3 and lead 5 (ASSIGNED_BY_ID: active, non-admin employees)."""
    return {
        "deal": {
            42: {"ID": "42", "TITLE": "Поставка оборудования", "ASSIGNED_BY_ID": "2", "STAGE_ID": "NEW"},
            43: {"ID": "43", "TITLE": "Внедрение CRM", "ASSIGNED_BY_ID": "3", "STAGE_ID": "PREPARATION"},
        },
        "contact": {8: {"ID": "8", "NAME": "Ирина", "LAST_NAME": "Соколова", "ASSIGNED_BY_ID": "4"}},
        "company": {3: {"ID": "3", "TITLE": "ООО «Ромашка»", "ASSIGNED_BY_ID": "5"}},
        "lead": {5: {"ID": "5", "TITLE": "Заявка с сайта", "ASSIGNED_BY_ID": "6", "STATUS_ID": "NEW"}},
    }
