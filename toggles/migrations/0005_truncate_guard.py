"""PostgreSQL refuses to empty the catalog (it holds the red lines) or the version history."""

from django.db import migrations

FORWARD = """
CREATE TRIGGER capability_no_truncate
    BEFORE TRUNCATE ON toggles_capability
    FOR EACH STATEMENT EXECUTE FUNCTION redline_refuse_truncate('red lines can never be removed');
CREATE TRIGGER profile_version_no_truncate
    BEFORE TRUNCATE ON toggles_profileversion
    FOR EACH STATEMENT EXECUTE FUNCTION redline_refuse_truncate('profile versions are append-only');
"""

BACKWARD = """
DROP TRIGGER profile_version_no_truncate ON toggles_profileversion;
DROP TRIGGER capability_no_truncate ON toggles_capability;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0004_truncate_guard"),
        ("toggles", "0004_rollout"),
    ]
    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
