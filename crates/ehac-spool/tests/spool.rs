//! The spool's contract as the gateway and its drain task see it: order, restarts, torn
//! tails, the bound, segment reclamation and group commit.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use ehac_spool::{Record, Spool, SpoolConfig, SpoolError, SpoolPosition};

/// Frame overhead: magic, length, CRC, key length.
const OVERHEAD: u64 = 1 + 4 + 4 + 4;

/// A record whose payload can be checked from its key alone.
fn record(writer: u32, n: u32) -> Record {
    let key = format!("{writer}:{n}").into_bytes();
    let len = 1 + (writer as usize * 7919 + n as usize * 104_729) % 2_000;
    let payload = (0..len).map(|i| (i as u32).wrapping_mul(31).wrapping_add(n ^ writer) as u8).collect();
    Record { key, payload }
}

fn parse_key(record: &Record) -> (u32, u32) {
    let key = std::str::from_utf8(&record.key).unwrap();
    let (writer, n) = key.split_once(':').unwrap();
    (writer.parse().unwrap(), n.parse().unwrap())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn append_all(spool: &Spool, records: &[Record]) {
    runtime().block_on(async {
        for record in records {
            spool.append(&record.key, &record.payload).await.unwrap();
        }
    });
}

/// Peeks and acknowledges everything, `batch` records at a time.
fn drain_all(spool: &Spool, batch: usize) -> Vec<(SpoolPosition, Record)> {
    let mut drained = Vec::new();
    loop {
        let peeked = spool.peek_batch(batch).unwrap();
        let Some((last, _)) = peeked.last() else { return drained };
        spool.acknowledge(*last).unwrap();
        drained.extend(peeked);
    }
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "seg")).collect();
    files.sort();
    files
}

#[test]
fn records_come_back_in_order_across_batches_and_peeks_repeat_until_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), SpoolConfig::default()).unwrap();
    let mut records: Vec<Record> = (0..200).map(|n| record(1, n)).collect();
    records.push(Record { key: vec![], payload: vec![] });
    records.push(Record { key: b"big".to_vec(), payload: vec![0xAB; 64 << 10] });
    append_all(&spool, &records);

    let first = spool.peek_batch(7).unwrap();
    assert_eq!(first.len(), 7);
    assert_eq!(spool.peek_batch(7).unwrap(), first, "a peek without acknowledge must return the same records");

    let drained = drain_all(&spool, 30);
    let seqs: Vec<u64> = drained.iter().map(|(p, _)| p.seq()).collect();
    assert_eq!(seqs, (0..records.len() as u64).collect::<Vec<_>>());
    assert_eq!(drained.into_iter().map(|(_, r)| r).collect::<Vec<_>>(), records);
    assert_eq!(spool.depth().records, 0);
    assert_eq!(spool.depth().bytes, 0);
}

#[test]
fn reopen_keeps_undrained_records_and_the_drain_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<Record> = (0..10).map(|n| record(2, n)).collect();
    let expected_bytes: u64 = records[4..].iter().map(|r| OVERHEAD + (r.key.len() + r.payload.len()) as u64).sum();
    {
        let spool = Spool::open(dir.path(), SpoolConfig::default()).unwrap();
        append_all(&spool, &records);
        let peeked = spool.peek_batch(4).unwrap();
        spool.acknowledge(peeked[3].0).unwrap();
    }
    let spool = Spool::open(dir.path(), SpoolConfig::default()).unwrap();
    let depth = spool.depth();
    assert_eq!((depth.records, depth.bytes), (6, expected_bytes));
    let rest = spool.peek_batch(100).unwrap();
    assert_eq!(rest.iter().map(|(p, _)| p.seq()).collect::<Vec<_>>(), (4..10).collect::<Vec<_>>());
    assert_eq!(rest.into_iter().map(|(_, r)| r).collect::<Vec<_>>(), records[4..]);

    // Sequence numbers go on after a restart.
    append_all(&spool, &[record(2, 10)]);
    let all = spool.peek_batch(100).unwrap();
    assert_eq!(all.last().unwrap().0.seq(), 10);
}

/// Five records, then the spool is closed and `damage` is done to its last segment.
fn reopen_after(damage: impl FnOnce(&Path, &[u8])) -> (Spool, tempfile::TempDir, Vec<Record>) {
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<Record> = (0..5).map(|n| record(3, n)).collect();
    {
        let spool = Spool::open(dir.path(), SpoolConfig::default()).unwrap();
        append_all(&spool, &records);
    }
    let segment = segment_files(dir.path()).pop().unwrap();
    let intact = fs::read(&segment).unwrap();
    damage(&segment, &intact);
    let spool = Spool::open(dir.path(), SpoolConfig::default()).unwrap();
    (spool, dir, records)
}

fn append_bytes(path: &Path, bytes: &[u8]) {
    OpenOptions::new().append(true).open(path).unwrap().write_all(bytes).unwrap();
}

