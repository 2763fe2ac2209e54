-- Personal data apart (issue 14). The analyst database `ehac` keeps what counting needs: the
-- traveller key (a keyed pseudonym, HMAC-SHA256 of the NIK or nationality + passport number),
-- home region, age and band, sex, nationality, ports, times, flight, health answers, flags,
-- triage, verification status. Identity, contact, exact date of birth, street address, seat and
-- rejected payloads move to the identity database `ehac_pii`, which analysts cannot open
-- (ClickHouse 18.16 restricts users per database, never per column).
-- Rows stored before this migration keep an empty traveller_key with pepper_version 0.
CREATE DATABASE IF NOT EXISTS ehac_pii;

-- One row per stored declaration: who travelled and how to reach them. A ReplacingMergeTree on
-- the declaration id, a second net as ehac.declarations has; the sink writes it once.
CREATE TABLE IF NOT EXISTS ehac_pii.identities
(
    declaration_id String,
    traveller_key String,
    pepper_version UInt32,
    nik Nullable(String),
    passport_number Nullable(String),
    nationality String,
    full_name String,
    date_of_birth String,
    phone String,
    email Nullable(String),
    seat Nullable(String),
    destination_street String,
    destination_postal_code Nullable(String),
    kafka_partition Int32 COMMENT 'enriched-topic partition the row was read from',
    kafka_offset Int64,
    inserted_at DateTime('UTC') DEFAULT now()
)
ENGINE = ReplacingMergeTree
ORDER BY declaration_id;

INSERT INTO ehac_pii.identities (declaration_id, traveller_key, pepper_version, nik, passport_number, nationality, full_name, date_of_birth, phone, email, seat, destination_street, destination_postal_code, kafka_partition, kafka_offset)
SELECT declaration_id, '', 0, nik, passport_number, nationality, full_name, date_of_birth, phone, email, seat, destination_street, destination_postal_code, kafka_partition, kafka_offset
FROM ehac.declarations;

-- What a rejected record said, for replay and for the operator who fixes the data: the
-- original bytes, their JSON and the messages (which may quote the values). The reasons'
-- codes and fields stay in ehac.rejections for analysts.
CREATE TABLE IF NOT EXISTS ehac_pii.rejected_payloads
(
    declaration_id String COMMENT 'empty when the payload was undecodable',
    source_topic String,
    source_partition Int32,
    source_offset Int64,
    error_messages Array(String),
    payload String COMMENT 'the message exactly as read (Avro), for replay',
    payload_json String,
    kafka_partition Int32 COMMENT 'rejected-topic partition the row was read from',
    kafka_offset Int64,
    inserted_at DateTime('UTC') DEFAULT now()
)
ENGINE = ReplacingMergeTree
ORDER BY (source_topic, source_partition, source_offset);

INSERT INTO ehac_pii.rejected_payloads (declaration_id, source_topic, source_partition, source_offset, error_messages, payload, payload_json, kafka_partition, kafka_offset)
SELECT declaration_id, source_topic, source_partition, source_offset, error_messages, payload, payload_json, kafka_partition, kafka_offset
FROM ehac.rejections;

-- Where each identity row was read, as ehac.declaration_positions does for declarations: the
-- sink's dedup window for this table. Only offsets and ids.
CREATE MATERIALIZED VIEW IF NOT EXISTS ehac_pii.identity_positions
ENGINE = ReplacingMergeTree
ORDER BY (kafka_partition, kafka_offset)
POPULATE
AS SELECT kafka_partition, kafka_offset, declaration_id FROM ehac_pii.identities;

CREATE MATERIALIZED VIEW IF NOT EXISTS ehac_pii.rejected_payload_positions
ENGINE = ReplacingMergeTree
ORDER BY (kafka_partition, kafka_offset)
POPULATE
AS SELECT kafka_partition, kafka_offset,
          concat(source_topic, '/', toString(source_partition), '/', toString(source_offset)) AS source_position
   FROM ehac_pii.rejected_payloads;

ALTER TABLE ehac.declarations
    DROP COLUMN nik, DROP COLUMN passport_number, DROP COLUMN full_name, DROP COLUMN date_of_birth, DROP COLUMN phone,
    DROP COLUMN email, DROP COLUMN seat, DROP COLUMN destination_street, DROP COLUMN destination_postal_code;

ALTER TABLE ehac.declarations
    ADD COLUMN traveller_key String DEFAULT '' COMMENT 'HMAC-SHA256(pepper, identity): count with uniqExact, link trips within one pepper_version',
    ADD COLUMN pepper_version UInt32 DEFAULT 0;

ALTER TABLE ehac.rejections DROP COLUMN error_messages, DROP COLUMN payload, DROP COLUMN payload_json;

-- The NIK a verification was about is in ehac_pii.identities under the same declaration id.
ALTER TABLE ehac.verifications DROP COLUMN nik;
