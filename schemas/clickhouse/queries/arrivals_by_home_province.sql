-- Where arriving citizens live (from the NIK's district of issue).
-- Small counts suppressed: a province with 1 to {suppress_below} - 1 travellers shows NULL for
-- the count and the mean age (suppressed_cells = 2), so no cell singles out a traveller.
SELECT home_province,
       if(arrivals < {suppress_below}, NULL, arrivals) AS travellers,
       if(arrivals < {suppress_below}, NULL, mean_age_years) AS mean_age,
       (arrivals < {suppress_below}) * 2 AS suppressed_cells
FROM
(
    SELECT home_province, count() AS arrivals, round(avg(age_years), 1) AS mean_age_years
    FROM ehac.declarations
    WHERE home_province != ''
    GROUP BY home_province
)
ORDER BY arrivals DESC, home_province
LIMIT 10
