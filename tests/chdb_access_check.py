"""Enforces schemas/clickhouse/access.sql on modern ClickHouse (chdb) and checks who may read and
write what, user by user.

chdb's session is always the user `default`, and it has only the read-only users.xml storage, so
access.sql's CREATE ROLE / CREATE USER cannot run as written. Instead its roles, users and
GRANTs are written into a users.xml that chdb loads (the GRANT texts as they are in the file),
and a query is run with a user's rights through a view that user owns: `CREATE VIEW ...
DEFINER = user SQL SECURITY DEFINER` for a SELECT, and a materialized view owned by the user
for an INSERT (rows inserted into a Null table are pushed by the view, with the owner's rights,
into the real table). ClickHouse's own access checks then answer, with Code 497 where a grant
is missing. What this cannot show: DDL by a user and logging in (passwords, the closed
`default`), since nothing here logs in as anyone.

Usage: python3 tests/chdb_access_check.py schemas/clickhouse
"""
import glob
import os
import re
import sys
import tempfile
from xml.sax.saxutils import escape

from chdb import session

schemas = sys.argv[1]


def statements(text):
    """The statements of a SQL file, comments dropped, white space folded."""
    for statement in re.split(r";\s*\n", text):
        body = "\n".join(l for l in statement.splitlines() if not l.strip().startswith("--")).strip().rstrip(";")
        if body:
            yield " ".join(body.split())


def users_xml(access_sql, probe_grants):
    """access.sql's profiles, roles, quotas, users and grants as users.xml; its other statements
    (the ALTERs) are returned to run as SQL. XML roles hold grants only, so a role's settings
    profile and quota go on the users whose default role it is."""
    profiles, roles, role_profile, quotas, role_quota, users, rest = {}, {}, {}, {}, {}, {}, []
    for st in statements(access_sql):
        if m := re.fullmatch(r"CREATE SETTINGS PROFILE (?:IF NOT EXISTS )?(\w+) SETTINGS (.*)", st):
            profiles[m[1]] = [tuple(x.strip() for x in kv.split("=", 1)) for kv in m[2].split(",")]
        elif m := re.fullmatch(r"CREATE ROLE (?:IF NOT EXISTS )?(\w+)(?: SETTINGS PROFILE '(\w+)')?", st):
            roles[m[1]] = []
            if m[2]:
                role_profile[m[1]] = m[2]
        elif m := re.fullmatch(r"CREATE QUOTA (?:IF NOT EXISTS )?(\w+) FOR INTERVAL 1 hour MAX (.*) TO (\w+)", st):
            quotas[m[1]] = [tuple(x.strip() for x in kv.split("=")) for kv in m[2].split(",")]
            role_quota[m[3]] = m[1]
        elif m := re.fullmatch(r"CREATE USER (?:IF NOT EXISTS )?(\w+) IDENTIFIED WITH sha256_hash BY '[^']*' DEFAULT ROLE (\w+)", st):
            users[m[1]] = {"default_role": m[2], "grants": []}
        elif m := re.fullmatch(r"(GRANT .*) TO (\w+)", st):
            grant, grantee = m[1], m[2]
            if grantee in roles:
                roles[grantee].append(grant)
            elif grantee in users:
                users[grantee]["grants"].append(grant)
            else:
                sys.exit(f"access.sql grants to {grantee} before creating it: {st}")
        elif st.startswith("ALTER TABLE "):
            rest.append(st)
        else:
            sys.exit(f"this check cannot translate a statement of access.sql: {st}")
    x = ["<clickhouse>", "<profiles><default/>"]
    for name, settings in profiles.items():
        x.append(f"<{name}>" + "".join(f"<{k}>{escape(v.strip(chr(39)))}</{k}>" for k, v in settings) + f"</{name}>")
    x.append("</profiles><quotas><default/>")
    for name, limits in quotas.items():
        x.append(f"<{name}><interval><duration>3600</duration>" + "".join(f"<{k}>{v}</{k}>" for k, v in limits) + f"</interval></{name}>")
    x.append("</quotas><roles>")
    for name, grants in roles.items():
        x.append(f"<{name}><grants>" + "".join(f"<query>{escape(g)}</query>" for g in grants) + f"</grants></{name}>")
    x.append("</roles><users><default><password/><networks><ip>::1</ip><ip>127.0.0.1</ip></networks><profile>default</profile>"
             "<quota>default</quota><access_management>1</access_management></default>")
    for name, user in users.items():
        role = user["default_role"]
        grants = user["grants"] + [f"GRANT {role}"] + probe_grants
        x.append(f"<{name}><password/><networks><ip>::1</ip></networks><profile>{role_profile.get(role, 'default')}</profile>"
                 f"<quota>{role_quota.get(role, 'default')}</quota><grants>"
                 + "".join(f"<query>{escape(g)}</query>" for g in grants) + f"</grants></{name}>")
    x.append("</users></clickhouse>")
    return "\n".join(x), list(users), rest


