-- 0007 on a cluster: the rollup is a materialized view on each server's replicated local
-- declarations (so it counts the rows of its shard, replicated with them), read through a
-- Distributed table of the same name as on a single server; the views are the single server's,
-- reading the Distributed names, so each counts every shard. No POPULATE: ClickHouse 18.16
-- cannot POPULATE ON CLUSTER, and the rows of a cluster that holds data before this migration
-- are counted by INSERT INTO ehac.arrival_counts_local SELECT ... FROM ehac.declarations_local
-- on one replica of each shard, by hand.
CREATE MATERIALIZED VIEW IF NOT EXISTS ehac.arrival_counts_local ON CLUSTER ${CLUSTER}
ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
PARTITION BY toYYYYMM(arrival_date)
ORDER BY (arrival_date, arrival_hour, arrival_port, departure_country, home_province, triage, channel, verification_status, domestic)
AS SELECT
    arrival_date,
    toStartOfHour(arrival_at) AS arrival_hour,
    arrival_port,
    any(arrival_port_name) AS arrival_port_name,
    departure_country,
    home_province,
    triage,
    channel,
    verification_status,
    domestic,
    count() AS declarations,
    sum(age_years) AS age_years_total,
    countIf(fever = 1 OR cough = 1 OR shortness_of_breath = 1) AS symptomatic,
    countIf(contact_with_case = 1) AS contacts_with_case,
    countIf(test_result = 'positive') AS positive_tests
FROM ehac.declarations_local
GROUP BY arrival_date, arrival_hour, arrival_port, departure_country, home_province, triage, channel, verification_status, domestic;

CREATE TABLE IF NOT EXISTS ehac.arrival_counts ON CLUSTER ${CLUSTER}
(
    arrival_date Date,
    arrival_hour DateTime('UTC'),
    arrival_port String,
    arrival_port_name String,
    departure_country String,
    home_province String,
    triage Enum8('green' = 1, 'yellow' = 2, 'red' = 3),
    channel Enum8('app' = 1, 'web' = 2, 'kiosk' = 3),
    verification_status Enum8('not_applicable' = 0, 'pending' = 1, 'verified' = 2, 'not_found' = 3, 'mismatch' = 4),
    domestic UInt8,
    declarations UInt64,
    age_years_total UInt64,
    symptomatic UInt64,
    contacts_with_case UInt64,
    positive_tests UInt64
)
ENGINE = Distributed(${CLUSTER}, ehac, arrival_counts_local);

-- The analysts' published tables: read from the rollup, a count of 1 to 10 is NULL (the
-- threshold of the standard queries), and so is what would let it be worked out.
CREATE VIEW IF NOT EXISTS ehac.published_arrivals_by_port_day ON CLUSTER ${CLUSTER} AS
SELECT arrival_port, port_name, arrival_date,
       if(arrivals > 0 AND arrivals < 11, NULL, arrivals) AS travellers,
       if(international_arrivals > 0 AND international_arrivals < 11, NULL, international_arrivals) AS international
FROM
(
    SELECT arrival_port, any(arrival_port_name) AS port_name, arrival_date,
           sum(declarations) AS arrivals, sumIf(declarations, domestic = 0) AS international_arrivals
    FROM ehac.arrival_counts
    GROUP BY arrival_port, arrival_date
);

CREATE VIEW IF NOT EXISTS ehac.published_arrivals_by_hour ON CLUSTER ${CLUSTER} AS
SELECT arrival_hour, arrival_port,
       if(arrivals > 0 AND arrivals < 11, NULL, arrivals) AS travellers,
       if(symptomatic_arrivals > 0 AND symptomatic_arrivals < 11, NULL, symptomatic_arrivals) AS symptomatic,
       if(red_arrivals > 0 AND red_arrivals < 11, NULL, red_arrivals) AS red
FROM
(
    SELECT arrival_hour, arrival_port, sum(declarations) AS arrivals, sum(symptomatic) AS symptomatic_arrivals,
           sumIf(declarations, triage = 'red') AS red_arrivals
    FROM ehac.arrival_counts
    GROUP BY arrival_hour, arrival_port
);

