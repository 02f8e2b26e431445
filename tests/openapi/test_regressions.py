"""What the schemathesis run found, one focused test each (the document's own fixes are in test_document.py)."""

from __future__ import annotations

import sqlalchemy as sa

from database import bot_lines


def attached_lines(seed) -> list[str]:
    """Line ids stored as attached for the seeded portal."""
    with seed.world.services.db.read() as conn:
        rows = conn.execute(
            sa.select(bot_lines.c.line_id).where(
                bot_lines.c.portal_id == seed.world.portal_ids["portal1"], bot_lines.c.attached_at.is_not(None)
            )
        )
        return sorted(r.line_id for r in rows)


def test_attaching_the_bot_to_a_line_the_portal_lacks_is_404_not_502(seed):
    """The portal answers CONFIG_NOT_FOUND for an unknown line: the caller's mistake, never a 5xx."""
    response = seed.world.client.post("/api/admin/bot/attach", json={"line_id": "0"}, headers=seed.global_token)
    assert response.status_code == 404
    assert response.get_json() == {"error": "line_not_found", "message": "The portal has no Open Line 0."}
    assert attached_lines(seed) == []
    response = seed.world.client.post("/api/admin/bot/attach", json={"line_id": "1"}, headers=seed.global_token)
    assert response.status_code == 200
    assert attached_lines(seed) == ["1"]
