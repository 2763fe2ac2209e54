-- Health officers' workload: how many travellers per triage level at each port of entry.
-- Small counts suppressed: a count of 1 to {suppress_below} - 1 is published as NULL, and
-- suppressed_cells says how many of the row's counts were, so no cell singles out a traveller.
SELECT arrival_port,
       if(red_arrivals > 0 AND red_arrivals < {suppress_below}, NULL, red_arrivals) AS red,
       if(yellow_arrivals > 0 AND yellow_arrivals < {suppress_below}, NULL, yellow_arrivals) AS yellow,
       if(green_arrivals > 0 AND green_arrivals < {suppress_below}, NULL, green_arrivals) AS green,
       (red_arrivals > 0 AND red_arrivals < {suppress_below}) + (yellow_arrivals > 0 AND yellow_arrivals < {suppress_below})
           + (green_arrivals > 0 AND green_arrivals < {suppress_below}) AS suppressed_cells
FROM
(
    SELECT arrival_port,
           countIf(triage = 'red') AS red_arrivals, countIf(triage = 'yellow') AS yellow_arrivals,
           countIf(triage = 'green') AS green_arrivals
    FROM ehac.declarations
    GROUP BY arrival_port
)
ORDER BY red_arrivals DESC, yellow_arrivals DESC, arrival_port
LIMIT 10