CREATE VIEW IF NOT EXISTS ehac.published_triage_by_port ON CLUSTER ${CLUSTER} AS
SELECT arrival_port,
       if(red_arrivals > 0 AND red_arrivals < 11, NULL, red_arrivals) AS red,
       if(yellow_arrivals > 0 AND yellow_arrivals < 11, NULL, yellow_arrivals) AS yellow,
       if(green_arrivals > 0 AND green_arrivals < 11, NULL, green_arrivals) AS green,
       if(symptomatic_arrivals > 0 AND symptomatic_arrivals < 11, NULL, symptomatic_arrivals) AS symptomatic
FROM
(
    SELECT arrival_port,
           sumIf(declarations, triage = 'red') AS red_arrivals, sumIf(declarations, triage = 'yellow') AS yellow_arrivals,
           sumIf(declarations, triage = 'green') AS green_arrivals, sum(symptomatic) AS symptomatic_arrivals
    FROM ehac.arrival_counts
    GROUP BY arrival_port
);

CREATE VIEW IF NOT EXISTS ehac.published_arrivals_by_home_province ON CLUSTER ${CLUSTER} AS
SELECT home_province,
       if(arrivals < 11, NULL, arrivals) AS travellers,
       if(arrivals < 11, NULL, round(age_years_total / arrivals, 1)) AS mean_age
FROM
(
    SELECT home_province, sum(declarations) AS arrivals, sum(age_years_total) AS age_years_total
    FROM ehac.arrival_counts
    WHERE home_province != ''
    GROUP BY home_province
);

CREATE VIEW IF NOT EXISTS ehac.published_arrivals_by_departure_country ON CLUSTER ${CLUSTER} AS
SELECT departure_country, arrival_date,
       if(arrivals > 0 AND arrivals < 11, NULL, arrivals) AS travellers
FROM
(
    SELECT departure_country, arrival_date, sum(declarations) AS arrivals
    FROM ehac.arrival_counts
    GROUP BY departure_country, arrival_date
);

CREATE VIEW IF NOT EXISTS ehac.published_arrivals_by_channel ON CLUSTER ${CLUSTER} AS
SELECT channel, arrival_date,
       if(arrivals > 0 AND arrivals < 11, NULL, arrivals) AS travellers
FROM
(
    SELECT toString(channel) AS channel, arrival_date, sum(declarations) AS arrivals
    FROM ehac.arrival_counts
    GROUP BY channel, arrival_date
);

-- Verification as it stands now (the reconciled answer where there is one), so from the
-- declarations, not the rollup.
CREATE VIEW IF NOT EXISTS ehac.published_verification_by_status ON CLUSTER ${CLUSTER} AS
SELECT status,
       if(n > 0 AND n < 11, NULL, n) AS declarations
FROM
(
    SELECT status, count() AS n
    FROM ehac.declaration_verification
    GROUP BY status
);

-- Microdata an analyst may read row by row: one row per declaration whose quasi-identifiers
-- (arrival day and port, domestic or not, citizen or not, home province, age band, sex) are
-- shared by at least 11 distinct travellers (a row stored before traveller keys counts as its
-- own traveller); every other row is left out. Nationality is only citizen or not, so a rare
-- one hides among the foreigners. No flight, seat, times, district, traveller key or
-- declaration id. Computed as it is read, so it holds as rows arrive: the groups are counted
-- before the rows are read, and rows only ever join a group.
CREATE VIEW IF NOT EXISTS ehac.arrivals_microdata ON CLUSTER ${CLUSTER} AS
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
    SELECT arrival_date, arrival_port, domestic, nationality = 'IDN' AS citizen, home_province, age_band, sex
    FROM ehac.declarations
    GROUP BY arrival_date, arrival_port, domestic, citizen, home_province, age_band, sex
    HAVING uniqExact(if(traveller_key = '', declaration_id, traveller_key)) >= 11
) AS published_groups USING (arrival_date, arrival_port, domestic, citizen, home_province, age_band, sex);
