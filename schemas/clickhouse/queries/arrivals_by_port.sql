-- Busiest ports of entry per local arrival day, split domestic / international.
-- Small counts suppressed: a count of 1 to {suppress_below} - 1 is published as NULL, and
-- suppressed_cells says how many of the row's counts were, so no cell singles out a traveller.
SELECT arrival_port, port_name, arrival_date,
       if(arrivals > 0 AND arrivals < {suppress_below}, NULL, arrivals) AS travellers,
       if(international_arrivals > 0 AND international_arrivals < {suppress_below}, NULL, international_arrivals) AS international,
       (arrivals > 0 AND arrivals < {suppress_below}) + (international_arrivals > 0 AND international_arrivals < {suppress_below}) AS suppressed_cells
FROM
(
    SELECT arrival_port, any(arrival_port_name) AS port_name, arrival_date,
           count() AS arrivals, countIf(domestic = 0) AS international_arrivals
    FROM ehac.declarations
    GROUP BY arrival_port, arrival_date
)
ORDER BY arrivals DESC, arrival_port
LIMIT 10
