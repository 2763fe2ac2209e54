-- What analysts read: counts kept by ClickHouse as rows arrive, published with small counts
-- suppressed, and microdata in which no combination of quasi-identifiers is held by fewer than
-- 11 travellers. Row-level ehac.declarations becomes the epidemiologists' (access.sql).
-- Every view and the rollup run on ClickHouse 18.16 too (the cluster form).

-- Counts by arrival hour, arrival port, departure country, home province, triage,
-- channel, verification status (as the enricher stored it) and domestic or not, written by the
-- same INSERT as the declarations. Exact under the sink's retries: modern ClickHouse pushes
-- even an insert it drops as a retry (its deduplication token) on to the view, with a token
-- derived from the insert's (deduplicate_blocks_in_dependent_materialized_views), so the view's
-- table keeps a deduplication window as the declarations do. A replay is never inserted twice:
-- the sink's dedup window drops rows already stored. POPULATE counts the rows stored before.
CREATE MATERIALIZED VIEW IF NOT EXISTS ehac.arrival_counts
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(arrival_date)
ORDER BY (arrival_date, arrival_hour, arrival_port, departure_country, home_province, triage, channel, verification_status, domestic)
SETTINGS non_replicated_deduplication_window = 1000
POPULATE
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
FROM ehac.declarations
GROUP BY arrival_date, arrival_hour, arrival_port, departure_country, home_province, triage, channel, verification_status, domestic;

-- The analysts' published tables: read from the rollup, a count of 1 to 10 is NULL (the
-- threshold of the standard queries), and so is what would let it be worked out.
CREATE VIEW IF NOT EXISTS ehac.published_arrivals_by_port_day AS
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

CREATE VIEW IF NOT EXISTS ehac.published_arrivals_by_hour AS
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

CREATE VIEW IF NOT EXISTS ehac.published_triage_by_port AS
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

CREATE VIEW IF NOT EXISTS ehac.published_arrivals_by_home_province AS
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

CREATE VIEW IF NOT EXISTS ehac.published_arrivals_by_departure_country AS
SELECT departure_country, arrival_date,
       if(arrivals > 0 AND arrivals < 11, NULL, arrivals) AS travellers
FROM
(
    SELECT departure_country, arrival_date, sum(declarations) AS arrivals
    FROM ehac.arrival_counts
    GROUP BY departure_country, arrival_date
);

CREATE VIEW IF NOT EXISTS ehac.published_arrivals_by_channel AS
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
CREATE VIEW IF NOT EXISTS ehac.published_verification_by_status AS
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
CREATE VIEW IF NOT EXISTS ehac.arrivals_microdata AS
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
