"""The server's message catalog: every area module speaks both languages and no key means two things."""

from __future__ import annotations

import importlib
import pkgutil
import string

import pytest

import routes.i18n as i18n

AREAS = [module.name for module in pkgutil.iter_modules(i18n.__path__)]


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


@pytest.mark.parametrize("area", AREAS)
def test_every_key_of_an_area_exists_in_russian_and_english(area):
    messages = importlib.import_module(f"routes.i18n.{area}").MESSAGES
    assert set(messages["ru"]) == set(messages["en"])
    for key, text in messages["en"].items():
        assert _fields(text) == _fields(messages["ru"][key]), key


def test_no_key_is_defined_twice_with_different_words():
    seen: dict[tuple[str, str], tuple[str, str]] = {}
    clashes = []
    for area in AREAS:
        for lang, texts in importlib.import_module(f"routes.i18n.{area}").MESSAGES.items():
            for key, text in texts.items():
                earlier = seen.setdefault((lang, key), (area, text))
                if earlier[1] != text:
                    clashes.append((lang, key, earlier[0], area))
    assert clashes == []


def test_error_message_fills_params_and_falls_back_to_the_code():
    assert (
        i18n.error_message("portal_refused", "en", upstream="expired_token")
        == "The portal refused the token (expired_token)."
    )
    assert i18n.error_message("no_such_code_anywhere", "ru") == "no_such_code_anywhere"
