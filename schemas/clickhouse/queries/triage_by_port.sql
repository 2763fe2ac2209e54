-- Health officers' workload: how many travellers per triage level at each port of entry.
-- Small counts suppressed: the published view holds counts of 1 to 10 as NULL; a count below
-- {suppress_below} is NULL here too, and suppressed_cells says how many of the row's counts
-- are, so no cell singles out a traveller.
SELECT arrival_port,
       if(isNull(red) OR (ifNull(red, 0) > 0 AND ifNull(red, 0) < {suppress_below}), NULL, red) AS red,
       if(isNull(yellow) OR (ifNull(yellow, 0) > 0 AND ifNull(yellow, 0) < {suppress_below}), NULL, yellow) AS yellow,
       if(isNull(green) OR (ifNull(green, 0) > 0 AND ifNull(green, 0) < {suppress_below}), NULL, green) AS green,
       (isNull(red) OR (ifNull(red, 0) > 0 AND ifNull(red, 0) < {suppress_below}))
           + (isNull(yellow) OR (ifNull(yellow, 0) > 0 AND ifNull(yellow, 0) < {suppress_below}))
           + (isNull(green) OR (ifNull(green, 0) > 0 AND ifNull(green, 0) < {suppress_below})) AS suppressed_cells
FROM ehac.published_triage_by_port
ORDER BY red DESC, yellow DESC, arrival_port
LIMIT 10
