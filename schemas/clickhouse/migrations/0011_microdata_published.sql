-- The microdata as analysts read it, kept as a table that ClickHouse rebuilds from 0010's
-- groups, instead of merging every group's set of travellers at each read (seconds at ten
-- million declarations, see BENCHMARKS.md). A rebuild writes a new table and swaps it in at
-- once, so at every moment each row shown belongs to a group of at least 11 distinct
-- travellers; rows arrive only in groups (they never leave one), so a group published stays
-- publishable. A declaration stored is shown after the next rebuild: microdata serve research,
-- the morning's counts come from the rollups, which are current to the row.
CREATE MATERIALIZED VIEW IF NOT EXISTS ehac.microdata_published
REFRESH EVERY 5 MINUTE
ENGINE = MergeTree
ORDER BY (arrival_date, arrival_port, home_province, age_band, sex)
AS SELECT arrival_date, arrival_port, domestic, citizen, home_province, age_band, sex,
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

-- The analysts' name stays a view (their grant and its definer do not change), now over the
-- published table.
DROP VIEW IF EXISTS ehac.arrivals_microdata;
CREATE VIEW ehac.arrivals_microdata AS
SELECT arrival_date, arrival_port, domestic, citizen, home_province, age_band, sex,
       fever, cough, shortness_of_breath, contact_with_case, vaccination_doses, test_kind, test_result, triage, verification_status
FROM ehac.microdata_published;
