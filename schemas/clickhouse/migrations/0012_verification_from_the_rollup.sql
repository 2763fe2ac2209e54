-- Declarations per NIK verification status as it stands now, from the rollup instead of a join
-- of every declaration with the reconciled answers (the one standard query that read every row:
-- p95 about 1 s at ten million, BENCHMARKS.md). `ehac reconcile` answers only declarations
-- stored pending and writes one answer or more per declaration (the newest counts), so the
-- statuses now are the statuses at arrival, one fewer pending per reconciled declaration, one
-- more of its newest answer. Counts of 1 to 10 stay NULL.
DROP VIEW IF EXISTS ehac.published_verification_by_status;
CREATE VIEW ehac.published_verification_by_status AS
SELECT status,
       if(n < 11, NULL, n) AS declarations
FROM
(
    SELECT status, toUInt64(sum(change)) AS n
    FROM
    (
        SELECT toString(verification_status) AS status, toInt64(sum(declarations)) AS change
        FROM ehac.arrival_counts
        GROUP BY status
        UNION ALL
        SELECT 'pending' AS status, -toInt64(count()) AS change
        FROM (SELECT declaration_id FROM ehac.verifications GROUP BY declaration_id)
        UNION ALL
        SELECT status, toInt64(count()) AS change
        FROM (SELECT declaration_id, toString(argMax(status, checked_at)) AS status FROM ehac.verifications GROUP BY declaration_id)
        GROUP BY status
    )
    GROUP BY status
    HAVING sum(change) > 0
)
;
