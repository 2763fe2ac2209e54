-- Who may read and write what, for modern ClickHouse (SQL access control, 20.4 and later).
-- ClickHouse 18.16 has none of this; there the same users are in users.xml (written by
-- crates/ehac-devstack/src/access.rs), restricted per database only. Modern ClickHouse also
-- restricts per table and column, and can give the sink INSERT without SELECT.
-- Apply as a user with access_management after the migrations. `${...}` are the SHA-256 hex
-- digests of the passwords, filled in by the deployment (never committed). The `default` user
-- of users.xml must get a password (or be removed) in the same deployment.

-- Analysts: counts with 1 to 10 published as NULL, microdata in which every combination of
-- quasi-identifiers holds 11 travellers or more, and why records were rejected (codes and
-- fields). Nothing row by row that could single a traveller out: not ehac.declarations, not
-- the rollup's raw counts. Read-only, limited, counted. readonly = 2, not 1: ClickHouse's own
-- /dashboard and /play send settings with every query (add_http_cors_header), which readonly = 1
-- refuses; the limits are constraints no query can lift, and readonly itself cannot be lowered.
CREATE SETTINGS PROFILE IF NOT EXISTS ehac_analyst_limits SETTINGS readonly = 2, max_execution_time = 60 CONST, max_result_rows = 100000 CONST, result_overflow_mode = 'throw' CONST;
CREATE ROLE IF NOT EXISTS ehac_analyst SETTINGS PROFILE 'ehac_analyst_limits';
GRANT SELECT ON ehac.published_arrivals_by_port_day TO ehac_analyst;
GRANT SELECT ON ehac.published_arrivals_by_hour TO ehac_analyst;
GRANT SELECT ON ehac.published_triage_by_port TO ehac_analyst;
GRANT SELECT ON ehac.published_arrivals_by_home_province TO ehac_analyst;
GRANT SELECT ON ehac.published_arrivals_by_departure_country TO ehac_analyst;
GRANT SELECT ON ehac.published_arrivals_by_channel TO ehac_analyst;
GRANT SELECT ON ehac.published_verification_by_status TO ehac_analyst;
GRANT SELECT ON ehac.arrivals_microdata TO ehac_analyst;
GRANT SELECT ON ehac.published_triage_by_hour TO ehac_analyst;
GRANT SELECT ON ehac.published_verification_by_hour TO ehac_analyst;
GRANT SELECT ON ehac.dashboards TO ehac_analyst;
GRANT SELECT(error_codes, error_fields, rejected_at, service, service_version, source_topic) ON ehac.rejections TO ehac_analyst;
CREATE QUOTA IF NOT EXISTS ehac_analyst_quota FOR INTERVAL 1 hour MAX queries = 10000, result_rows = 10000000 TO ehac_analyst;

