"""PostgreSQL itself refuses to change a red line or a profile version, whoever asks."""

from django.db import migrations

FORWARD = """
CREATE FUNCTION redline_capability_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'red line % can never be removed', OLD.key
            USING ERRCODE = 'restrict_violation';
    ELSIF OLD.is_red_line THEN
        RAISE EXCEPTION 'red line % can never change', OLD.key
            USING ERRCODE = 'restrict_violation';
    END IF;
    RAISE EXCEPTION 'capability % cannot become a red line; add a red line under a new key', OLD.key
        USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER capability_red_line_immutable
    BEFORE UPDATE OR DELETE ON toggles_capability
    FOR EACH ROW WHEN (OLD.is_red_line)
    EXECUTE FUNCTION redline_capability_guard();
CREATE TRIGGER capability_no_promotion_to_red_line
    BEFORE UPDATE ON toggles_capability
    FOR EACH ROW WHEN (NEW.is_red_line AND NOT OLD.is_red_line)
    EXECUTE FUNCTION redline_capability_guard();

CREATE FUNCTION redline_profile_version_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'profile versions are append-only: % of version % refused', TG_OP, OLD.id
        USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER profile_version_append_only
    BEFORE UPDATE OR DELETE ON toggles_profileversion
    FOR EACH ROW EXECUTE FUNCTION redline_profile_version_append_only();

CREATE FUNCTION redline_profile_version_no_red_lines() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    red_key text;
BEGIN
    SELECT c.key INTO red_key FROM toggles_capability c
        WHERE c.is_red_line AND NEW."values" ? c.key ORDER BY c.key LIMIT 1;
    IF red_key IS NOT NULL THEN
        RAISE EXCEPTION 'red line % can never be set by a profile version', red_key
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER profile_version_no_red_lines
    BEFORE INSERT ON toggles_profileversion
    FOR EACH ROW EXECUTE FUNCTION redline_profile_version_no_red_lines();
"""

BACKWARD = """
DROP TRIGGER profile_version_no_red_lines ON toggles_profileversion;
DROP FUNCTION redline_profile_version_no_red_lines();
DROP TRIGGER profile_version_append_only ON toggles_profileversion;
DROP FUNCTION redline_profile_version_append_only();
DROP TRIGGER capability_no_promotion_to_red_line ON toggles_capability;
DROP TRIGGER capability_red_line_immutable ON toggles_capability;
DROP FUNCTION redline_capability_guard();
"""


class Migration(migrations.Migration):
    dependencies = [("toggles", "0002_red_line_fixed_value")]
    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