# Test-only: the owner of an INSERT probe reads the probe's own Null table, nothing else.
xml, users, alters = users_xml(open(os.path.join(schemas, "access.sql")).read(), ["GRANT SELECT ON probe.*"])
scratch = tempfile.TemporaryDirectory(prefix="ehac-chdb-access-")
work = scratch.name
with open(os.path.join(work, "users.xml"), "w") as f:
    f.write(xml)
with open(os.path.join(work, "config.xml"), "w") as f:
    f.write(f"<clickhouse><users_config>{work}/users.xml</users_config></clickhouse>\n")
s = session.Session(f":memory:?config-file={work}/config.xml")

for path in sorted(glob.glob(os.path.join(schemas, "migrations", "*.sql"))):
    for st in statements(open(path).read()):
        s.query(st)
for st in alters:
    s.query(st)
s.query("CREATE DATABASE probe")
s.query("""INSERT INTO ehac_pii.identities (declaration_id, traveller_key, pepper_version, nik, full_name, date_of_birth)
           VALUES ('d0', 'k0', 1, '3171044512900001', 'Siti Rahma', '1990-12-05')""")
s.query("""INSERT INTO ehac.declarations (declaration_id, client_id, channel, arrival_port, arrival_date, triage, home_province, sex)
           VALUES ('d0', 'c', 'kiosk', 'CGK', '2026-12-20', 'green', 'Bali', 'female')""")

probes = 0


def column_types(table, columns):
    database, name = table.split(".")
    return [str(s.query(f"SELECT type FROM system.columns WHERE database = '{database}' AND table = '{name}' AND name = '{c}'", "TSV")).strip()
            for c in columns]


def as_user(user, sql):
    """Runs sql with user's rights: 'ok' or the ClickHouse error code."""
    global probes
    probes += 1
    try:
        if m := re.fullmatch(r"INSERT INTO (\S+) \(([^)]*)\) (SELECT .*)", sql, re.S):
            target, columns, select = m[1], [c.strip() for c in m[2].split(",")], m[3]
            spec = ", ".join(f"{c} {t}" for c, t in zip(columns, column_types(target, columns)))
            s.query(f"CREATE TABLE probe.source_{probes} ({spec}) ENGINE = Null")
            s.query(f"CREATE MATERIALIZED VIEW probe.insert_{probes} TO {target} ({spec}) "
                    f"DEFINER = {user} SQL SECURITY DEFINER AS SELECT {', '.join(columns)} FROM probe.source_{probes}")
            s.query(f"INSERT INTO probe.source_{probes} {select}")
        else:
            s.query(f"CREATE VIEW probe.select_{probes} DEFINER = {user} SQL SECURITY DEFINER AS {sql}")
            s.query(f"SELECT * FROM probe.select_{probes}", "TSV")
        return "ok"
    except Exception as e:
        code = re.search(r"Code: (\d+)", str(e))
        return code[1] if code else str(e).splitlines()[0]