-- Epidemiologists: row-level pseudonymised detail (ehac.declarations with its traveller key,
-- the rollup's raw counts), no identity. Every query they run is kept in system.query_log
-- (log_queries, which readonly = 1 keeps them from turning off).
CREATE SETTINGS PROFILE IF NOT EXISTS ehac_epidemiologist_limits SETTINGS readonly = 1, log_queries = 1, max_execution_time = 120, max_result_rows = 1000000, result_overflow_mode = 'throw';
CREATE ROLE IF NOT EXISTS ehac_epidemiologist SETTINGS PROFILE 'ehac_epidemiologist_limits';
GRANT SELECT ON ehac.* TO ehac_epidemiologist;
CREATE QUOTA IF NOT EXISTS ehac_epidemiologist_quota FOR INTERVAL 1 hour MAX queries = 2000, result_rows = 20000000 TO ehac_epidemiologist;

-- Case investigators (contact tracing) and DLQ replay: both databases to read, tighter limits,
-- every query kept in system.query_log; and the audit of their identity reads, which they
-- append to (`ehac lookup`) and cannot alter. Not readonly (that would refuse the audit's
-- INSERT): the grants refuse every other write, and the limits are constraints SET cannot lift.
CREATE SETTINGS PROFILE IF NOT EXISTS ehac_investigator_limits SETTINGS log_queries = 1 CONST, allow_ddl = 0 CONST, max_execution_time = 60 CONST, max_result_rows = 100000 CONST, result_overflow_mode = 'throw' CONST;
CREATE ROLE IF NOT EXISTS ehac_investigator SETTINGS PROFILE 'ehac_investigator_limits';
GRANT SELECT ON ehac.* TO ehac_investigator;
GRANT SELECT ON ehac_pii.* TO ehac_investigator;
GRANT INSERT ON ehac_pii.identity_reads TO ehac_investigator;
CREATE QUOTA IF NOT EXISTS ehac_investigator_quota FOR INTERVAL 1 hour MAX queries = 2000, result_rows = 200000 TO ehac_investigator;

-- The sink: INSERT into the tables it fills, SELECT only on the position tables its dedup
-- window reads (offsets and ids, no identity). No DDL.
-- A retried insert that ClickHouse drops is dropped from the rollups too (the views' tables
-- deduplicate by a token derived from the insert's; the setting's default, made explicit).
CREATE SETTINGS PROFILE IF NOT EXISTS ehac_writer_settings SETTINGS deduplicate_blocks_in_dependent_materialized_views = 1;
CREATE ROLE IF NOT EXISTS ehac_writer SETTINGS PROFILE 'ehac_writer_settings';
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
-- Auditing who read what: the query log of the identity and row-level readers.
GRANT SELECT ON system.query_log TO ehac_migrator;

CREATE USER IF NOT EXISTS analyst IDENTIFIED WITH sha256_hash BY '${ANALYST_PASSWORD_SHA256}' DEFAULT ROLE ehac_analyst;
CREATE USER IF NOT EXISTS investigator IDENTIFIED WITH sha256_hash BY '${INVESTIGATOR_PASSWORD_SHA256}' DEFAULT ROLE ehac_investigator;
CREATE USER IF NOT EXISTS writer IDENTIFIED WITH sha256_hash BY '${WRITER_PASSWORD_SHA256}' DEFAULT ROLE ehac_writer;
CREATE USER IF NOT EXISTS reconciler IDENTIFIED WITH sha256_hash BY '${RECONCILER_PASSWORD_SHA256}' DEFAULT ROLE ehac_reconciler;
CREATE USER IF NOT EXISTS epidemiologist IDENTIFIED WITH sha256_hash BY '${EPIDEMIOLOGIST_PASSWORD_SHA256}' DEFAULT ROLE ehac_epidemiologist;
CREATE USER IF NOT EXISTS migrator IDENTIFIED WITH sha256_hash BY '${MIGRATOR_PASSWORD_SHA256}' DEFAULT ROLE ehac_migrator;
GRANT ehac_analyst TO analyst;
GRANT ehac_investigator TO investigator;
GRANT ehac_writer TO writer;
GRANT ehac_reconciler TO reconciler;
GRANT ehac_epidemiologist TO epidemiologist;
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
-- The rollup is filled by the writer's inserts; the analysts' views read what the analyst may
-- not (the declarations, the rollup's raw counts) and publish only what passes suppression.
ALTER TABLE ehac.arrival_counts MODIFY DEFINER = migrator SQL SECURITY DEFINER;
ALTER TABLE ehac.microdata_groups MODIFY DEFINER = migrator SQL SECURITY DEFINER;
ALTER TABLE ehac.microdata_published MODIFY DEFINER = migrator SQL SECURITY DEFINER;
ALTER TABLE ehac.published_arrivals_by_port_day MODIFY DEFINER = migrator SQL SECURITY DEFINER;
ALTER TABLE ehac.published_arrivals_by_hour MODIFY DEFINER = migrator SQL SECURITY DEFINER;
ALTER TABLE ehac.published_triage_by_port MODIFY DEFINER = migrator SQL SECURITY DEFINER;
ALTER TABLE ehac.published_arrivals_by_home_province MODIFY DEFINER = migrator SQL SECURITY DEFINER;
ALTER TABLE ehac.published_arrivals_by_departure_country MODIFY DEFINER = migrator SQL SECURITY DEFINER;
ALTER TABLE ehac.published_arrivals_by_channel MODIFY DEFINER = migrator SQL SECURITY DEFINER;
ALTER TABLE ehac.published_verification_by_status MODIFY DEFINER = migrator SQL SECURITY DEFINER;
ALTER TABLE ehac.arrivals_microdata MODIFY DEFINER = migrator SQL SECURITY DEFINER;
ALTER TABLE ehac.published_triage_by_hour MODIFY DEFINER = migrator SQL SECURITY DEFINER;
ALTER TABLE ehac.published_verification_by_hour MODIFY DEFINER = migrator SQL SECURITY DEFINER;