/// After recovery: the expected records, the file cut back to them, and new appends readable
/// after them (an uncut tail would hide every later record).
fn assert_recovered(spool: &Spool, dir: &Path, expected: &[Record], expected_len: usize) {
    let segment = segment_files(dir).pop().unwrap();
    assert_eq!(fs::metadata(&segment).unwrap().len(), expected_len as u64, "torn tail not cut off");
    let got: Vec<Record> = spool.peek_batch(100).unwrap().into_iter().map(|(_, r)| r).collect();
    assert_eq!(got, expected);
    append_all(spool, &[record(3, 99)]);
    let got: Vec<Record> = spool.peek_batch(100).unwrap().into_iter().map(|(_, r)| r).collect();
    assert_eq!(got.len(), expected.len() + 1);
    assert_eq!(got.last().unwrap(), &record(3, 99));
}

#[test]
fn garbage_after_the_last_record_is_cut_off() {
    let (spool, dir, records) = reopen_after(|segment, _| append_bytes(segment, b"\x13\x37 not a frame at all"));
    let len: usize = records.iter().map(|r| (OVERHEAD as usize) + r.key.len() + r.payload.len()).sum();
    assert_recovered(&spool, dir.path(), &records, len);
}

#[test]
fn zeroes_after_the_last_record_are_cut_off() {
    // What a file system may show after a crash: the length grew, the data never arrived.
    let (spool, dir, records) = reopen_after(|segment, _| append_bytes(segment, &[0; 4096]));
    let len: usize = records.iter().map(|r| (OVERHEAD as usize) + r.key.len() + r.payload.len()).sum();
    assert_recovered(&spool, dir.path(), &records, len);
}

#[test]
fn half_a_record_at_the_tail_is_cut_off() {
    let (spool, dir, records) = reopen_after(|segment, intact| {
        // The first half of a copy of the first frame: a valid header with a short body.
        let first_frame = OVERHEAD as usize + records_len(0);
        append_bytes(segment, &intact[..first_frame / 2]);
    });
    let len: usize = records.iter().map(|r| (OVERHEAD as usize) + r.key.len() + r.payload.len()).sum();
    assert_recovered(&spool, dir.path(), &records, len);
}

fn records_len(n: u32) -> usize {
    let r = record(3, n);
    r.key.len() + r.payload.len()
}

#[test]
fn a_last_record_with_a_bad_crc_is_dropped_and_those_before_it_survive() {
    let (spool, dir, records) = reopen_after(|segment, intact| {
        let mut bytes = intact.to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xFF;
        fs::write(segment, bytes).unwrap();
    });
    let len: usize = records[..4].iter().map(|r| (OVERHEAD as usize) + r.key.len() + r.payload.len()).sum();
    assert_recovered(&spool, dir.path(), &records[..4], len);
}

#[test]
fn full_when_the_bound_is_reached_and_room_again_after_draining() {
    let dir = tempfile::tempdir().unwrap();
    let frame = OVERHEAD + 4 + 500;
    let spool = Spool::open(dir.path(), SpoolConfig { max_bytes: 10 * frame, segment_bytes: 3 * frame }).unwrap();
    let rt = runtime();
    let append = |n: u32| rt.block_on(spool.append(&n.to_be_bytes(), &[1; 500]));
    for n in 0..10 {
        append(n).unwrap();
    }
    assert!(matches!(append(10), Err(SpoolError::Full { .. })), "the 11th record must not fit");
    assert_eq!(spool.depth().bytes, 10 * frame);

    let peeked = spool.peek_batch(3).unwrap();
    spool.acknowledge(peeked[2].0).unwrap();
    for n in 10..13 {
        append(n).unwrap();
    }
    assert!(matches!(append(13), Err(SpoolError::Full { .. })));

    let keys: Vec<u32> = drain_all(&spool, 4).into_iter().map(|(_, r)| u32::from_be_bytes(r.key.try_into().unwrap())).collect();
    assert_eq!(keys, (3..13).collect::<Vec<_>>());
    append(13).unwrap();
}

#[test]
fn fully_drained_segments_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let config = SpoolConfig { max_bytes: 1 << 30, segment_bytes: 4_000 };
    let spool = Spool::open(dir.path(), config).unwrap();
    let records: Vec<Record> = (0..60).map(|n| record(4, n)).collect();
    append_all(&spool, &records);
    let before = segment_files(dir.path()).len();
    assert!(before > 5, "expected many segments, got {before}");

    // Half drained: older segments go, the ones holding undrained records stay.
    let peeked = spool.peek_batch(30).unwrap();
    spool.acknowledge(peeked[29].0).unwrap();
    let middle = segment_files(dir.path()).len();
    assert!(middle < before && middle > 1, "{before} segments, then {middle}");

    let drained = drain_all(&spool, 7);
    assert_eq!(drained.len(), 30);
    assert_eq!(segment_files(dir.path()).len(), 1, "only the segment being appended to stays");
    drop(spool);

    let spool = Spool::open(dir.path(), config).unwrap();
    assert_eq!(spool.depth().records, 0);
    append_all(&spool, &[record(4, 60)]);
    assert_eq!(spool.peek_batch(10).unwrap()[0].0.seq(), 60);
}

