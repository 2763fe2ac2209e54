-- A retried insert is dropped by ClickHouse itself. The sink gives every insert an
-- insert_deduplication_token made of where its rows were read (table, topic partition, offsets):
-- an insert whose answer was lost is sent again with the same token, and ClickHouse drops it.
-- Replicated tables keep such a window already (replicated_deduplication_window); a table on one
-- server keeps none unless told to.
ALTER TABLE ehac.declarations MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE ehac.rejections MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE ehac_pii.identities MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE ehac_pii.rejected_payloads MODIFY SETTING non_replicated_deduplication_window = 1000;
