"""The one error for bad input: a request field (or a CLI option, a conversion schema's path) that cannot be used.

The gateway answers it 400 with the field named; which `error` code it answers with is the endpoint's
(`invalid_request` for events and clicks, `invalid_postback`, `invalid_schema`), not the error's.
"""

from __future__ import annotations


class InputError(ValueError):
    """`field` names what is wrong (`body` for the body as a whole, `user.email`, `fine.7[0].max_count`);
    `message` says why. ``str()`` is ``"<field>: <message>"``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def as_json(self, error: str = "invalid_request") -> dict[str, str]:
        return {"error": error, "field": self.field, "message": self.message}


class NotFound(LookupError):
    """What a request names does not exist (an app, an integration, a link): answered 404."""
