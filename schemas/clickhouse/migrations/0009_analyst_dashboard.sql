-- The analysts' dashboard on ClickHouse itself: /dashboard draws the charts of any table with
-- the columns of system.dashboards (dashboard, title, query); analysts point it at this one
-- (docs/ANALYSTS.md). Every chart reads the published views, so it shows what the analyst may
-- see, counts of 1-10 as gaps. The window is `seconds` either side of now (declared arrivals
-- lie ahead), or from/to. deploy/grafana/ehac-analysts.json has the same charts for Grafana.

-- Per hour, one published dimension at a time, for the dashboards.
CREATE VIEW IF NOT EXISTS ehac.published_triage_by_hour AS
SELECT arrival_hour, triage,
       if(arrivals > 0 AND arrivals < 11, NULL, arrivals) AS travellers
FROM
(
    SELECT arrival_hour, toString(triage) AS triage, sum(declarations) AS arrivals
    FROM ehac.arrival_counts
    GROUP BY arrival_hour, triage
);

CREATE VIEW IF NOT EXISTS ehac.published_verification_by_hour AS
SELECT arrival_hour, verification_status,
       if(arrivals > 0 AND arrivals < 11, NULL, arrivals) AS travellers
FROM
(
    SELECT arrival_hour, toString(verification_status) AS verification_status, sum(declarations) AS arrivals
    FROM ehac.arrival_counts
    GROUP BY arrival_hour, verification_status
);

CREATE TABLE IF NOT EXISTS ehac.dashboards
(
    dashboard String,
    title String,
    query String
)
ENGINE = ReplacingMergeTree
ORDER BY (dashboard, title);

INSERT INTO ehac.dashboards (dashboard, title, query) VALUES
('e-HAC', 'Arrivals per hour by airport', 'WITH toDateTimeOrDefault({from:String}, \'\', now() - {seconds:UInt32}) AS from, toDateTimeOrDefault({to:String}, \'\', now() + {seconds:UInt32}) AS to
SELECT toStartOfInterval(arrival_hour, INTERVAL greatest({rounding:UInt32}, 3600) SECOND)::INT AS t, arrival_port, sum(travellers) AS travellers
FROM ehac.published_arrivals_by_hour
WHERE arrival_hour BETWEEN from AND to
GROUP BY t, arrival_port
ORDER BY t, arrival_port'),
('e-HAC', 'Triage mix per hour', 'WITH toDateTimeOrDefault({from:String}, \'\', now() - {seconds:UInt32}) AS from, toDateTimeOrDefault({to:String}, \'\', now() + {seconds:UInt32}) AS to
SELECT toStartOfInterval(arrival_hour, INTERVAL greatest({rounding:UInt32}, 3600) SECOND)::INT AS t, triage, sum(travellers) AS travellers
FROM ehac.published_triage_by_hour
WHERE arrival_hour BETWEEN from AND to
GROUP BY t, triage
ORDER BY t, triage'),
('e-HAC', 'Symptomatic arrivals per hour by airport', 'WITH toDateTimeOrDefault({from:String}, \'\', now() - {seconds:UInt32}) AS from, toDateTimeOrDefault({to:String}, \'\', now() + {seconds:UInt32}) AS to
SELECT toStartOfInterval(arrival_hour, INTERVAL greatest({rounding:UInt32}, 3600) SECOND)::INT AS t, arrival_port, sum(symptomatic) AS symptomatic
FROM ehac.published_arrivals_by_hour
WHERE arrival_hour BETWEEN from AND to
GROUP BY t, arrival_port
ORDER BY t, arrival_port'),
('e-HAC', 'Red-triage arrivals per hour by airport', 'WITH toDateTimeOrDefault({from:String}, \'\', now() - {seconds:UInt32}) AS from, toDateTimeOrDefault({to:String}, \'\', now() + {seconds:UInt32}) AS to
SELECT toStartOfInterval(arrival_hour, INTERVAL greatest({rounding:UInt32}, 3600) SECOND)::INT AS t, arrival_port, sum(red) AS red
FROM ehac.published_arrivals_by_hour
WHERE arrival_hour BETWEEN from AND to
GROUP BY t, arrival_port
ORDER BY t, arrival_port'),
('e-HAC', 'NIK verification at arrival per hour', 'WITH toDateTimeOrDefault({from:String}, \'\', now() - {seconds:UInt32}) AS from, toDateTimeOrDefault({to:String}, \'\', now() + {seconds:UInt32}) AS to
SELECT toStartOfInterval(arrival_hour, INTERVAL greatest({rounding:UInt32}, 3600) SECOND)::INT AS t, verification_status, sum(travellers) AS travellers
FROM ehac.published_verification_by_hour
WHERE arrival_hour BETWEEN from AND to
GROUP BY t, verification_status
ORDER BY t, verification_status'),
('e-HAC', 'Rejections per hour by code', 'WITH toDateTimeOrDefault({from:String}, \'\', now() - {seconds:UInt32}) AS from, toDateTimeOrDefault({to:String}, \'\', now() + {seconds:UInt32}) AS to
SELECT toStartOfInterval(rejected_at, INTERVAL greatest({rounding:UInt32}, 3600) SECOND)::INT AS t, code, count() AS rejections
FROM ehac.rejections
ARRAY JOIN error_codes AS code
WHERE rejected_at BETWEEN from AND to
GROUP BY t, code
ORDER BY t, code'),
('e-HAC', 'Arrivals per day from the top departure countries', 'WITH toDateTimeOrDefault({from:String}, \'\', now() - {seconds:UInt32}) AS from, toDateTimeOrDefault({to:String}, \'\', now() + {seconds:UInt32}) AS to
SELECT toDateTime(arrival_date)::INT AS t, departure_country, sum(travellers) AS travellers
FROM ehac.published_arrivals_by_departure_country
WHERE arrival_date BETWEEN toDate(from) AND toDate(to)
  AND departure_country IN (SELECT departure_country FROM ehac.published_arrivals_by_departure_country GROUP BY departure_country ORDER BY sum(travellers) DESC LIMIT 8)
GROUP BY t, departure_country
ORDER BY t, departure_country');
