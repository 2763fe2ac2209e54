-- 0005 on a cluster: the column on the replicated local table (replicated once per shard),
-- then the Distributed table made again over it (it cannot be altered ON CLUSTER, Code 371).
ALTER TABLE ehac.declarations_local ON CLUSTER ${CLUSTER} ADD COLUMN home_district_code String DEFAULT '' AFTER home_regency;
DROP TABLE IF EXISTS ehac.declarations ON CLUSTER ${CLUSTER};
CREATE TABLE IF NOT EXISTS ehac.declarations ON CLUSTER ${CLUSTER} AS ehac.declarations_local
ENGINE = Distributed(${CLUSTER}, ehac, declarations_local, cityHash64(declaration_id));
