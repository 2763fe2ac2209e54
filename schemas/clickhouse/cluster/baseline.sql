-- The schema of migrations 0001-0004 for a ClickHouse cluster, created at once on a fresh
-- cluster by `ehac migrate --clickhouse-cluster NAME` and recorded as versions 1-4 (the copy
-- steps of 0003 and 0004 have nothing to copy there). Never edited, like a migration: a change
-- is a new migration with its cluster form beside it (see README.md here).
--
-- ${CLUSTER} is the cluster's name in remote_servers. Each server needs the macros {shard} and
-- {replica}, ZooKeeper and <distributed_ddl>. Naming: every table a writer fills is
-- `<name>_local`, a Replicated*MergeTree holding its shard's rows; `<name>` is a Distributed
-- table over all shards, so analysts' queries, views and the sink's dedup reads keep the names
-- they have on a single server. Writers insert into `<name>_local` on the server they connect
-- to (the answer then means the rows are in that replica and its shard's replication log),
-- never into `<name>`, whose default insert is asynchronous.
CREATE DATABASE IF NOT EXISTS ehac ON CLUSTER ${CLUSTER};

CREATE DATABASE IF NOT EXISTS ehac_pii ON CLUSTER ${CLUSTER};

-- ehac.declarations: 0001, with 0003's ReplacingMergeTree and 0004's columns (identity gone,
-- traveller_key and pepper_version added), in the single server's column order. No column
-- COMMENTs on replicated tables: with them 18.16's second replica refused the table (Code 122,
-- "Table structure in ZooKeeper is too different from local table structure"); the comments
-- are in migrations/.
CREATE TABLE IF NOT EXISTS ehac.declarations_local ON CLUSTER ${CLUSTER}
(
    declaration_id String,
    client_id String,
    channel Enum8('app' = 1, 'web' = 2, 'kiosk' = 3),
    submitted_at DateTime('UTC'),
    received_at DateTime('UTC'),
    nationality String,
    sex Enum8('male' = 1, 'female' = 2),
    transport_mode Enum8('air' = 1, 'sea' = 2, 'land' = 3),
    carrier String,
    flight_number String,
    departure_port String,
    departure_port_name String,
    departure_city String,
    departure_subdivision String,
    departure_country String,
    departure_time_zone String,
    arrival_port String,
    arrival_port_name String,
    arrival_city String,
    arrival_subdivision String,
    arrival_country String,
    arrival_time_zone String,
    departure_at DateTime('UTC'),
    arrival_at DateTime('UTC'),
    arrival_date Date,
    arrival_local_hour UInt8,
    domestic UInt8,
    destination_city String,
    destination_province String,
    fever UInt8,
    cough UInt8,
    shortness_of_breath UInt8,
    contact_with_case UInt8,
    vaccination_doses UInt8,
    test_kind Enum8('none' = 0, 'pcr' = 1, 'antigen' = 2),
    test_result Enum8('none' = 0, 'negative' = 1, 'positive' = 2),
    test_taken_on Nullable(Date),
    home_province String,
    home_regency String,
    age_years UInt8,
    age_band String,
    risk_flags Array(String),
    triage Enum8('green' = 1, 'yellow' = 2, 'red' = 3),
    warnings Array(String),
    gateway_version String,
    enricher_version String,
    kafka_partition Int32,
    kafka_offset Int64,
    inserted_at DateTime('UTC') DEFAULT now(),
    verification_status Enum8('not_applicable' = 0, 'pending' = 1, 'verified' = 2, 'not_found' = 3, 'mismatch' = 4) DEFAULT 'pending',
    traveller_key String DEFAULT '',
    pepper_version UInt32 DEFAULT 0
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
PARTITION BY toYYYYMM(arrival_date)
ORDER BY (arrival_port, arrival_date, declaration_id);

CREATE TABLE IF NOT EXISTS ehac.declarations ON CLUSTER ${CLUSTER} AS ehac.declarations_local
ENGINE = Distributed(${CLUSTER}, ehac, declarations_local, cityHash64(declaration_id));

-- ehac.rejections: 0001 without 0004's payload columns (they are in ehac_pii.rejected_payloads).
CREATE TABLE IF NOT EXISTS ehac.rejections_local ON CLUSTER ${CLUSTER}
(
    declaration_id String,
    client_id String,
    service String,
    service_version String,
    source_topic String,
    source_partition Int32,
    source_offset Int64,
    rejected_at DateTime('UTC'),
    error_codes Array(String),
    error_fields Array(String),
    kafka_partition Int32,
    kafka_offset Int64,
    inserted_at DateTime('UTC') DEFAULT now()
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
PARTITION BY toYYYYMM(rejected_at)
ORDER BY (rejected_at, declaration_id);

CREATE TABLE IF NOT EXISTS ehac.rejections ON CLUSTER ${CLUSTER} AS ehac.rejections_local
ENGINE = Distributed(${CLUSTER}, ehac, rejections_local, cityHash64(source_topic, source_partition, source_offset));

-- ehac.verifications: 0002 without the NIK (0004).
CREATE TABLE IF NOT EXISTS ehac.verifications_local ON CLUSTER ${CLUSTER}
(
    declaration_id String,
    status Enum8('not_applicable' = 0, 'pending' = 1, 'verified' = 2, 'not_found' = 3, 'mismatch' = 4),
    checked_at DateTime('UTC'),
    checked_by String
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}', checked_at)
ORDER BY declaration_id;

CREATE TABLE IF NOT EXISTS ehac.verifications ON CLUSTER ${CLUSTER} AS ehac.verifications_local
ENGINE = Distributed(${CLUSTER}, ehac, verifications_local, cityHash64(declaration_id));

-- 0002's view. GLOBAL: with several shards a declaration's reconciled answer may be on
-- another shard than the declaration, so the right side is gathered once and sent to each.
CREATE VIEW IF NOT EXISTS ehac.declaration_verification ON CLUSTER ${CLUSTER} AS
SELECT
    declaration_id,
    if(reconciled = '', toString(verification_status), reconciled) AS status
FROM ehac.declarations
GLOBAL ANY LEFT JOIN
(
    SELECT declaration_id, toString(argMax(status, checked_at)) AS reconciled
    FROM ehac.verifications
    GROUP BY declaration_id
) AS reconciled_verifications USING (declaration_id);

-- 0003's positions, filled by inserts into the local tables; the sink's dedup window reads
-- them through the Distributed tables, so a partition that moved to a sink writing to
-- another shard still finds what was stored before.
CREATE MATERIALIZED VIEW IF NOT EXISTS ehac.declaration_positions_local ON CLUSTER ${CLUSTER}
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
ORDER BY (kafka_partition, kafka_offset)
AS SELECT kafka_partition, kafka_offset, declaration_id FROM ehac.declarations_local;

CREATE TABLE IF NOT EXISTS ehac.declaration_positions ON CLUSTER ${CLUSTER}
(
    kafka_partition Int32,
    kafka_offset Int64,
    declaration_id String
)
ENGINE = Distributed(${CLUSTER}, ehac, declaration_positions_local);

CREATE MATERIALIZED VIEW IF NOT EXISTS ehac.rejection_positions_local ON CLUSTER ${CLUSTER}
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
ORDER BY (kafka_partition, kafka_offset)
AS SELECT kafka_partition, kafka_offset,
          concat(source_topic, '/', toString(source_partition), '/', toString(source_offset)) AS source_position
   FROM ehac.rejections_local;

CREATE TABLE IF NOT EXISTS ehac.rejection_positions ON CLUSTER ${CLUSTER}
(
    kafka_partition Int32,
    kafka_offset Int64,
    source_position String
)
ENGINE = Distributed(${CLUSTER}, ehac, rejection_positions_local);

-- 0004's identity database.
CREATE TABLE IF NOT EXISTS ehac_pii.identities_local ON CLUSTER ${CLUSTER}
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
    kafka_partition Int32,
    kafka_offset Int64,
    inserted_at DateTime('UTC') DEFAULT now()
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
ORDER BY declaration_id;

CREATE TABLE IF NOT EXISTS ehac_pii.identities ON CLUSTER ${CLUSTER} AS ehac_pii.identities_local
ENGINE = Distributed(${CLUSTER}, ehac_pii, identities_local, cityHash64(declaration_id));

CREATE TABLE IF NOT EXISTS ehac_pii.rejected_payloads_local ON CLUSTER ${CLUSTER}
(
    declaration_id String,
    source_topic String,
    source_partition Int32,
    source_offset Int64,
    error_messages Array(String),
    payload String,
    payload_json String,
    kafka_partition Int32,
    kafka_offset Int64,
    inserted_at DateTime('UTC') DEFAULT now()
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
ORDER BY (source_topic, source_partition, source_offset);

CREATE TABLE IF NOT EXISTS ehac_pii.rejected_payloads ON CLUSTER ${CLUSTER} AS ehac_pii.rejected_payloads_local
ENGINE = Distributed(${CLUSTER}, ehac_pii, rejected_payloads_local, cityHash64(source_topic, source_partition, source_offset));

CREATE MATERIALIZED VIEW IF NOT EXISTS ehac_pii.identity_positions_local ON CLUSTER ${CLUSTER}
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
ORDER BY (kafka_partition, kafka_offset)
AS SELECT kafka_partition, kafka_offset, declaration_id FROM ehac_pii.identities_local;

CREATE TABLE IF NOT EXISTS ehac_pii.identity_positions ON CLUSTER ${CLUSTER}
(
    kafka_partition Int32,
    kafka_offset Int64,
    declaration_id String
)
ENGINE = Distributed(${CLUSTER}, ehac_pii, identity_positions_local);

CREATE MATERIALIZED VIEW IF NOT EXISTS ehac_pii.rejected_payload_positions_local ON CLUSTER ${CLUSTER}
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
ORDER BY (kafka_partition, kafka_offset)
AS SELECT kafka_partition, kafka_offset,
          concat(source_topic, '/', toString(source_partition), '/', toString(source_offset)) AS source_position
   FROM ehac_pii.rejected_payloads_local;

CREATE TABLE IF NOT EXISTS ehac_pii.rejected_payload_positions ON CLUSTER ${CLUSTER}
(
    kafka_partition Int32,
    kafka_offset Int64,
    source_position String
)
ENGINE = Distributed(${CLUSTER}, ehac_pii, rejected_payload_positions_local);
