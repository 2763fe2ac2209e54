"""Does a Kafka-API broker give back what it acknowledged? (Python confluent-kafka, no ehac code.)

Produces N records with unique keys to a new 12-partition topic (idempotent, acks=all), then
checks three things a consumer relies on:
  1. reading every partition from offset 0 returns every record, offsets consecutive;
  2. a fetch from a random offset inside the log starts exactly at that offset (40 tries);
  3. ListOffsets' end offsets add up to the records acknowledged.
Exits 1 if any check fails. tansu 0.6 passes on sqlite:// and fails 2 and 3 on memory://.

  python fetch_check.py BROKERS [N] [TOPIC]
(use the peer's virtualenv: ~/.cache/ehac/peer-venv/bin/python, made by `ehac bench surge`)
"""
import collections
import random
import sys

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

PARTITIONS = 12


def main():
    brokers = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 120_000
    topic = sys.argv[3] if len(sys.argv) > 3 else f"fetch-check-{random.randrange(1 << 30)}"
    admin = AdminClient({"bootstrap.servers": brokers})  # kept alive until the topic exists
    for future in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).values():
        future.result()

    producer = Producer({"bootstrap.servers": brokers, "enable.idempotence": True, "acks": "all", "linger.ms": 5})
    acked = collections.Counter()

    def delivered(err, msg):
        if err is None:
            acked[msg.partition()] += 1

    for i in range(n):
        while True:
            try:
                producer.produce(topic, key=f"k{i}".encode(), value=b"x" * 550, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.01)
    producer.flush(60)
    failures = []
    if sum(acked.values()) != n:
        failures.append(f"acknowledged {sum(acked.values())} of {n}")

    consumer = Consumer({"bootstrap.servers": brokers, "group.id": "fetch-check", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    offsets = collections.defaultdict(list)
    keys = set()
    idle = 0
    while idle < 20:
        m = consumer.poll(0.5)
        if m is None:
            idle += 1
            continue
        if m.error():
            continue
        idle = 0
        offsets[m.partition()].append(m.offset())
        keys.add(m.key())
    holes = sum(1 for o in offsets.values() for a, b in zip(o, o[1:]) if b != a + 1)
    print(f"1. read from 0: {len(keys)} distinct of {n}, {holes} non-consecutive steps")
    if len(keys) != n or holes:
        failures.append("read from 0 incomplete")

    wrong = 0
    for _ in range(40):
        p = random.randrange(PARTITIONS)
        asked = random.randrange(0, max(1, acked[p] - 1))
        consumer.assign([TopicPartition(topic, p, asked)])
        got = None
        for _ in range(20):
            m = consumer.poll(0.5)
            if m is not None and not m.error():
                got = m.offset()
                break
        if got != asked:
            wrong += 1
            print(f"   partition {p}: asked offset {asked}, first record at {got}")
    print(f"2. fetch from inside the log: {40 - wrong} of 40 exact")
    if wrong:
        failures.append(f"{wrong} of 40 fetches did not start where asked")

    ends = [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in range(PARTITIONS)]
    total = sum(high - low for low, high in ends)
    print(f"3. ListOffsets: {total} records in the watermarks, {sum(acked.values())} acknowledged")
    if total != sum(acked.values()):
        failures.append("watermarks disagree with acknowledgements")

    consumer.close()
    print("FAIL: " + "; ".join(failures) if failures else "OK")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
