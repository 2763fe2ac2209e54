-- Health officers' workload: how many travellers per triage level at each port of entry.
SELECT arrival_port,
       countIf(triage = 'red') AS red, countIf(triage = 'yellow') AS yellow, countIf(triage = 'green') AS green
FROM ehac.declarations
GROUP BY arrival_port
ORDER BY red DESC, yellow DESC, arrival_port
LIMIT 10