#[test]
fn concurrent_appenders_share_fsyncs_and_keep_each_appenders_order() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), SpoolConfig::default()).unwrap();
    let (writers, each) = (64u32, 50u32);
    runtime().block_on(async {
        let tasks: Vec<_> = (0..writers)
            .map(|w| {
                let spool = spool.clone();
                tokio::spawn(async move {
                    for n in 0..each {
                        let r = record(w, n);
                        spool.append(&r.key, &r.payload).await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    let stats = spool.stats();
    assert_eq!(stats.appends, (writers * each) as u64);
    // With 64 appenders waiting at once, batches hold dozens of records (the unit test pins
    // the mechanism exactly); one fsync per two appends means group commit is not happening.
    assert!(2 * stats.fsyncs <= stats.appends, "no group commit: {} fsyncs for {} appends", stats.fsyncs, stats.appends);

    let mut next: HashMap<u32, u32> = HashMap::new();
    for (_, r) in drain_all(&spool, 500) {
        let (w, n) = parse_key(&r);
        assert_eq!(r, record(w, n));
        let expected = next.entry(w).or_default();
        assert_eq!(n, *expected, "writer {w} out of order");
        *expected += 1;
    }
    assert_eq!(next.len(), writers as usize);
    assert!(next.values().all(|&n| n == each));
}

#[test]
fn the_drain_sees_records_appended_while_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), SpoolConfig { max_bytes: 1 << 30, segment_bytes: 16 << 10 }).unwrap();
    let (writers, each) = (8u32, 200u32);
    let total = (writers * each) as usize;
    let drained = runtime().block_on(async {
        let drain = {
            let spool = spool.clone();
            tokio::spawn(async move {
                let mut drained = Vec::new();
                while drained.len() < total {
                    spool.wait_for_records().await;
                    let spool = spool.clone();
                    let batch = tokio::task::spawn_blocking(move || {
                        let batch = spool.peek_batch(64).unwrap();
                        spool.acknowledge(batch.last().unwrap().0).unwrap();
                        batch
                    });
                    drained.extend(batch.await.unwrap());
                }
                drained
            })
        };
        for w in 0..writers {
            let spool = spool.clone();
            tokio::spawn(async move {
                for n in 0..each {
                    let r = record(w, n);
                    spool.append(&r.key, &r.payload).await.unwrap();
                }
            });
        }
        drain.await.unwrap()
    });
    assert_eq!(drained.len(), total);
    let seqs: Vec<u64> = drained.iter().map(|(p, _)| p.seq()).collect();
    assert_eq!(seqs, (0..total as u64).collect::<Vec<_>>(), "the drain skipped or repeated records");
    let mut next: HashMap<u32, u32> = HashMap::new();
    for (_, r) in &drained {
        let (w, n) = parse_key(r);
        assert_eq!(n, *next.get(&w).unwrap_or(&0));
        next.insert(w, n + 1);
    }
    assert_eq!(spool.depth().records, 0);
}

#[test]
fn a_second_open_of_the_same_directory_is_refused_until_the_first_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), SpoolConfig::default()).unwrap();
    let clone = spool.clone();
    assert!(matches!(Spool::open(dir.path(), SpoolConfig::default()), Err(SpoolError::Locked { .. })));
    drop(spool);
    assert!(matches!(Spool::open(dir.path(), SpoolConfig::default()), Err(SpoolError::Locked { .. })), "a clone still holds it");
    drop(clone);
    Spool::open(dir.path(), SpoolConfig::default()).unwrap();
}

#[test]
fn oversized_records_and_foreign_positions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), SpoolConfig::default()).unwrap();
    let rt = runtime();
    let too_big = vec![0; ehac_spool::MAX_RECORD_BYTES + 1];
    assert!(matches!(rt.block_on(spool.append(b"k", &too_big)), Err(SpoolError::RecordTooLarge { .. })));

    let other_dir = tempfile::tempdir().unwrap();
    let other = Spool::open(other_dir.path(), SpoolConfig::default()).unwrap();
    append_all(&other, &(0..5).map(|n| record(5, n)).collect::<Vec<_>>());
    append_all(&spool, &[record(5, 0)]);
    let foreign = other.peek_batch(5).unwrap()[4].0;
    assert!(matches!(spool.acknowledge(foreign), Err(SpoolError::UnknownPosition { seq: 4 })));
    assert_eq!(spool.depth().records, 1);
}
