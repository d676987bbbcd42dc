"""PostgreSQL refuses edits of a submitted request's content, of decisions, and of final states."""

from django.db import migrations

FORWARD = """
CREATE FUNCTION redline_change_request_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'change requests are kept forever: delete of request #% refused', OLD.id
            USING ERRCODE = 'restrict_violation';
    END IF;
    IF (NEW.tenant_id, NEW.kind, NEW.profile_id, NEW.base_version, NEW.changes, NEW.previous,
        NEW.directions, NEW.risk_tier, NEW.is_loosening, NEW.required_vendor,
        NEW.required_customer, NEW.required_any, NEW.vetoes_required, NEW.justification,
        NEW.requester_id, NEW.time_box, NEW.digest, NEW.created_at, NEW.expires_at)
       IS DISTINCT FROM
       (OLD.tenant_id, OLD.kind, OLD.profile_id, OLD.base_version, OLD.changes, OLD.previous,
        OLD.directions, OLD.risk_tier, OLD.is_loosening, OLD.required_vendor,
        OLD.required_customer, OLD.required_any, OLD.vetoes_required, OLD.justification,
        OLD.requester_id, OLD.time_box, OLD.digest, OLD.created_at, OLD.expires_at) THEN
        RAISE EXCEPTION 'change request #% is immutable once submitted; withdraw it and submit a new one', OLD.id
            USING ERRCODE = 'restrict_violation';
    END IF;
    IF NEW.status IS DISTINCT FROM OLD.status AND NOT (
        (OLD.status = 'pending' AND NEW.status IN ('approved', 'rejected', 'withdrawn', 'expired', 'stale'))
        OR (OLD.status = 'approved' AND NEW.status IN ('applied', 'stale', 'expired'))
    ) THEN
        RAISE EXCEPTION 'change request #% cannot move from % to %', OLD.id, OLD.status, NEW.status
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER change_request_guard
    BEFORE UPDATE OR DELETE ON approvals_changerequest
    FOR EACH ROW EXECUTE FUNCTION redline_change_request_guard();

CREATE FUNCTION redline_decision_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'decisions are append-only: % of decision % refused', TG_OP, OLD.id
        USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER decision_append_only
    BEFORE UPDATE OR DELETE ON approvals_decision
    FOR EACH ROW EXECUTE FUNCTION redline_decision_append_only();
"""

BACKWARD = """
DROP TRIGGER decision_append_only ON approvals_decision;
DROP FUNCTION redline_decision_append_only();
DROP TRIGGER change_request_guard ON approvals_changerequest;
DROP FUNCTION redline_change_request_guard();
"""


class Migration(migrations.Migration):
    dependencies = [("approvals", "0001_initial")]
    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
