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
s.query("""INSERT INTO ehac.rejections (declaration_id, error_codes, error_fields, rejected_at)
           VALUES ('d2', ['unknown_airport'], ['trip.arrival_port'], '2026-12-20 01:00:00')""")
s.query("""INSERT INTO ehac_pii.identities (declaration_id, traveller_key, pepper_version, nik, full_name)
           VALUES ('d1', 'k1', 1, '3171044512900001', 'Siti')""")

# Access control: chdb's embedded user may not manage access, so each statement of access.sql
# is parsed by this server (formatQuery) and every database, table and column it grants on
# must exist after the migrations.
access = open(os.path.join(schemas, "access.sql")).read()
grants = 0
for statement in re.split(r";\s*\n", access):
    if not any(l.strip() and not l.strip().startswith("--") for l in statement.splitlines()):
        continue
    body = "\n".join(l for l in statement.splitlines() if not l.strip().startswith("--"))
    s.query("SELECT formatQuery('" + body.replace("\\", "\\\\").replace("'", "\\'") + "')")
    m = re.match(r"\s*GRANT\s+(.*?)\s+ON\s+(\w+)\.(\w+|\*)\s+TO", body, re.S)
    if m:
        grants += 1
        database, table = m.group(2), m.group(3)
        if table == "*":
            found = str(s.query(f"SELECT count() FROM system.databases WHERE name = '{database}'", "TSV")).strip()
        else:
            found = str(s.query(f"SELECT count() FROM system.tables WHERE database = '{database}' AND name = '{table}'", "TSV")).strip()
        if found != "1":
            sys.exit(f"access.sql grants on {database}.{table}, which the migrations do not create")
        for columns in re.findall(r"\(([^)]*)\)", m.group(1)):
            for column in [c.strip() for c in columns.split(",")]:
                n = str(s.query(f"SELECT count() FROM system.columns WHERE database = '{database}' AND table = '{table}' AND name = '{column}'", "TSV")).strip()
                if n != "1":
                    sys.exit(f"access.sql grants on column {database}.{table}.{column}, which does not exist")

queries = sorted(glob.glob(os.path.join(schemas, "queries", "*.sql")))
for path in queries:
    result = str(s.query(open(path).read().replace("{suppress_below}", "11"), "TSV"))
    if not result.strip():
        sys.exit(f"{path} returned no rows on the sample data")
version = str(s.query("SELECT version()", "TSV")).strip()
print(f"checked {len(migrations)} migration(s), {grants} grant(s) and {len(queries)} query(ies) on ClickHouse {version}")
