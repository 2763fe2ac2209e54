-- Every read of identity is accounted for: `ehac lookup` writes one row here, after its query
-- and before it shows anything: who asked (the investigator's own name and ClickHouse login),
-- for which case, about which traveller key, when, and how many declarations it returned
-- (counts, never the data). Investigators may INSERT here and read; nobody but the migrator
-- may ALTER, DELETE, UPDATE, TRUNCATE or DROP it (access.sql).
CREATE TABLE IF NOT EXISTS ehac_pii.identity_reads
(
    investigator String,
    case_reference String,
    clickhouse_user String,
    traveller_key String,
    pepper_version UInt32,
    declarations_returned UInt32,
    read_at DateTime('UTC') DEFAULT now()
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(read_at)
ORDER BY (read_at, case_reference);
