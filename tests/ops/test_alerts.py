"""docs/alerts.yml: well-formed Prometheus rules, and every metric they name is one /metrics exports."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from database import bot_inbox, credentials
from tests.factories import make_credential, make_portal

ALERTS = Path(__file__).resolve().parents[2] / "docs" / "alerts.yml"
# Series Prometheus makes itself for every scrape target; no application exports them.
PROMETHEUS_OWN = {"up"}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"}
# Followed by a parenthesised list of label names, not metrics.
LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_TOKEN = re.compile(
    r"""
      "(?:[^"\\]|\\.)*" | '(?:[^'\\]|\\.)*' | `[^`]*`    # strings
    | \{[^}]*\}                                          # label matchers
    | \[[^\]]*\]                                         # range / subquery selectors
    | \d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?:ms|[smhdwy])?     # numbers and durations
    | [A-Za-z_:][A-Za-z0-9_:]*                           # identifiers
    | \S                                                 # operators, parentheses, commas
    """,
    re.VERBOSE,
)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers that are not functions, keywords or labels."""
    tokens = _TOKEN.findall(expr)
    names, i = set(), 0
    while i < len(tokens):
        token, following = tokens[i], tokens[i + 1] if i + 1 < len(tokens) else ""
        if token.lower() in LABEL_LISTS and following == "(":
            i = tokens.index(")", i) + 1  # label lists hold no parentheses
            continue
        function = following == "(" or following.lower() in ("by", "without")  # sum by (…) (…) too
        word = token.lower() in KEYWORDS | LABEL_LISTS
        if re.fullmatch(r"[A-Za-z_:][A-Za-z0-9_:]*", token) and not function and not word:
            names.add(token)
        i += 1
    return names


def load_rules() -> list[dict]:
    """Every rule of every group in docs/alerts.yml."""
    document = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def scrape_samples(text: str) -> dict[str, int]:
    """Sample counts per metric name of a Prometheus text exposition."""
    counts: dict[str, int] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name = re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line).group(0)
            counts[name] = counts.get(name, 0) + 1
    return counts


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (provider, status) (b24_credentials{status=~"a|b"}) > 0', {"b24_credentials"}),
        ("time() - b24_task_last_run_timestamp_seconds{task='refresh'} > 900", {"b24_task_last_run_timestamp_seconds"}),
        (
            'sum(rate(x_total{code="5xx"}[5m])) / ignoring(code) group_left sum(rate(y_total[5m])) > 2e-2',
            {"x_total", "y_total"},
        ),
        ("a > 1 and on(instance) b unless absent(c offset 1h)", {"a", "b", "c"}),
        ('histogram_quantile(0.99, sum without (le) (rate(h_bucket{le!="+Inf"}[1m])))', {"h_bucket"}),
    ],
)
def test_the_tokenizer_finds_metric_names(expr, names):
    assert metric_names(expr) == names


def test_every_rule_is_complete():
    rules = load_rules()
    assert len(rules) >= 8
    alerts = [rule["alert"] for rule in rules]
    assert len(alerts) == len(set(alerts))
    for rule in rules:
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert rule["annotations"]["description"].strip(), rule["alert"]
        assert metric_names(rule["expr"]), rule["alert"]


def test_the_rules_cover_what_an_operator_must_hear(services):
    by_name = {rule["alert"]: rule["expr"] for rule in load_rules()}
    assert "b24_refresh_failures_total" in by_name["RefreshFailuresRising"]
    assert 'status="needs_reauth"' in by_name["CredentialNeedsReauth"]
    assert 'status="broken"' in by_name["CredentialBroken"]
    # Three schedule periods: refresh every 5 min, process-events every minute.
    assert re.search(r'task="refresh"\} > 900$', by_name["RefreshRunStale"])
    assert re.search(r'task="process-events"\} > 180$', by_name["EventProcessingStale"])
    assert 'status="pending"' in by_name["BotInboxBacklogGrowing"]
    assert 'status_class="5xx"' in by_name["HighServerErrorRate"]


def seed(services, client) -> None:
    """Rows behind every metric the rules read: credentials in each bad state, both cron tasks' runs, a
    pending and a failed bot event, refresh failures, and answers of two status classes."""
    portal = make_portal(services)
    make_credential(services, account=portal.member_id, portal_id=portal.id)
    for status in ("needs_reauth", "broken"):
        cred = make_credential(services, "yandex")
        with services.db.write() as conn:
            conn.execute(sa.update(credentials).where(credentials.c.id == cred).values(status=status))
    ts = time.time()
    with services.db.write() as conn:
        for n, status in enumerate(("pending", "failed")):
            conn.execute(
                sa.insert(bot_inbox).values(
                    portal_id=portal.id,
                    event_key=f"seed-{n}",
                    event="ONIMBOTMESSAGEADD",
                    payload="{}",
                    status=status,
                    next_attempt_at=ts + 3600,  # not due: the run below leaves it pending
                    received_at=ts - 120,
                )
            )
    services.metrics.incr("refresh_failures_total", provider="bitrix24", error_class="transient")
    services.metrics.flush()
    services.engine.run(trigger="cli")
    services.openlines.process_ready(trigger="cli", budget_s=5)
    assert client.get("/health").status_code == 200
    assert client.get("/api/admin/status").status_code == 401


def test_every_metric_the_rules_name_is_exported(app, client, services):
    seed(services, client)
    services.metrics.flush()  # the two answers above are buffered for at most HTTP_FLUSH_SECONDS
    response = client.get("/metrics")
    assert response.status_code == 200
    samples = scrape_samples(response.get_data(as_text=True))
    named = set().union(*(metric_names(rule["expr"]) for rule in load_rules())) - PROMETHEUS_OWN
    assert named  # the tokenizer found names at all
    missing = {name for name in named if not samples.get(name)}
    assert missing == set()


def test_new_metrics_have_the_seeded_values(app, client, services):
    seed(services, client)
    services.metrics.flush()
    text = client.get("/metrics").get_data(as_text=True)
    values = {
        line.rpartition(" ")[0]: float(line.rpartition(" ")[2])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert values['b24_credentials{provider="yandex",status="needs_reauth"}'] == 1
    assert values['b24_credentials{provider="yandex",status="broken"}'] == 1
    assert values['b24_bot_inbox_events{status="pending"}'] == 1
    assert values['b24_bot_inbox_events{status="failed"}'] == 1
    assert 115 <= values["b24_bot_inbox_oldest_pending_age_seconds"] < 180
    for task in ("refresh", "process-events"):
        assert time.time() - values[f'b24_task_last_run_timestamp_seconds{{task="{task}"}}'] < 60
        assert time.time() - values[f'b24_task_last_finished_timestamp_seconds{{task="{task}"}}'] < 60
    assert values['b24_http_responses_total{status_class="2xx"}'] == 1
    assert values['b24_http_responses_total{status_class="4xx"}'] == 1


def test_refresh_gauges_ignore_event_processing_runs(app, client, services):
    services.engine.run(trigger="cli")
    services.openlines.process_ready(trigger="cli", budget_s=5)  # newer, and much shorter
    with services.db.write() as conn:
        conn.execute(sa.text("update task_runs set started_at = started_at - 600 where task = 'refresh'"))
    text = client.get("/metrics").get_data(as_text=True)
    age = float(re.search(r"^b24_refresh_last_run_age_seconds (\S+)$", text, re.M).group(1))
    assert 600 <= age < 660
