"""Checks the cluster baseline (schemas/clickhouse/cluster/baseline.sql) on modern ClickHouse
through chdb, as far as chdb allows: it has no ZooKeeper and no clusters, so `ON CLUSTER` is
dropped, each Replicated*MergeTree becomes its plain engine and each Distributed table a Merge
table over its `_local` table. With the cluster forms of
the later migrations (cluster/NNNN_*.sql, 0005 on) applied the same way, the result must equal
the schema every migration gives a single server, table by table and column by column (name, type, default), and the analysts'
queries must run through the Distributed names on rows inserted into the `_local` tables, as
the sink writes them. Exits non-zero on any difference or error."""
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


def tsv(sql):
    return str(s.query(sql, "TSV")).strip()


def run(sql):
    for statement in re.split(r";\s*\n", sql):
        if any(l.strip() and not l.strip().startswith("--") for l in statement.splitlines()):
            s.query(statement)


def schema():
    """Every table of ehac and ehac_pii but the bookkeeping: engine, keys, columns."""
    tables = {}
    rows = tsv("SELECT database, name, engine, sorting_key, partition_key FROM system.tables "
               "WHERE database IN ('ehac', 'ehac_pii') AND name != 'schema_migrations' AND NOT startsWith(name, '.') ORDER BY database, name")
    for line in rows.splitlines():
        database, name, engine, sorting_key, partition_key = (line.split("\t") + [""] * 5)[:5]
        columns = tsv(f"SELECT name, type, default_kind, default_expression FROM system.columns "
                      f"WHERE database = '{database}' AND table = '{name}' ORDER BY position")
        tables[f"{database}.{name}"] = (engine, sorting_key, partition_key, columns)
    return tables


for path in sorted(glob.glob(os.path.join(schemas, "migrations", "*.sql"))):
    run(open(path).read())
single = schema()
# Refreshable views exist on single servers only: 18.16, the cluster proven here, has none, and
# the cluster form of their migration says what a cluster reads instead (cluster/0011).
refreshable = {f"ehac.{v}" for v in tsv("SELECT view FROM system.view_refreshes WHERE database = 'ehac'").splitlines()}
if "ehac.microdata_published" not in refreshable:
    sys.exit(f"expected the refreshable ehac.microdata_published, found {sorted(refreshable)}")
s.query("DROP DATABASE ehac")
s.query("DROP DATABASE ehac_pii")

baseline = open(os.path.join(schemas, "cluster", "baseline.sql")).read()
if baseline.count("ON CLUSTER ${CLUSTER}") < 20:
    sys.exit("the baseline does not run its statements ON CLUSTER")
later = sorted(p for p in glob.glob(os.path.join(schemas, "cluster", "*.sql")) if os.path.basename(p)[:4].isdigit())
single_later = sorted(p for p in glob.glob(os.path.join(schemas, "migrations", "*.sql")) if int(os.path.basename(p)[:4]) > 4)
if [os.path.basename(p) for p in later] != [os.path.basename(p) for p in single_later]:
    sys.exit(f"every migration after 0004 needs its cluster form: {single_later} vs {later}")
for path in [None] + later:
    sql = baseline if path is None else open(path).read()
    standalone = sql.replace(" ON CLUSTER ${CLUSTER}", "")
    standalone = re.sub(r"Replicated(\w*MergeTree)\('[^']*',\s*'[^']*'(?:,\s*)?", r"\1(", standalone)
    standalone = re.sub(r"ENGINE = Distributed\(\$\{CLUSTER\}, (\w+), (\w+)[^;\n]*", r"ENGINE = Merge(\1, '^\2$')", standalone)
    code = "\n".join(l for l in standalone.splitlines() if not l.strip().startswith("--"))
    if "Replicated" in code or "${CLUSTER}" in code or "Distributed" in code:
        sys.exit(f"the substitution left cluster-only parts in {path or 'the baseline'}")
    run(standalone)
cluster = schema()

problems = []
expected_names = set()
for name, (engine, sorting_key, partition_key, columns) in single.items():
    local = name + "_local"
    if name in refreshable:
        continue
    if engine == "View":
        expected_names.add(name)
        if cluster.get(name, ("",))[0] != "View" or cluster[name][3] != columns:
            problems.append(f"{name}: the cluster's view differs: {cluster.get(name)}")
        continue
    expected_names.update([name, local])
    if name not in cluster or cluster[name][0] != "Merge":
        problems.append(f"{name}: no Distributed table of that name in the baseline")
    elif cluster[name][3] != columns:
        problems.append(f"{name}: the Distributed table's columns differ:\n{cluster[name][3]}\nvs\n{columns}")
    if local not in cluster:
        problems.append(f"{local}: missing")
        continue
    if cluster[local][:3] != (engine, sorting_key, partition_key):
        problems.append(f"{local}: engine or keys {cluster[local][:3]} vs {(engine, sorting_key, partition_key)}")
    if cluster[local][3] != columns:
        problems.append(f"{local}: columns differ:\n{cluster[local][3]}\nvs\n{columns}")
extra = set(cluster) - expected_names
if extra:
    problems.append(f"tables only in the baseline: {sorted(extra)}")
if problems:
    sys.exit("the cluster baseline and later cluster migrations are not the schema of the migrations:\n" + "\n".join(problems))

# Rows as the sink writes them (into the local tables); analysts read the Distributed names.
s.query("""INSERT INTO ehac.declarations_local (declaration_id, client_id, channel, arrival_port, arrival_port_name,
           arrival_date, triage, home_province, age_years, domestic, sex, transport_mode, inserted_at, kafka_partition, kafka_offset)
           VALUES ('d1', 'c', 'kiosk', 'CGK', 'Soekarno-Hatta', '2026-12-20', 'red', 'Bali', 30, 1, 'male', 'air', '2026-12-20 00:00:00', 0, 5)""")
s.query("""INSERT INTO ehac.rejections_local (declaration_id, error_codes, error_fields, rejected_at)
           VALUES ('d2', ['unknown_airport'], ['trip.arrival_port'], '2026-12-20 01:00:00')""")
s.query("""INSERT INTO ehac_pii.identities_local (declaration_id, traveller_key, pepper_version, nik, full_name, kafka_partition, kafka_offset)
           VALUES ('d1', 'k1', 1, '3171044512900001', 'Siti', 0, 5)""")
for positions in ["ehac.declaration_positions", "ehac_pii.identity_positions"]:
    if tsv(f"SELECT count() FROM {positions} WHERE kafka_offset = 5") != "1":
        sys.exit(f"{positions} was not filled by the insert into the local table")
queries = sorted(glob.glob(os.path.join(schemas, "queries", "*.sql")))
for path in queries:
    if not tsv(open(path).read().replace("{suppress_below}", "11")):
        sys.exit(f"{path} returned no rows through the Distributed names")
print(f"checked the cluster baseline: {len(cluster)} table(s) equal to the {len(single_later) + 4} migrations "
      f"(but the {len(refreshable)} refreshable view(s)), "
      f"{len(queries)} query(ies) on ClickHouse {tsv('SELECT version()')}")
