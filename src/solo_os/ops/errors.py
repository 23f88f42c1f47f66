"""Why an operation on one record was refused; each surface renders it (HTTP 404/409, a message)."""

from __future__ import annotations


class OpError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(OpError):
    """No such record."""


class Conflict(OpError):
    """The record is not in a state that allows the operation (or changed meanwhile)."""
