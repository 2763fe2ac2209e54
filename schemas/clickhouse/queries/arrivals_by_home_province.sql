-- Where arriving citizens live (from the NIK's district of issue).
-- Small counts suppressed: the published view holds a province of 1 to 10 travellers as NULL
-- (count and mean age); one below {suppress_below} is NULL here too (suppressed_cells = 2), so
-- no cell singles out a traveller.
SELECT home_province,
       if(isNull(travellers) OR ifNull(travellers, 0) < {suppress_below}, NULL, travellers) AS travellers,
       if(isNull(travellers) OR ifNull(travellers, 0) < {suppress_below}, NULL, mean_age) AS mean_age,
       (isNull(travellers) OR ifNull(travellers, 0) < {suppress_below}) * 2 AS suppressed_cells
FROM ehac.published_arrivals_by_home_province
ORDER BY travellers DESC, home_province
LIMIT 10
