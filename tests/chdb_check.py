"""Applies the ClickHouse migrations and runs the analysts' queries on chdb (modern ClickHouse,
in-process), with a few rows inserted so the queries touch data. Exits non-zero on any error."""
import glob
import os
import re
import sys

try:
    from chdb import session
except ImportError:
    sys.exit("chdb is not installed: pip install chdb-core")

schemas = sys.argv[1]
s = session.Session()
migrations = sorted(glob.glob(os.path.join(schemas, "migrations", "*.sql")))
for path in migrations:
    for statement in re.split(r";\s*\n", open(path).read()):
        if any(l.strip() and not l.strip().startswith("--") for l in statement.splitlines()):
            s.query(statement)
s.query("""INSERT INTO ehac.declarations (declaration_id, client_id, channel, arrival_port, arrival_port_name,
           arrival_date, triage, home_province, age_years, domestic, sex, transport_mode)
           VALUES ('d1', 'c', 'kiosk', 'CGK', 'Soekarno-Hatta', '2026-12-20', 'red', 'Bali', 30, 1, 'male', 'air')""")
s.query("""INSERT INTO ehac.rejections (declaration_id, error_codes, error_fields, error_messages, rejected_at)
           VALUES ('d2', ['unknown_airport'], ['trip.arrival_port'], ['QQQ'], '2026-12-20 01:00:00')""")
queries = sorted(glob.glob(os.path.join(schemas, "queries", "*.sql")))
for path in queries:
    result = str(s.query(open(path).read(), "TSV"))
    if not result.strip():
        sys.exit(f"{path} returned no rows on the sample data")
version = str(s.query("SELECT version()", "TSV")).strip()
print(f"checked {len(migrations)} migration(s) and {len(queries)} query(ies) on ClickHouse {version}")
