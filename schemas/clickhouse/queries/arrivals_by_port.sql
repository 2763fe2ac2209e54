-- Busiest ports of entry per local arrival day, split domestic / international.
-- Small counts suppressed: the published view holds counts of 1 to 10 as NULL; a count below
-- {suppress_below} is NULL here too, and suppressed_cells says how many of the row's counts
-- are, so no cell singles out a traveller.
SELECT arrival_port, port_name, arrival_date,
       if(isNull(travellers) OR ifNull(travellers, 0) < {suppress_below}, NULL, travellers) AS travellers,
       if(isNull(international) OR (ifNull(international, 0) > 0 AND ifNull(international, 0) < {suppress_below}), NULL, international) AS international,
       (isNull(travellers) OR ifNull(travellers, 0) < {suppress_below})
           + (isNull(international) OR (ifNull(international, 0) > 0 AND ifNull(international, 0) < {suppress_below})) AS suppressed_cells
FROM ehac.published_arrivals_by_port_day
ORDER BY travellers DESC, arrival_port, arrival_date
LIMIT 10