DENIED, UNKNOWN_COLUMN = "497", "47"
matrix = [
    # The sink: inserts into both databases, reads only its dedup window's positions.
    ("writer", "INSERT INTO ehac_pii.identities (declaration_id, traveller_key, nik, full_name) SELECT 'w1', 'kw', '3171', 'Wayan'", "ok"),
    ("writer", "INSERT INTO ehac.declarations (declaration_id, arrival_port, arrival_date) SELECT 'w1', 'DPS', toDate('2026-12-21')", "ok"),
    ("writer", "INSERT INTO ehac.rejections (source_topic, source_partition, source_offset) SELECT 'raw', 0, 7", "ok"),
    ("writer", "INSERT INTO ehac_pii.rejected_payloads (source_topic, source_partition, source_offset, payload_json) SELECT 'raw', 0, 7, '{}'", "ok"),
    ("writer", "SELECT declaration_id FROM ehac_pii.identity_positions", "ok"),
    ("writer", "SELECT declaration_id FROM ehac.declaration_positions", "ok"),
    ("writer", "SELECT source_position FROM ehac.rejection_positions", "ok"),
    ("writer", "SELECT source_position FROM ehac_pii.rejected_payload_positions", "ok"),
    ("writer", "SELECT * FROM ehac_pii.identities", DENIED),
    ("writer", "SELECT nik FROM ehac_pii.identities", DENIED),
    ("writer", "SELECT payload_json FROM ehac_pii.rejected_payloads", DENIED),
    ("writer", "SELECT count() FROM ehac.declarations", DENIED),
    # Analysts: the analyst database only; no identity there; no writes.
    ("analyst", "SELECT count(), any(arrival_port) FROM ehac.declarations", "ok"),
    ("analyst", "SELECT nik FROM ehac.declarations", UNKNOWN_COLUMN),
    ("analyst", "SELECT * FROM ehac_pii.identities", DENIED),
    ("analyst", "SELECT count() FROM ehac_pii.identity_positions", DENIED),
    ("analyst", "SELECT count() FROM ehac.declarations d JOIN ehac_pii.identities i USING declaration_id", DENIED),
    ("analyst", "SELECT count() FROM ehac.declarations WHERE declaration_id IN (SELECT declaration_id FROM ehac_pii.identities)", DENIED),
    ("analyst", "INSERT INTO ehac.declarations (declaration_id) SELECT 'a1'", DENIED),
    # Investigators: both databases, read only.
    ("investigator", "SELECT declaration_id, nik, full_name FROM ehac_pii.identities", "ok"),
    ("investigator", "SELECT payload_json FROM ehac_pii.rejected_payloads", "ok"),
    ("investigator", "INSERT INTO ehac_pii.identities (declaration_id) SELECT 'i1'", DENIED),
    # ehac reconcile: NIK and birth date of the pending, nothing else of identity.
    ("reconciler", "SELECT declaration_id, nik, date_of_birth FROM ehac_pii.identities", "ok"),
    ("reconciler", "SELECT full_name FROM ehac_pii.identities", DENIED),
    ("reconciler", "SELECT arrival_port FROM ehac.declarations", DENIED),
    ("migrator", "SELECT count() FROM ehac_pii.identities", "ok"),
]
for path in sorted(glob.glob(os.path.join(schemas, "queries", "*.sql"))):
    query = " ".join(statements(open(path).read().replace("{suppress_below}", "11")))
    matrix.append(("analyst", query, "ok"))

wrong = []
for user, sql, expected in matrix:
    got = as_user(user, sql)
    print(f"{user:12} {'ok' if got == expected else 'WRONG':5} {got:3} {sql[:100]}")
    if got != expected:
        wrong.append(f"{user}: {sql} -> {got}, expected {expected}")
# The writer's inserts went through the position views (run as their definer) too.
positions = str(s.query("SELECT count() FROM ehac_pii.identity_positions WHERE declaration_id = 'w1'", "TSV")).strip()
if positions != "1":
    wrong.append(f"the writer's identity row is {positions} times in ehac_pii.identity_positions, expected 1")
if wrong:
    sys.exit("access.sql is not what it should be on modern ClickHouse:\n" + "\n".join(wrong))
version = str(s.query("SELECT version()", "TSV")).strip()
print(f"enforced {len(matrix)} access check(s) for {len(users)} user(s) on ClickHouse {version}")
