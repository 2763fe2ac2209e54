-- Who may read and write what, for modern ClickHouse (SQL access control, 20.4 and later).
-- ClickHouse 18.16 has none of this; there the same users are in users.xml (written by
-- crates/ehac-devstack/src/access.rs), restricted per database only. Modern ClickHouse also
-- restricts per table and column, and can give the sink INSERT without SELECT.
-- Apply as a user with access_management after the migrations. `${...}` are the SHA-256 hex
-- digests of the passwords, filled in by the deployment (never committed). The `default` user
-- of users.xml must get a password (or be removed) in the same deployment.

-- Analysts: the analyst database only, read-only, limited, counted.
CREATE SETTINGS PROFILE IF NOT EXISTS ehac_analyst_limits SETTINGS readonly = 1, max_execution_time = 60, max_result_rows = 100000, result_overflow_mode = 'throw';
CREATE ROLE IF NOT EXISTS ehac_analyst SETTINGS PROFILE 'ehac_analyst_limits';
GRANT SELECT ON ehac.* TO ehac_analyst;
CREATE QUOTA IF NOT EXISTS ehac_analyst_quota FOR INTERVAL 1 hour MAX queries = 10000, result_rows = 10000000 TO ehac_analyst;

-- Case investigators (contact tracing) and DLQ replay: both databases, read-only, tighter limits.
CREATE SETTINGS PROFILE IF NOT EXISTS ehac_investigator_limits SETTINGS readonly = 1, max_execution_time = 60, max_result_rows = 100000, result_overflow_mode = 'throw';
CREATE ROLE IF NOT EXISTS ehac_investigator SETTINGS PROFILE 'ehac_investigator_limits';
GRANT SELECT ON ehac.* TO ehac_investigator;
GRANT SELECT ON ehac_pii.* TO ehac_investigator;
CREATE QUOTA IF NOT EXISTS ehac_investigator_quota FOR INTERVAL 1 hour MAX queries = 2000, result_rows = 200000 TO ehac_investigator;

-- The sink: INSERT into the tables it fills, SELECT only on the position tables its dedup
-- window reads (offsets and ids, no identity). No DDL.
CREATE ROLE IF NOT EXISTS ehac_writer;
GRANT INSERT ON ehac.declarations TO ehac_writer;
GRANT INSERT ON ehac.rejections TO ehac_writer;
GRANT INSERT ON ehac_pii.identities TO ehac_writer;
GRANT INSERT ON ehac_pii.rejected_payloads TO ehac_writer;
GRANT SELECT ON ehac.declaration_positions TO ehac_writer;
GRANT SELECT ON ehac.rejection_positions TO ehac_writer;
GRANT SELECT ON ehac_pii.identity_positions TO ehac_writer;
GRANT SELECT ON ehac_pii.rejected_payload_positions TO ehac_writer;

-- `ehac reconcile`: the pending citizens' NIK and birth date, nothing else of their identity.
CREATE ROLE IF NOT EXISTS ehac_reconciler;
GRANT SELECT(declaration_id, nik, date_of_birth) ON ehac_pii.identities TO ehac_reconciler;
GRANT SELECT(declaration_id, sex, verification_status, received_at) ON ehac.declarations TO ehac_reconciler;
GRANT SELECT, INSERT ON ehac.verifications TO ehac_reconciler;

-- `ehac migrate`: DDL on the two databases.
CREATE ROLE IF NOT EXISTS ehac_migrator;
GRANT CREATE DATABASE ON ehac.* TO ehac_migrator;
GRANT CREATE DATABASE ON ehac_pii.* TO ehac_migrator;
GRANT ALL ON ehac.* TO ehac_migrator;
GRANT ALL ON ehac_pii.* TO ehac_migrator;
-- Modern ClickHouse also asks for the right to create tables of each engine (TABLE ENGINE,
-- checked since table_engines_require_grant became the default): the engines the schema uses.
GRANT TABLE ENGINE ON MergeTree TO ehac_migrator;
GRANT TABLE ENGINE ON ReplacingMergeTree TO ehac_migrator;
GRANT TABLE ENGINE ON AggregatingMergeTree TO ehac_migrator;
GRANT TABLE ENGINE ON SummingMergeTree TO ehac_migrator;
GRANT TABLE ENGINE ON Memory TO ehac_migrator;

CREATE USER IF NOT EXISTS analyst IDENTIFIED WITH sha256_hash BY '${ANALYST_PASSWORD_SHA256}' DEFAULT ROLE ehac_analyst;
CREATE USER IF NOT EXISTS investigator IDENTIFIED WITH sha256_hash BY '${INVESTIGATOR_PASSWORD_SHA256}' DEFAULT ROLE ehac_investigator;
CREATE USER IF NOT EXISTS writer IDENTIFIED WITH sha256_hash BY '${WRITER_PASSWORD_SHA256}' DEFAULT ROLE ehac_writer;
CREATE USER IF NOT EXISTS reconciler IDENTIFIED WITH sha256_hash BY '${RECONCILER_PASSWORD_SHA256}' DEFAULT ROLE ehac_reconciler;
CREATE USER IF NOT EXISTS migrator IDENTIFIED WITH sha256_hash BY '${MIGRATOR_PASSWORD_SHA256}' DEFAULT ROLE ehac_migrator;
GRANT ehac_analyst TO analyst;
GRANT ehac_investigator TO investigator;
GRANT ehac_writer TO writer;
GRANT ehac_reconciler TO reconciler;
GRANT ehac_migrator TO migrator;

-- The position views run with the migrator's rights, not their caller's. A materialized view
-- without SQL SECURITY checks the inserting user's SELECT on its source table while an insert
-- pushes rows into it, and the reading user's when it is read: the writer, which may not
-- SELECT the tables it fills, would get Code 497 on every insert and on its dedup window's
-- reads (found by tests/chdb_access_check.py, which enforces this file's grants). On a cluster
-- the same goes for the `_local` views (add ON CLUSTER).
ALTER TABLE ehac.declaration_positions MODIFY DEFINER = migrator SQL SECURITY DEFINER;
ALTER TABLE ehac.rejection_positions MODIFY DEFINER = migrator SQL SECURITY DEFINER;
ALTER TABLE ehac_pii.identity_positions MODIFY DEFINER = migrator SQL SECURITY DEFINER;
ALTER TABLE ehac_pii.rejected_payload_positions MODIFY DEFINER = migrator SQL SECURITY DEFINER;
