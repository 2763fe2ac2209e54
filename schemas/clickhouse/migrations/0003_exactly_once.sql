-- Exactly once into ClickHouse (issue 4).
-- 1. Where every stored row was read (topic partition + offset -> identity), in tables ordered
--    for range lookups, so a sink task that takes over a partition can load the identities
--    already stored near its restart point in one cheap query. Materialized views: they are
--    written by the same INSERT as the rows themselves.
-- 2. ehac.declarations becomes a ReplacingMergeTree on its sorting key (which ends with the
--    declaration id): a second net, should a duplicate ever slip past the sink. Queries that
--    must not count one twice even then use FINAL or uniqExact(declaration_id).
-- ClickHouse cannot change a table's engine in place: copy into a new table and swap names.
CREATE TABLE IF NOT EXISTS ehac.declarations_replacing AS ehac.declarations
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(arrival_date)
ORDER BY (arrival_port, arrival_date, declaration_id);

INSERT INTO ehac.declarations_replacing SELECT * FROM ehac.declarations;

RENAME TABLE ehac.declarations TO ehac.declarations_mergetree, ehac.declarations_replacing TO ehac.declarations;

DROP TABLE ehac.declarations_mergetree;

CREATE MATERIALIZED VIEW IF NOT EXISTS ehac.declaration_positions
ENGINE = ReplacingMergeTree
ORDER BY (kafka_partition, kafka_offset)
POPULATE
AS SELECT kafka_partition, kafka_offset, declaration_id FROM ehac.declarations;

CREATE MATERIALIZED VIEW IF NOT EXISTS ehac.rejection_positions
ENGINE = ReplacingMergeTree
ORDER BY (kafka_partition, kafka_offset)
POPULATE
AS SELECT kafka_partition, kafka_offset,
          concat(source_topic, '/', toString(source_partition), '/', toString(source_offset)) AS source_position
   FROM ehac.rejections;
