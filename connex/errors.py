"""The one error tree of ConneX.

Every error a caller may see derives from :class:`ConnexError`, which carries its
HTTP status, its problem ``type`` and a machine-readable ``code`` that GraphQL
clients read from ``extensions.code``. Anything else that escapes a resolver is
a bug and is masked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PROBLEM_BASE = "https://connex.dev/problems/"


@dataclass(frozen=True, slots=True)
class FieldError:
    """One invalid input value; ``field`` is a dotted path in the caller's names."""

    field: str
    message: str
    location: str = "body"  # body, query or path

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "location": self.location, "message": self.message}


class ConnexError(Exception):
    status: int = 500
    code: str = "INTERNAL"
    title: str = "Internal server error"

    def __init__(self, detail: str | None = None, *, errors: list[FieldError] | None = None):
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = errors or []

    @property
    def type_uri(self) -> str:
        return PROBLEM_BASE + self.code.lower().replace("_", "-")

    @property
    def extensions(self) -> dict[str, object]:
        """GraphQL error extensions; graphql-core copies them from the original error."""
        extensions: dict[str, object] = {"code": self.code}
        if self.errors:
            extensions["errors"] = [error.as_dict() for error in self.errors]
        return extensions


class BadRequest(ConnexError):
    status, code, title = 400, "BAD_REQUEST", "Bad request"


class Unauthenticated(ConnexError):
    status, code, title = 401, "UNAUTHENTICATED", "Authentication required"


class PermissionDenied(ConnexError):
    status, code, title = 403, "FORBIDDEN", "Permission denied"


class NotFound(ConnexError):
    status, code, title = 404, "NOT_FOUND", "Not found"


class MethodNotAllowed(ConnexError):
    status, code, title = 405, "METHOD_NOT_ALLOWED", "Method not allowed"

    def __init__(self, allowed: list[str]):
        super().__init__(f"Allowed methods: {', '.join(allowed)}")
        self.allowed = allowed


class Conflict(ConnexError):
    status, code, title = 409, "CONFLICT", "Conflict"


class PayloadTooLarge(ConnexError):
    status, code, title = 413, "PAYLOAD_TOO_LARGE", "Request body too large"


class UnsupportedMediaType(ConnexError):
    status, code, title = 415, "UNSUPPORTED_MEDIA_TYPE", "Unsupported media type"


class ValidationFailed(ConnexError):
    status, code, title = 422, "VALIDATION_FAILED", "Invalid input"


class RateLimited(ConnexError):
    status, code, title = 429, "RATE_LIMITED", "Too many requests"


class CostLimitExceeded(ConnexError):
    """A GraphQL query whose cost is over the maximum; it was not executed."""

    status, code, title = 400, "COST_LIMIT_EXCEEDED", "Query cost over the maximum"


class ServiceUnavailable(ConnexError):
    status, code, title = 503, "UNAVAILABLE", "Service unavailable"


@dataclass(slots=True)
class ErrorCatalogue:
    """Status and title per code, for mapping GraphQL error codes back to HTTP."""

    by_code: dict[str, type[ConnexError]] = field(default_factory=dict)

    def status_for(self, code: str | None) -> int:
        error_class = self.by_code.get(code or "")
        return error_class.status if error_class else 500


def _catalogue() -> ErrorCatalogue:
    catalogue = ErrorCatalogue()
    pending: list[type[ConnexError]] = [ConnexError]
    while pending:
        error_class = pending.pop()
        catalogue.by_code[error_class.code] = error_class
        pending.extend(error_class.__subclasses__())
    return catalogue


ERRORS = _catalogue()
