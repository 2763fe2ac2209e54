-- Declarations that passed every rule, one row per accepted declaration, with enrichment.
-- Runs on ClickHouse 18.16 and on modern ClickHouse: no DateTime64, LowCardinality, CODEC or TTL.
-- Date covers 1970-2105 only (no Date32 on 18.16), so the date of birth is kept as text and
-- analysts use age_years.
CREATE DATABASE IF NOT EXISTS ehac;

CREATE TABLE IF NOT EXISTS ehac.declarations
(
    declaration_id String,
    client_id String,
    channel Enum8('app' = 1, 'web' = 2, 'kiosk' = 3),
    submitted_at DateTime('UTC'),
    received_at DateTime('UTC'),

    nik Nullable(String),
    passport_number Nullable(String),
    nationality String,
    full_name String,
    sex Enum8('male' = 1, 'female' = 2),
    date_of_birth String,
    phone String,
    email Nullable(String),

    transport_mode Enum8('air' = 1, 'sea' = 2, 'land' = 3),
    carrier String,
    flight_number String,
    seat Nullable(String),
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
    arrival_date Date COMMENT 'local date at the port of entry',
    arrival_local_hour UInt8,
    domestic UInt8,

    destination_street String,
    destination_city String,
    destination_province String,
    destination_postal_code Nullable(String),

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
    kafka_partition Int32 COMMENT 'enriched-topic partition the row was read from',
    kafka_offset Int64,
    inserted_at DateTime('UTC') DEFAULT now()
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(arrival_date)
ORDER BY (arrival_port, arrival_date, declaration_id);

-- Records rejected downstream, one row per rejection, with every reason in parallel arrays.
CREATE TABLE IF NOT EXISTS ehac.rejections
(
    declaration_id String COMMENT 'empty when the payload was undecodable',
    client_id String,
    service String,
    service_version String,
    source_topic String,
    source_partition Int32,
    source_offset Int64,
    rejected_at DateTime('UTC'),
    error_codes Array(String),
    error_fields Array(String),
    error_messages Array(String),
    payload String COMMENT 'the message exactly as read (Avro), for replay',
    payload_json String,
    kafka_partition Int32 COMMENT 'rejected-topic partition the row was read from',
    kafka_offset Int64,
    inserted_at DateTime('UTC') DEFAULT now()
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(rejected_at)
ORDER BY (rejected_at, declaration_id);
