"""Applies the ClickHouse migrations and runs the analysts' queries on chdb (modern ClickHouse,
in-process), with a few rows inserted so the queries touch data. Rows stored before migration
0004 must come out with their identity in ehac_pii and nothing identifying left in ehac. The
access-control statements are parsed and their objects checked. Exits non-zero on any error."""
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


def tsv(sql):
    return str(s.query(sql, "TSV")).strip()


for path in migrations:
    if os.path.basename(path).startswith("0004_"):
        # Rows stored before personal data moved out: 0004 must carry them to ehac_pii.
        s.query("""INSERT INTO ehac.declarations (declaration_id, client_id, nik, full_name, phone, seat,
                   destination_street, kafka_partition, kafka_offset, arrival_date)
                   VALUES ('old1', 'c', '3171044512900001', 'Siti Lestari', '+6281234567890', '12A', 'Jl. Raya Kuta 1', 0, 7, '2026-12-20')""")
        s.query("""INSERT INTO ehac.rejections (declaration_id, source_topic, source_partition, source_offset, error_codes,
                   error_fields, error_messages, payload, payload_json, rejected_at)
                   VALUES ('old2', 'raw', 1, 9, ['unknown_airport'], ['trip.arrival_port'], ['QQQ unknown'], 'bytes', '{}', '2026-12-20 01:00:00')""")
    for statement in re.split(r";\s*\n", open(path).read()):
        if any(l.strip() and not l.strip().startswith("--") for l in statement.splitlines()):
            s.query(statement)
    if os.path.basename(path).startswith("0004_"):
        moved = tsv("SELECT declaration_id, nik, full_name, phone, seat, destination_street, traveller_key, pepper_version FROM ehac_pii.identities")
        if moved != "old1\t3171044512900001\tSiti Lestari\t+6281234567890\t12A\tJl. Raya Kuta 1\t\t0":
            sys.exit(f"0004 did not move the identity of a stored declaration: {moved!r}")
        moved = tsv("SELECT declaration_id, source_position, error_messages, payload FROM ehac_pii.rejected_payloads ANY INNER JOIN ehac_pii.rejected_payload_positions ON 1 = 1")
        if moved != "old2\traw/1/9\t['QQQ unknown']\tbytes":
            sys.exit(f"0004 did not move a stored rejection's payload: {moved!r}")
        left = tsv("SELECT groupArray(name) FROM system.columns WHERE database = 'ehac' AND name IN ('nik', 'passport_number', 'full_name', 'date_of_birth', 'phone', 'email', 'seat', 'destination_street', 'destination_postal_code', 'payload', 'payload_json', 'error_messages')")
        if left != "[]":
            sys.exit(f"identifying columns left in the analyst database: {left}")
        if tsv("SELECT declaration_id, traveller_key = '', pepper_version FROM ehac.declarations") != "old1\t1\t0":
            sys.exit("the stored declaration is not kept in ehac.declarations")
        s.query("TRUNCATE TABLE ehac.declarations")
        s.query("TRUNCATE TABLE ehac.rejections")
        s.query("TRUNCATE TABLE ehac_pii.identities")
        s.query("TRUNCATE TABLE ehac_pii.rejected_payloads")
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
        if database == "system":
            # The server's own tables (query_log is made by its config, which chdb lacks).
            found = "1" if table in ("query_log",) else "0"
        elif table == "*":
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
