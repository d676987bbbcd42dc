from django.db import migrations

FORWARD = """
CREATE FUNCTION redline_audit_event_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only: % of event #% refused', TG_OP, OLD.sequence
        USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER audit_event_append_only
    BEFORE UPDATE OR DELETE ON audit_auditevent
    FOR EACH ROW EXECUTE FUNCTION redline_audit_event_append_only();
"""

BACKWARD = """
DROP TRIGGER audit_event_append_only ON audit_auditevent;
DROP FUNCTION redline_audit_event_append_only();
"""


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]
    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
