"""PostgreSQL refuses to empty the record of requests and decisions."""

from django.db import migrations

FORWARD = """
CREATE TRIGGER change_request_no_truncate
    BEFORE TRUNCATE ON approvals_changerequest
    FOR EACH STATEMENT EXECUTE FUNCTION redline_refuse_truncate('change requests are kept forever');
CREATE TRIGGER decision_no_truncate
    BEFORE TRUNCATE ON approvals_decision
    FOR EACH STATEMENT EXECUTE FUNCTION redline_refuse_truncate('decisions are append-only');
"""

BACKWARD = """
DROP TRIGGER decision_no_truncate ON approvals_decision;
DROP TRIGGER change_request_no_truncate ON approvals_changerequest;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("approvals", "0003_review_link"),
        ("audit", "0004_truncate_guard"),
    ]
    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
