"""Domain errors: plain exceptions with a message a person can act on.

Each carries the HTTP status it maps to, so the API and the console translate them once.
"""


class DomainError(Exception):
    status_code = 400
    code = "invalid"


class RedLineViolation(DomainError):
    """Something tried to change, remove or override a red line."""

    status_code = 403
    code = "red_line"


class NotFound(DomainError):
    status_code = 404
    code = "not_found"


class ValidationFailed(DomainError):
    status_code = 400
    code = "invalid"


class Conflict(DomainError):
    status_code = 409
    code = "conflict"
