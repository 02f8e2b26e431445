"""The server's message catalog, RU and EN: words for error codes and server-rendered pages.

One module per area (`core`, `connect`, `conferences`, `openlines`, …), each with
`MESSAGES = {"en": {key: text}, "ru": {key: text}}`; they are merged here. Keys for error codes are
`error.<code>`; texts are `str.format` templates over the error's params. Models never hold words:
they raise `ServiceError(code, status=…, **params)` and the routes look the words up here.
"""

from __future__ import annotations

import importlib
import pkgutil

from flask import g, has_request_context, request

LANGUAGES = ("ru", "en")
DEFAULT_LANGUAGE = "ru"

CATALOG: dict[str, dict[str, str]] = {lang: {} for lang in LANGUAGES}
for _module in pkgutil.iter_modules(__path__):
    _messages = importlib.import_module(f"{__name__}.{_module.name}").MESSAGES
    for _lang in LANGUAGES:
        CATALOG[_lang].update(_messages.get(_lang, {}))


def normalize_language(raw: str | None) -> str | None:
    """'ru', 'en', 'ua' → one of LANGUAGES, or None: Bitrix24 LANG codes other than ru/en read as English."""
    if not raw:
        return None
    code = str(raw).strip().lower()[:2]
    if code in LANGUAGES:
        return code
    return "en" if code.isalpha() else None


def request_language() -> str:
    """The language for this request: the verified user's LANG, then ?lang=, a form LANG, Accept-Language."""
    if not has_request_context():
        return DEFAULT_LANGUAGE
    identity = g.get("identity")
    for candidate in (
        getattr(identity, "lang", None),
        request.args.get("lang"),
        request.form.get("LANG") if request.mimetype == "application/x-www-form-urlencoded" else None,
    ):
        lang = normalize_language(candidate)
        if lang:
            return lang
    return request.accept_languages.best_match(LANGUAGES) or DEFAULT_LANGUAGE


def translate(key: str, lang: str | None = None, default: str | None = None, **params) -> str:
    """The text for `key` in `lang` (English, then `default`, then the key itself as fallbacks)."""
    lang = lang or request_language()
    text = CATALOG.get(lang, {}).get(key) or CATALOG["en"].get(key)
    if text is None:
        return default if default is not None else key
    try:
        return text.format(**params)
    except (KeyError, IndexError, ValueError):
        return text


def error_message(code: str, lang: str = "en", fallback: str | None = None, **params) -> str:
    """The words for an error code (JSON answers use English, for curl users; pages the user's language)."""
    return translate(f"error.{code}", lang, default=fallback or code, **params)
