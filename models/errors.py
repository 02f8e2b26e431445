"""The one error type the models raise for requests they refuse; routes render it."""

from __future__ import annotations


class ServiceError(Exception):
    """A request the models refuse: `code` for machines, `message` for people, `status` for HTTP."""

    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
