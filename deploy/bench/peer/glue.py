#!/usr/bin/env python3
"""Glue-script peer: copy the enriched-declarations topic into ClickHouse.

What a small team writes first instead of a dedicated sink service: one Python process, a
confluent-kafka consumer in a group, fastavro to decode, clickhouse-connect to insert one batch
at a time, and offsets committed only after the batch is in ClickHouse (at least once; no
dedup, so a crash between insert and commit writes that batch twice).

The rows are the ones ehac-sink writes (crates/ehac-sink/src/rows.rs), column for column, so
the two can be compared on the same table. See README.md beside this file.

At the end it prints one JSON line on stdout:
  {"rows", "seconds" (first message to last insert), "rows_per_s", "cpu_seconds", "peak_rss_mb"}
"""

import argparse
import io
import json
import resource
import sys
import time
from datetime import date, datetime
from pathlib import Path
from urllib.parse import urlsplit

import clickhouse_connect
import fastavro
from confluent_kafka import Consumer, KafkaError, KafkaException

# Avro single-object encoding: C3 01, then the writer schema's 8-byte little-endian Rabin
# fingerprint, then the Avro binary body.
MAGIC = b"\xc3\x01"
HEADER_LEN = 10

# The columns written, in the order of the row tuples below; `inserted_at` is left to its default.
# The analyst table's only: identity and contact (ehac_pii.identities) are not written by this
# peer, so it does a little less work per row than the Rust sink, which writes both.
COLUMNS = [
    "declaration_id", "traveller_key", "pepper_version", "client_id", "channel", "submitted_at", "received_at",
    "nationality", "sex",
    "transport_mode", "carrier", "flight_number",
    "departure_port", "departure_port_name", "departure_city", "departure_subdivision",
    "departure_country", "departure_time_zone",
    "arrival_port", "arrival_port_name", "arrival_city", "arrival_subdivision",
    "arrival_country", "arrival_time_zone",
    "departure_at", "arrival_at", "arrival_date", "arrival_local_hour", "domestic",
    "destination_city", "destination_province",
    "fever", "cough", "shortness_of_breath", "contact_with_case", "vaccination_doses",
    "test_kind", "test_result", "test_taken_on",
    "home_province", "home_regency", "age_years", "age_band", "risk_flags", "triage", "warnings",
    "verification_status", "gateway_version", "enricher_version", "kafka_partition", "kafka_offset",
]

# Enum8 values of ehac.declarations (schemas/clickhouse/migrations). A missing value is written
# as 0, as the Rust sink does.
CHANNEL = {"app": 1, "web": 2, "kiosk": 3}
SEX = {"male": 1, "female": 2}
TRANSPORT_MODE = {"air": 1, "sea": 2, "land": 3}
TEST_KIND = {"pcr": 1, "antigen": 2}
TEST_RESULT = {"negative": 1, "positive": 2}
TRIAGE = {"red": 3, "yellow": 2}  # anything else is green (1)
VERIFICATION_STATUS = {"not_applicable": 0, "pending": 1, "verified": 2, "not_found": 3, "mismatch": 4}

EPOCH = date(1970, 1, 1)
U32_MAX = 2**32 - 1


class GlueError(Exception):
    pass


def load_schema(path):
    """The enriched writer schema: --schema, or enriched_declaration.avsc with its `raw` field's
    type replaced by raw_declaration.avsc, as ehac-codec builds it."""
    if path:
        return json.loads(Path(path).read_text())
    avro_dir = Path(__file__).resolve().parents[3] / "schemas" / "avro"
    try:
        enriched = json.loads((avro_dir / "enriched_declaration.avsc").read_text())
        raw = json.loads((avro_dir / "raw_declaration.avsc").read_text())
    except OSError as e:
        raise GlueError(f"cannot read the Avro schemas in {avro_dir} ({e}); pass --schema") from None
    for field in enriched["fields"]:
        if field["name"] == "raw":
            field["type"] = raw
            break
    else:
        raise GlueError("enriched_declaration.avsc has no raw field")
    return enriched


