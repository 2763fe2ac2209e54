-- NIK verification against the population registry (issue 3, seed 004).
-- The enricher stores what the registry said at the time, `pending` when it could not ask.
-- `ehac reconcile` later writes final answers for pending rows into ehac.verifications, a
-- ReplacingMergeTree keyed by declaration_id with checked_at as version: the newest answer wins,
-- and a reconciliation run that is repeated or overlaps another leaves one row per declaration
-- after merges (query with FINAL or argMax, as ehac.declaration_verification does).
-- ClickHouse 18.16 has no ADD COLUMN IF NOT EXISTS: this runs once, recorded in schema_migrations.
ALTER TABLE ehac.declarations
    ADD COLUMN verification_status
        Enum8('not_applicable' = 0, 'pending' = 1, 'verified' = 2, 'not_found' = 3, 'mismatch' = 4) DEFAULT 'pending';

CREATE TABLE IF NOT EXISTS ehac.verifications
(
    declaration_id String,
    nik String,
    status Enum8('not_applicable' = 0, 'pending' = 1, 'verified' = 2, 'not_found' = 3, 'mismatch' = 4),
    checked_at DateTime('UTC'),
    checked_by String COMMENT 'service and version that asked the registry'
)
ENGINE = ReplacingMergeTree(checked_at)
ORDER BY declaration_id;

-- The current verification status of every declaration: the reconciled answer when there is
-- one, else what the enricher stored.
CREATE VIEW IF NOT EXISTS ehac.declaration_verification AS
SELECT
    declaration_id,
    if(reconciled = '', toString(verification_status), reconciled) AS status
FROM ehac.declarations
ANY LEFT JOIN
(
    SELECT declaration_id, toString(argMax(status, checked_at)) AS reconciled
    FROM ehac.verifications
    GROUP BY declaration_id
) AS reconciled_verifications USING (declaration_id);
