-- 0010 on a cluster: the groups are a materialized view on each server's replicated local
-- declarations, read through a Distributed table of the single server's name. A traveller's
-- rows may sit on several shards; uniqExactMerge over the Distributed table merges the
-- shards' sets, so the count is of distinct travellers across the cluster. No POPULATE (see
-- 0007): a cluster holding data before this migration fills ehac.microdata_groups_local with
-- INSERT ... SELECT from ehac.declarations_local on one replica of each shard, by hand.
CREATE MATERIALIZED VIEW IF NOT EXISTS ehac.microdata_groups_local ON CLUSTER ${CLUSTER}
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
PARTITION BY toYYYYMM(arrival_date)
ORDER BY (arrival_date, arrival_port, domestic, citizen, home_province, age_band, sex)
AS SELECT
    arrival_date,
    arrival_port,
    domestic,
    nationality = 'IDN' AS citizen,
    home_province,
    age_band,
    sex,
    uniqExactState(if(traveller_key = '', declaration_id, traveller_key)) AS travellers
FROM ehac.declarations_local
GROUP BY arrival_date, arrival_port, domestic, citizen, home_province, age_band, sex;

CREATE TABLE IF NOT EXISTS ehac.microdata_groups ON CLUSTER ${CLUSTER}
(
    arrival_date Date,
    arrival_port String,
    domestic UInt8,
    citizen UInt8,
    home_province String,
    age_band String,
    sex Enum8('male' = 1, 'female' = 2),
    travellers AggregateFunction(uniqExact, String)
)
ENGINE = Distributed(${CLUSTER}, ehac, microdata_groups_local);

DROP TABLE IF EXISTS ehac.arrivals_microdata ON CLUSTER ${CLUSTER};
CREATE VIEW ehac.arrivals_microdata ON CLUSTER ${CLUSTER} AS
SELECT arrival_date, arrival_port, domestic, citizen, home_province, age_band, sex,
       fever, cough, shortness_of_breath, contact_with_case, vaccination_doses, test_kind, test_result, triage, verification_status
FROM
(
    SELECT arrival_date, arrival_port, domestic, nationality = 'IDN' AS citizen, home_province, age_band, sex,
           fever, cough, shortness_of_breath, contact_with_case, vaccination_doses, test_kind, test_result, triage, verification_status
    FROM ehac.declarations
) AS declaration_rows
ALL INNER JOIN
(
    SELECT arrival_date, arrival_port, domestic, citizen, home_province, age_band, sex
    FROM ehac.microdata_groups
    GROUP BY arrival_date, arrival_port, domestic, citizen, home_province, age_band, sex
    HAVING uniqExactMerge(travellers) >= 11
) AS published_groups USING (arrival_date, arrival_port, domestic, citizen, home_province, age_band, sex);
