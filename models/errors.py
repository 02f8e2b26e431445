"""The one error type the models raise for requests they refuse; routes render it."""

from __future__ import annotations


class ServiceError(Exception):
    """A request the models refuse: a stable `code` for machines, `status` for HTTP, `params` for the words.

    Models hold no UI text: the words for a code live in the route layer's catalog (`routes/i18n/`), in
    Russian and English. `message` is a legacy English fallback used only while a code has no catalog entry.
    """

    def __init__(self, code: str, message: str | None = None, status: int = 400, **params):
        super().__init__(code)
        self.code = code
        self.message = message or code
        self.status = status
        self.params = params
