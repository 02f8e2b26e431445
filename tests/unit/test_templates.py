"""The SPA shells (index, install) speak the portal user's language: <html lang>, <title> and <noscript>."""

from __future__ import annotations

import re

import pytest
from flask import render_template


@pytest.mark.parametrize(
    ("boot", "url", "lang", "title"),
    [
        ({"lang": "en"}, "/", "en", "Yandex Telemost"),
        ({"lang": "ru"}, "/", "ru", "Яндекс Телемост"),
        ({"lang": "de"}, "/", "en", "Yandex Telemost"),  # other Bitrix24 languages read as English
        ({}, "/?LANG=en", "en", "Yandex Telemost"),  # no boot lang: the LANG Bitrix24 put in the URL
        ({}, "/", "ru", "Яндекс Телемост"),
    ],
)
def test_app_page_language(app, boot, url, lang, title):
    with app.test_request_context(url):
        html = render_template("index.html", boot=boot)
    assert f'<html lang="{lang}">' in html
    assert f"<title>{title}</title>" in html
    assert ("включите JavaScript" in html) is (lang == "ru")


@pytest.mark.parametrize(
    ("url", "lang", "title"),
    [
        ("/install?LANG=en", "en", "Installing — Yandex Telemost"),
        ("/install?LANG=ru", "ru", "Установка — Яндекс Телемост"),
    ],
)
def test_installer_page_language(app, url, lang, title):
    with app.test_request_context(url):
        html = render_template("install.html", boot={"install": {"ok": True}})
    assert f'<html lang="{lang}">' in html
    assert f"<title>{title}</title>" in html


def test_boot_data_is_json_not_script(app):
    """The boot block stays inert JSON even when a value tries to close the tag."""
    with app.test_request_context("/"):
        html = render_template("index.html", boot={"lang": "en", "user": {"name": "</script><script>alert(1)"}})
    assert "</script><script>alert(1)" not in html


def test_app_page_preloads_the_first_tab_once(app):
    """The Conferences chunk is fetched with the entry (no waterfall), and no file is linked twice."""
    manifest = app.extensions["vite_manifest"].entries()
    with app.test_request_context("/"):
        html = render_template("index.html", boot={"lang": "ru"})
    tab = manifest["src/conferences/ConferencesView.vue"]["file"]
    assert html.count(f'<link rel="modulepreload" href="/static/dist/{tab}">') == 1
    links = re.findall(r'(?:href|src)="([^"]+)"', html)
    assert len(links) == len(set(links))
