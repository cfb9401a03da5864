"""The exception tree of pointsman.

Every failure a client can see is a :class:`PointsmanError`: it carries its
HTTP status and a detail sentence that is safe to show (no secret, no DSN).
The HTTP edge alone turns it into the ``{"detail", "status"}`` body.
"""

from __future__ import annotations


class PointsmanError(Exception):
    """A failure with an HTTP status and a client-safe detail."""

    status: int = 500
    default_detail: str = "Internal server error"

    def __init__(self, detail: str | None = None, *, status: int | None = None):
        self.detail = detail if detail is not None else self.default_detail
        if status is not None:
            self.status = status
        super().__init__(self.detail)

    def body(self) -> dict[str, object]:
        return {"detail": self.detail, "status": self.status}


class BadRequest(PointsmanError):
    status = 400
    default_detail = "Bad Request"


class ValidationFailed(BadRequest):
    """A request field failed validation: ``Bad Request: <field>: <message>``."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"Bad Request: {field}: {message}")


class Unauthorized(PointsmanError):
    status = 401
    default_detail = "Unauthorized: Missing or invalid API key"


class PermissionDenied(PointsmanError):
    status = 403
    default_detail = "Permission denied"


class NotFound(PointsmanError):
    status = 404
    default_detail = "Not found"


class MethodNotAllowed(PointsmanError):
    status = 405
    default_detail = "Invalid method"


class RequestTimeout(PointsmanError):
    status = 408
    default_detail = "Query timed out"


class Conflict(PointsmanError):
    status = 409
    default_detail = "Conflict"


class Gone(PointsmanError):
    status = 410
    default_detail = "Gone"


class TooManyRequests(PointsmanError):
    status = 429
    default_detail = "Too Many Requests"

    def __init__(self, retry_after_seconds: int):
        self.retry_after_seconds = retry_after_seconds
        super().__init__()


class ServiceUnavailable(PointsmanError):
    status = 503
    default_detail = "Service unavailable"


# -- errors raised by engines/ (customer databases) --------------------------


class EngineError(PointsmanError):
    """Base of every failure that comes from a customer database."""


class QueryTimeoutError(EngineError):
    """The statement ran past the connection's queryTimeoutSeconds and was
    cancelled on the database server."""

    status = 408


class QueryFailedError(EngineError):
    """The database refused the statement (syntax, missing table, permission).

    The detail is the database's own message, scrubbed of secrets."""

    status = 400


class DatabaseUnavailableError(EngineError):
    """The database could not be reached; the detail names the connection."""

    status = 502


class MissingDriverError(EngineError):
    """The dialect's driver is an optional extra that is not installed."""

    status = 400


class SecretUnreadableError(EngineError):
    """The stored secret cannot be decrypted with the keys this server has."""

    status = 500


class ConnectionBusyError(EngineError):
    """No pooled connection came free within the connection's
    ``acquireTimeoutSeconds``, or this server's cap on open database
    connections left no room; the detail names the connection."""

    status = 503

    def __init__(self, detail: str, *, retry_after_seconds: int = 1):
        self.retry_after_seconds = retry_after_seconds
        super().__init__(detail)


class QueryQueueFullError(EngineError):
    """The connection already runs ``maxConcurrentQueries`` and has
    ``maxQueuedQueries`` more waiting: the query is refused, not queued."""

    status = 429

    def __init__(self, detail: str, *, retry_after_seconds: int = 1):
        self.retry_after_seconds = retry_after_seconds
        super().__init__(detail)
