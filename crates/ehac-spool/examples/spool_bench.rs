//! Appends per second with N concurrent appenders, each awaiting its append before the next
//! (as gateway handlers do), on a fresh spool. A rough figure, not a benchmark suite:
//!
//! ```text
//! cargo run --release -p ehac-spool --example spool_bench -- [appenders] [total appends] [payload bytes] [dir]
//! ```
//!
//! `dir` is where the temporary spool goes (default: the system temp dir); put it on the disk
//! the gateway will use, since the figure is mostly fsync latency.

use std::time::Instant;

use ehac_spool::{Spool, SpoolConfig};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: u64| args.get(i).map_or(default, |a| a.parse().expect("a number"));
    let appenders = arg(0, 64);
    let total = arg(1, 20_000);
    let payload_bytes = arg(2, 500) as usize;
    let parent = args.get(3).map_or_else(std::env::temp_dir, Into::into);
    let dir = tempfile::tempdir_in(parent).unwrap();
    let spool = Spool::open(dir.path(), SpoolConfig::default()).unwrap();
    let each = total / appenders;

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    let started = Instant::now();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..appenders)
            .map(|a| {
                let spool = spool.clone();
                tokio::spawn(async move {
                    let payload = vec![b'x'; payload_bytes];
                    for n in 0..each {
                        let key = format!("{a:08}-{n:08}");
                        spool.append(key.as_bytes(), &payload).await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let stats = spool.stats();
    println!(
        "{appenders} appenders, {} appends of {payload_bytes}-byte payloads in {elapsed:.2} s: {:.0} appends/s, {:.1} MB/s, {:.3} fsyncs per append ({} fsyncs) in {}",
        stats.appends,
        stats.appends as f64 / elapsed,
        stats.bytes as f64 / elapsed / 1e6,
        stats.fsyncs as f64 / stats.appends as f64,
        stats.fsyncs,
        dir.path().display(),
    );
}
