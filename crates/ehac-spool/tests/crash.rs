//! A real crash: a child process appends from several tasks and prints each record once its
//! append returned (is durable); the parent kills it with SIGKILL at a random point, reopens
//! the spool and checks that every reported record is there, in order, intact. Several rounds
//! on one spool, acknowledging part of it between rounds, so recovery also meets the cursor,
//! rolled segments and deleted ones.
//!
//! The child is this test binary run again with an environment variable set.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use ehac_spool::{Record, Spool, SpoolConfig};

const DIR_ENV: &str = "EHAC_SPOOL_CRASH_CHILD_DIR";
const ROUND_ENV: &str = "EHAC_SPOOL_CRASH_CHILD_ROUND";
const WRITERS: u32 = 4;
const ROUNDS: u32 = 5;
/// Small segments, so that a kill often lands near a segment roll.
const CONFIG: SpoolConfig = SpoolConfig { max_bytes: 1 << 30, segment_bytes: 8 << 10 };

fn record(round: u32, writer: u32, n: u32) -> Record {
    let key = format!("{round}:{writer}:{n}").into_bytes();
    let len = 1 + (round as usize * 31 + writer as usize * 7919 + n as usize * 104_729) % 2_000;
    let payload = (0..len).map(|i| (i as u32).wrapping_mul(131).wrapping_add(n ^ writer ^ round) as u8).collect();
    Record { key, payload }
}

fn parse_key(key: &[u8]) -> (u32, u32, u32) {
    let mut parts = std::str::from_utf8(key).unwrap().split(':').map(|p| p.parse().unwrap());
    (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap())
}

fn random_below(bound: u64) -> u64 {
    RandomState::new().build_hasher().finish() % bound
}

#[test]
#[ignore = "the child of every_record_reported_durable_survives_sigkill, which starts it"]
fn crash_child() {
    // Run on its own (e.g. `--ignored`) it has nothing to check: fail rather than pass.
    let (Ok(dir), Ok(round)) = (std::env::var(DIR_ENV), std::env::var(ROUND_ENV)) else {
        panic!("crash_child is started by every_record_reported_durable_survives_sigkill with {DIR_ENV} and {ROUND_ENV} set; it is not a test on its own")
    };
    let round: u32 = round.parse().unwrap();
    let spool = Spool::open(&dir, CONFIG).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    runtime.block_on(async {
        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let spool = spool.clone();
                tokio::spawn(async move {
                    for n in 0.. {
                        let r = record(round, writer, n);
                        spool.append(&r.key, &r.payload).await.unwrap();
                        println!("durable {writer} {n}");
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap();
        }
    });
}

#[test]
fn every_record_reported_durable_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    // The undrained records as of the last check, oldest first.
    let mut undrained: Vec<Record> = Vec::new();
    let mut next_seq = 0u64;
    for round in 0..ROUNDS {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["crash_child", "--exact", "--ignored", "--nocapture", "--test-threads", "1"])
            .env(DIR_ENV, dir.path())
            .env(ROUND_ENV, round.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let kill_after = 50 + random_below(1_500);
        let mut reported = [0u32; WRITERS as usize];
        let mut lines = 0u64;
        let mut killed = false;
        // Read to the end: lines printed between the kill decision and the kill count too.
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            // The harness prints "test crash_child ... " without a newline before the first.
            let Some((_, rest)) = line.split_once("durable ") else { continue };
            let (writer, n) = rest.split_once(' ').unwrap();
            let (writer, n): (usize, u32) = (writer.parse().unwrap(), n.parse().unwrap());
            assert_eq!(n, reported[writer], "child reported out of order");
            reported[writer] += 1;
            lines += 1;
            if lines >= kill_after && !killed {
                child.kill().unwrap();
                killed = true;
            }
        }
        let status = child.wait().unwrap();
        assert!(killed, "child exited by itself: {status}");

        let spool = Spool::open(dir.path(), CONFIG).unwrap();
        let found = spool.peek_batch(usize::MAX).unwrap();
        let seqs: Vec<u64> = found.iter().map(|(p, _)| p.seq()).collect();
        assert_eq!(seqs, (next_seq..next_seq + found.len() as u64).collect::<Vec<_>>(), "round {round}: sequence numbers not contiguous");
        let records: Vec<Record> = found.iter().map(|(_, r)| r.clone()).collect();
        assert!(records.len() >= undrained.len());
        assert!(records[..undrained.len()] == undrained[..], "round {round}: records from earlier rounds changed or went missing");

        let mut present = [0u32; WRITERS as usize];
        for r in &records[undrained.len()..] {
            let (r_round, writer, n) = parse_key(&r.key);
            assert_eq!(r_round, round);
            assert_eq!(r, &record(round, writer, n), "corrupt record returned");
            assert_eq!(n, present[writer as usize], "round {round}: writer {writer} has a gap or is out of order");
            present[writer as usize] += 1;
        }
        for writer in 0..WRITERS as usize {
            // Every reported record is there; at most the one append in flight beyond them.
            assert!(
                present[writer] == reported[writer] || present[writer] == reported[writer] + 1,
                "round {round}, writer {writer}: {} reported durable, {} found",
                reported[writer],
                present[writer]
            );
        }
        eprintln!("round {round}: killed after {lines} reported appends; {} records in the spool", records.len());

        // Drain a random part, as the drain task would have, before the next crash.
        let drain = random_below(found.len() as u64 + 1) as usize;
        if drain > 0 {
            spool.acknowledge(found[drain - 1].0).unwrap();
        }
        next_seq += drain as u64;
        undrained = records[drain..].to_vec();
        assert_eq!(spool.depth().records, undrained.len() as u64);
    }
}
