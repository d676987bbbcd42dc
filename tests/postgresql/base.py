"""PostgreSQL for the test suite.

Transactional tests end with a flush, a TRUNCATE of every table, which the database
refuses on the guarded tables. The flush lifts those guards for its own transaction, as
only the tables' owner can (ALTER TABLE), and puts them back before it commits.
"""

from django.db.backends.postgresql import base, operations

TRUNCATE_GUARDED_TABLES = """
SELECT DISTINCT tgrelid::regclass::text FROM pg_trigger
WHERE NOT tgisinternal AND tgtype & 32 <> 0  -- TRIGGER_TYPE_TRUNCATE
"""


class DatabaseOperations(operations.DatabaseOperations):
    def sql_flush(self, style, tables, *, reset_sequences=False, allow_cascade=False):
        truncate = super().sql_flush(
            style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade
        )
        if not truncate:
            return truncate
        with self.connection.cursor() as cursor:
            cursor.execute(TRUNCATE_GUARDED_TABLES)
            guarded = sorted({table for (table,) in cursor.fetchall()} & set(tables))
        names = [self.quote_name(table) for table in guarded]
        return (
            [f"ALTER TABLE {name} DISABLE TRIGGER USER;" for name in names]
            + truncate
            + [f"ALTER TABLE {name} ENABLE TRIGGER USER;" for name in names]
        )


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations
