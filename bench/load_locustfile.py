"""The simulated users of bench/load.py (locust loads this file; run `bench/load.py`, not this file).

Each user sits on one of the plan's portals and, with a think time between requests, does what people and
Bitrix24 do to the app: open the iframe (POST / as the portal opens it), list and create conferences
(Bearer session token, sandbox Telemost), deliver Open Lines bot events (a new chat each, authenticated by
the portal's application token), and an operator's status check (X-API-Token).
The plan (portals, tokens, forms) is the JSON file named by LOAD_PLAN, written by bench/load.py.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time
from pathlib import Path

from locust import HttpUser, between, task

PLAN = json.loads(Path(os.environ["LOAD_PLAN"]).read_text(encoding="utf-8"))
# Chat ids no earlier run used: each bot event is a new dialog, stored and handed to an operator.
_chats = itertools.count(PLAN["first_chat"])


class PortalUser(HttpUser):
    """One client of one portal."""

    wait_time = between(PLAN["wait_min"], PLAN["wait_max"])

    def on_start(self):
        self.portal = random.choice(PLAN["portals"])
        self.auth = {"Authorization": f"Bearer {self.portal['session_token']}"}

    def _check(self, response, expected: int) -> None:
        if response.status_code != expected:
            response.failure(f"HTTP {response.status_code}: {response.text[:120]}")

    @task(3)
    def iframe_open(self):
        """POST / with the portal's AUTH_ID, REFRESH_ID, member_id and APPLICATION_TOKEN (§1.2)."""
        frame = random.choice(self.portal["frames"])
        query = {"DOMAIN": frame["domain"], "PROTOCOL": "0", "LANG": "ru", "APP_SID": "load"}
        body = {
            "AUTH_ID": frame["access_token"],
            "AUTH_EXPIRES": "3600",
            "REFRESH_ID": frame["refresh_token"],
            "SERVER_ENDPOINT": frame["server_endpoint"],
            "APPLICATION_TOKEN": self.portal["application_token"],
            "member_id": frame["member_id"],
            "status": "L",
            "PLACEMENT": "DEFAULT",
            "PLACEMENT_OPTIONS": "{}",
        }
        with self.client.post("/", params=query, data=body, name="iframe open", catch_response=True) as response:
            self._check(response, 200)

    @task(5)
    def conference_list(self):
        """GET /api/conferences, a page of 20."""
        with self.client.get(
            "/api/conferences?per_page=20", headers=self.auth, name="conference list", catch_response=True
        ) as response:
            self._check(response, 200)

    @task(1)
    def conference_create(self):
        """POST /api/conferences: a Telemost conference (no calendar event, no invitations)."""
        body = {"name": f"Load {random.randrange(10**6)}", "start_date": "2031-03-02", "start_time": "10:00"}
        with self.client.post(
            "/api/conferences", json=body, headers=self.auth, name="conference create", catch_response=True
        ) as response:
            self._check(response, 201)

    @task(3)
    def bot_event(self):
        """POST /python_bot/: ONIMBOTMESSAGEADD of a new Open Lines chat."""
        chat, ts = str(next(_chats)), str(int(time.time()))
        form = {k: v.replace("__CHAT__", chat).replace("__TS__", ts) for k, v in self.portal["event_form"].items()}
        with self.client.post("/python_bot/", data=form, name="bot event", catch_response=True) as response:
            self._check(response, 200)

    @task(1)
    def admin_status(self):
        """GET /api/admin/status with the global X-API-Token."""
        with self.client.get(
            "/api/admin/status", headers={"X-API-Token": PLAN["admin_token"]}, name="admin status", catch_response=True
        ) as response:
            self._check(response, 200)
