-- 0008 on a cluster: the audit table replicated on every shard, written on the server
-- `ehac lookup` connects to (warehouse::write_table), read through the Distributed name.
CREATE TABLE IF NOT EXISTS ehac_pii.identity_reads_local ON CLUSTER ${CLUSTER}
(
    investigator String,
    case_reference String,
    clickhouse_user String,
    traveller_key String,
    pepper_version UInt32,
    declarations_returned UInt32,
    read_at DateTime('UTC') DEFAULT now()
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
PARTITION BY toYYYYMM(read_at)
ORDER BY (read_at, case_reference);

CREATE TABLE IF NOT EXISTS ehac_pii.identity_reads ON CLUSTER ${CLUSTER} AS ehac_pii.identity_reads_local
ENGINE = Distributed(${CLUSTER}, ehac_pii, identity_reads_local, rand());
