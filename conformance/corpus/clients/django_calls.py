"""Django's PostgreSQL introspection (django/db/backends/postgresql/introspection.py), as
`manage.py inspectdb` runs it over the tpch schema, each call after a marker."""
import sys

import django
from django.conf import settings

settings.configure(DATABASES={"default": {
    "ENGINE": "django.db.backends.postgresql", "NAME": sys.argv[1], "USER": "postgres",
    "HOST": "127.0.0.1", "PORT": "5432", "OPTIONS": {"options": "-c search_path=tpch"}}})
django.setup()
from django.db import connection  # noqa: E402

intro = connection.introspection
with connection.cursor() as cursor:
    def mark(call):
        cursor.execute(f"SELECT 'harvest: {call}'")

    for call, run in [
        ("get_table_list", lambda: intro.get_table_list(cursor)),
        ("get_table_description", lambda: intro.get_table_description(cursor, "nation")),
        ("get_sequences", lambda: intro.get_sequences(cursor, "nation")),
        ("get_relations", lambda: intro.get_relations(cursor, "lineitem")),
        ("get_primary_key_column", lambda: intro.get_primary_key_column(cursor, "nation")),
        ("get_constraints", lambda: intro.get_constraints(cursor, "nation")),
    ]:
        mark(call)
        run()
