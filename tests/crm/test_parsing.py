"""What a CRM card open, a list filter and a stored binding may be (models/crm.py), without the network."""

from __future__ import annotations

import pytest

from models import crm


@pytest.mark.parametrize(
    ("placement", "options", "expected"),
    [
        ("CRM_DEAL_DETAIL_TAB", '{"ID":"42"}', {"entity": "deal", "id": 42}),
        ("CRM_CONTACT_DETAIL_TAB", '{"ID":8}', {"entity": "contact", "id": 8}),
        ("CRM_COMPANY_DETAIL_TAB", '{"ID":" 3 "}', {"entity": "company", "id": 3}),
        ("CRM_LEAD_DETAIL_TAB", '{"ID":"2147483647"}', {"entity": "lead", "id": 2147483647}),
        ("CRM_LEAD_DETAIL_TAB", '{"ID":"2147483648"}', None),
        ("CRM_DEAL_DETAIL_TAB", '{"ID":"0"}', None),
        ("CRM_DEAL_DETAIL_TAB", '{"ID":true}', None),
        ("CRM_DEAL_DETAIL_TAB", '{"ID":"4\u0662"}', None),
        ("CRM_DEAL_DETAIL_TAB", '{"ID":4.5}', None),
        ("CRM_DEAL_DETAIL_TAB", '{"id":"42"}', None),
        ("CRM_DEAL_DETAIL_TAB", "", None),
        ("CRM_DEAL_DETAIL_TAB", None, None),
        ("CRM_DEAL_DETAIL_TAB", "{" * 5000, None),
        ("crm_deal_detail_tab", '{"ID":"42"}', None),
        (None, '{"ID":"42"}', None),
    ],
)
def test_from_placement(placement, options, expected):
    assert crm.from_placement(placement, options) == expected


def test_filter_and_stored_form_agree():
    binding = crm.parse_filter("company:3")
    assert binding == {"entity": "company", "id": 3}
    assert crm.stored(binding) == '{"entity":"company","id":3}'
    assert crm.stored({"id": "3", "entity": "company"}) == crm.stored(binding)
    assert crm.stored(None) is None
    for bad in ("", "company", "company:", "company:x", "invoice:3", "company:0", ":3"):
        with pytest.raises(ValueError):
            crm.parse_filter(bad)


@pytest.mark.parametrize(
    ("entity", "expected"), [("deal", ["D_42"]), ("contact", ["C_42"]), ("company", ["CO_42"]), ("lead", ["L_42"])]
)
def test_crm_fields_prefixes(entity, expected):
    assert crm.crm_fields(crm.stored({"entity": entity, "id": 42})) == expected


def test_no_crm_fields_without_binding():
    assert crm.crm_fields(None) == []


def test_setup_commands_bind_each_card_tab_to_the_app_page():
    commands = crm.setup_commands("https://app.example/base/", "Встречи", {"ru": "Встречи", "en": "Meetings", "de": ""})
    assert commands == {
        f"placement_{entity}": (
            "placement.bind",
            {
                "PLACEMENT": code,
                "HANDLER": "https://app.example/base/",
                "TITLE": "Встречи",
                "LANG_ALL": {"ru": {"TITLE": "Встречи"}, "en": {"TITLE": "Meetings"}},
            },
        )
        for code, entity in crm.PLACEMENTS.items()
    }


def test_record_setup_counts_bound_and_already_bound_and_logs_the_rest(caplog):
    answer = {
        "result": {"placement_deal": True, "placement_contact": True},
        "result_error": {
            "placement_company": {"error": "ERROR_CORE", "error_description": "Handler already binded"},
            "placement_lead": {"error": "insufficient_scope", "error_description": "…"},
        },
    }
    with caplog.at_level("WARNING", logger="models.crm"):
        assert crm.record_setup("m1", answer) == ["deal", "contact", "company"]
    assert [r.getMessage() for r in caplog.records] == ["portal m1 did not bind the lead card tab (insufficient_scope)"]
