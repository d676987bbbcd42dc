"""TRUNCATE fires no row trigger, so the append-only and red-line guards get a statement
trigger of their own: PostgreSQL refuses to empty a guarded table, whoever asks.

The function lives here, in the app every other app records to; toggles and approvals
attach it to their tables with a reason of their own.
"""

from django.db import migrations

FORWARD = """
CREATE FUNCTION redline_refuse_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'TRUNCATE of % refused: %', TG_TABLE_NAME, TG_ARGV[0]
        USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER audit_event_no_truncate
    BEFORE TRUNCATE ON audit_auditevent
    FOR EACH STATEMENT EXECUTE FUNCTION redline_refuse_truncate('audit events are append-only');
"""

BACKWARD = """
DROP TRIGGER audit_event_no_truncate ON audit_auditevent;
DROP FUNCTION redline_refuse_truncate();
"""


class Migration(migrations.Migration):
    dependencies = [("audit", "0003_audit_webhook_cursor")]
    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