def seconds(ms):
    """Unix ms -> DateTime seconds, floored and clamped to DateTime's range."""
    return min(max(ms // 1000, 0), U32_MAX)


def days(text):
    """'YYYY-MM-DD' -> days since 1970-01-01, None when unparseable or outside Date's range."""
    try:
        d = datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        return None
    n = (d - EPOCH).days
    return n if 0 <= n <= 65535 else None


def to_row(record, partition, offset):
    raw = record["raw"]
    form = raw["form"]
    t = form["traveller"]
    trip = form["trip"]
    address = form["destination_address"]
    health = form["health"]
    e = record["enrichment"]
    dep = e["departure"]
    arr = e["arrival"]
    test = health["latest_test"] or {}
    return (
        raw["declaration_id"],
        e.get("traveller_key", ""),
        max(e.get("pepper_version", 0), 0),
        form["client_id"],
        CHANNEL.get(form["channel"], 0),
        seconds(e["submitted_at_ms"]),
        seconds(raw["received_at_ms"]),
        e["nationality"],
        SEX.get(t["sex"], 0),
        TRANSPORT_MODE.get(trip["transport_mode"], 0),
        trip["carrier"],
        trip["flight_number"],
        trip["departure_port"],
        dep["name"],
        dep["city"],
        dep["subdivision"],
        dep["country"],
        dep["time_zone"],
        trip["arrival_port"],
        arr["name"],
        arr["city"],
        arr["subdivision"],
        arr["country"],
        arr["time_zone"],
        seconds(e["departure_at_ms"]),
        seconds(e["arrival_at_ms"]),
        min(max(e["arrival_date"], 0), 65535),
        e["arrival_local_hour"] & 0xFF,
        int(e["domestic"]),
        address["city"],
        address["province"],
        int(bool(health["fever"])),
        int(bool(health["cough"])),
        int(bool(health["shortness_of_breath"])),
        int(bool(health["contact_with_case"])),
        min(max(health["vaccination_doses"] or 0, 0), 255),
        TEST_KIND.get(test.get("kind"), 0),
        TEST_RESULT.get(test.get("result"), 0),
        days(test["taken_on"]) if test else None,
        e["home_province"],
        e["home_regency"],
        min(max(e["age_years"], 0), 255),
        e["age_band"],
        e["risk_flags"],
        TRIAGE.get(e["triage"], 1),
        e["warnings"],
        VERIFICATION_STATUS[e["verification_status"]],
        raw["gateway_version"],
        e["enricher_version"],
        partition,
        offset,
    )


def clickhouse_client(url):
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise GlueError(f"--clickhouse-url must look like http://host:port, got {url!r}")
    return clickhouse_connect.get_client(
        host=parts.hostname,
        port=parts.port or (8443 if parts.scheme == "https" else 8123),
        interface=parts.scheme,
        username=parts.username or "default",
        password=parts.password or "",
        # ClickHouse 18.16 reads neither lz4 nor zstd request bodies, and knows no HTTP sessions
        # worth having here.
        compress=False,
        autogenerate_session_id=False,
    )


def table_types(client, table):
    """The types of COLUMNS in `table`. clickhouse-connect would otherwise run DESCRIBE TABLE on
    every insert, and cannot read 18.16's answer to it (it has comment_expression where newer
    servers have comment, codec_expression and ttl_expression)."""
    database, _, name = table.rpartition(".")
    result = client.query(
        # Client-side binding: 18.16 has no query parameters ({db:String}).
        "SELECT name, type FROM system.columns WHERE database = %(db)s AND table = %(t)s",
        parameters={"db": database or client.database or "default", "t": name},
    )
    types = dict(result.result_rows)
    missing = [c for c in COLUMNS if c not in types]
    if missing:
        raise GlueError(f"table {table} lacks the columns {', '.join(missing)} (not migrated?)")
    return [types[c] for c in COLUMNS]


def main():
    ap = argparse.ArgumentParser(description="Copy the enriched topic into ClickHouse (benchmark peer).")
    ap.add_argument("--brokers", required=True, help="Kafka bootstrap servers, host:port[,...]")
    ap.add_argument("--topic", default="ehac.declarations.enriched")
    ap.add_argument("--group", default="ehac-glue")
    ap.add_argument("--clickhouse-url", required=True, help="http://host:port")
    ap.add_argument("--table", default="ehac.declarations")
    ap.add_argument("--expect", type=int, default=0, help="stop once this many rows were inserted (0: run until idle)")
    ap.add_argument("--idle-timeout-secs", type=float, default=30.0, help="stop when nothing arrived for this long")
    ap.add_argument("--batch", type=int, default=10000, help="most messages per insert")
    ap.add_argument("--schema", help="enriched writer schema as one JSON document (default: built from schemas/avro)")
    args = ap.parse_args()

    schema = fastavro.parse_schema(load_schema(args.schema))
    fingerprint = bytes.fromhex(fastavro.schema.fingerprint(fastavro.schema.to_parsing_canonical_form(schema), "CRC-64-AVRO"))
    header = MAGIC + fingerprint  # fastavro's hex is already in the little-endian byte order
    reader = fastavro.schemaless_reader

    client = clickhouse_client(args.clickhouse_url)
    column_types = table_types(client, args.table)
    consumer = Consumer({
        "bootstrap.servers": args.brokers,
        "group.id": args.group,
        "client.id": "ehac-glue-peer",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    })
    consumer.subscribe([args.topic])

    rows_total = 0
    first_message_at = None
    last_insert_at = None
    last_message_at = time.monotonic()
    try:
        while True:
            messages = consumer.consume(num_messages=args.batch, timeout=1.0)
            now = time.monotonic()
            if not messages:
                if now - last_message_at >= args.idle_timeout_secs:
                    print(f"glue: nothing arrived for {args.idle_timeout_secs:g}s; stopping", file=sys.stderr)
                    break
                continue
            last_message_at = now
            if first_message_at is None:
                first_message_at = now
            rows = []
            for message in messages:
                if message.error():
                    if message.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(message.error())
                value = message.value()
                if value[:HEADER_LEN] != header:
                    raise GlueError(
                        f"{message.topic()}/{message.partition()}@{message.offset()}: not an enriched "
                        f"declaration in single-object encoding (header {value[:HEADER_LEN].hex()}, want {header.hex()})"
                    )
                record = reader(io.BytesIO(value[HEADER_LEN:]), schema, None)
                rows.append(to_row(record, message.partition(), message.offset()))
            if rows:
                client.insert(args.table, rows, column_names=COLUMNS, column_type_names=column_types)
                last_insert_at = time.monotonic()
                rows_total += len(rows)
                # Only now that the rows are stored: the consumed positions of every assigned partition.
                consumer.commit(asynchronous=False)
            if args.expect and rows_total >= args.expect:
                break
    finally:
        consumer.close()
        client.close()

    elapsed = (last_insert_at - first_message_at) if last_insert_at is not None else 0.0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({
        "rows": rows_total,
        "seconds": round(elapsed, 3),
        "rows_per_s": round(rows_total / elapsed, 1) if elapsed > 0 else 0.0,
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
    }))
    if args.expect and rows_total < args.expect:
        print(f"glue: stopped after {rows_total} of the {args.expect} rows expected", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:  # a clear one-line reason; the traceback adds nothing for a script like this
        print(f"glue: error: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
