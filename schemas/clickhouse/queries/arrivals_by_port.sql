-- Busiest ports of entry per local arrival day, split domestic / international.
SELECT arrival_port, any(arrival_port_name) AS port_name, arrival_date,
       count() AS travellers, countIf(domestic = 0) AS international
FROM ehac.declarations
GROUP BY arrival_port, arrival_date
ORDER BY travellers DESC, arrival_port
LIMIT 10
