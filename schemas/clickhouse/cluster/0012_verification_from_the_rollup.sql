-- 0012 on a cluster: the same view over the Distributed rollup and verifications.
DROP TABLE IF EXISTS ehac.published_verification_by_status ON CLUSTER ${CLUSTER};
CREATE VIEW ehac.published_verification_by_status ON CLUSTER ${CLUSTER} AS
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
