"""Approval errors; each maps to its HTTP status once, in config/api.py."""

from config.errors import Conflict, DomainError


class NotAllowed(DomainError):
    status_code = 403
    code = "permission_denied"


class SelfApprovalForbidden(DomainError):
    status_code = 403
    code = "self_approval"


class RequestNotPending(Conflict):
    code = "not_pending"


class AlreadyDecided(Conflict):
    code = "already_decided"


class DigestMismatch(Conflict):
    code = "digest_mismatch"
