-- The microdata's groups kept by ClickHouse as rows arrive, instead of counted from every row
-- at each read. A group is the quasi-identifiers of ehac.arrivals_microdata; it holds the set
-- of its distinct travellers (a row stored before traveller keys counts as its own traveller)
-- as an aggregate state. A set is the same however often a row reaches it, so the count stays
-- exact under the sink's retries and replays without a deduplication window. POPULATE counts
-- the rows stored before.
CREATE MATERIALIZED VIEW IF NOT EXISTS ehac.microdata_groups
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(arrival_date)
ORDER BY (arrival_date, arrival_port, domestic, citizen, home_province, age_band, sex)
POPULATE
AS SELECT
    arrival_date,
    arrival_port,
    domestic,
    nationality = 'IDN' AS citizen,
    home_province,
    age_band,
    sex,
    uniqExactState(if(traveller_key = '', declaration_id, traveller_key)) AS travellers
FROM ehac.declarations
GROUP BY arrival_date, arrival_port, domestic, citizen, home_province, age_band, sex;

-- The same rows as before (0007): every declaration whose group holds at least 11 distinct
-- travellers. The groups are read from the kept states, so only the rows are scanned.
DROP VIEW IF EXISTS ehac.arrivals_microdata;
CREATE VIEW ehac.arrivals_microdata AS
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
