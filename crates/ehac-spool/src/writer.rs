//! The one thread that writes segments: group commit. It takes every append waiting in the
//! channel, writes their frames with one positioned write, makes them durable with one
//! fdatasync, and only then answers each appender. Appenders that arrive during an fsync
//! wait in the channel and share the next one, so fsyncs per append fall as concurrency rises.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::mpsc;
use std::sync::Arc;

use tokio::sync::oneshot;

use crate::format::{self, Cursor};
use crate::{lock, Shared, SpoolError};

/// A batch stops growing at this many bytes, so one huge backlog is not one huge write.
const MAX_BATCH_BYTES: usize = 8 << 20;

/// One append waiting to be made durable: the frames of one record, or of a batch that is
/// written and fsynced as one.
pub(crate) struct Append {
    pub frames: Vec<u8>,
    /// Records in `frames`.
    pub records: u64,
    pub done: oneshot::Sender<Result<(), SpoolError>>,
}

/// The segment being appended to: always the last one.
pub(crate) struct Writer {
    pub shared: Arc<Shared>,
    pub file: File,
    pub base: u64,
    /// Durable length of the file: everything before it was fsynced.
    pub len: u64,
    /// Sequence number of the next record appended.
    pub next_seq: u64,
}

impl Writer {
    /// Runs until every [`crate::Spool`] handle is gone and the channel is empty.
    pub fn run(mut self, requests: mpsc::Receiver<Append>) {
        let mut batch = Vec::new();
        let mut buf = Vec::new();
        while let Ok(first) = requests.recv() {
            #[cfg(test)]
            let gate = lock(&self.shared.test_gate);
            let mut bytes = first.frames.len();
            batch.push(first);
            while bytes < MAX_BATCH_BYTES {
                match requests.try_recv() {
                    Ok(append) => {
                        bytes += append.frames.len();
                        batch.push(append);
                    }
                    Err(_) => break,
                }
            }
            #[cfg(test)]
            drop(gate);
            self.commit(&mut batch, &mut buf);
            batch.clear();
        }
    }

    fn commit(&mut self, batch: &mut Vec<Append>, buf: &mut Vec<u8>) {
        buf.clear();
        for append in batch.iter() {
            buf.extend_from_slice(&append.frames);
        }
        let bytes = buf.len() as u64;
        let poisoned = lock(&self.shared.state).failed.clone();
        if let Some(reason) = poisoned {
            self.release(bytes, None);
            return answer(batch, || Err(SpoolError::WriterFailed(reason.clone())));
        }
        if self.len > 0 && self.len >= self.shared.config.segment_bytes {
            if let Err(error) = self.roll() {
                self.release(bytes, None);
                let context = format!("starting segment {} in {}", self.next_seq, self.shared.dir.display());
                return answer(batch, || Err(io_copy(&context, &error)));
            }
        }
        match self.file.write_all_at(buf, self.len).and_then(|()| self.file.sync_data()) {
            Ok(()) => {
                let records: u64 = batch.iter().map(|append| append.records).sum();
                self.len += bytes;
                self.next_seq += records;
                {
                    let mut state = lock(&self.shared.state);
                    state.segments.insert(self.base, self.len);
                    state.durable = Cursor { segment: self.base, offset: self.len, seq: self.next_seq };
                    state.depth_bytes += bytes;
                    state.reserved_bytes -= bytes;
                    state.stats.appends += records;
                    state.stats.fsyncs += 1;
                    state.stats.bytes += bytes;
                }
                self.shared.appended.send_replace(self.next_seq);
                answer(batch, || Ok(()));
            }
            Err(error) => {
                // Part of the batch may be on disk. Cut it off: a torn frame left in the
                // middle of the log would make recovery drop every later, acknowledged record.
                let rollback = self.file.set_len(self.len).and_then(|()| self.file.sync_all());
                let segment = format::segment_path(&self.shared.dir, self.base);
                tracing::error!(segment = %segment.display(), %error, "spool append failed");
                let failed = rollback
                    .err()
                    .map(|rollback| format!("could not cut a failed write off {}: {rollback} (after: {error})", segment.display()));
                self.release(bytes, failed);
                let records: u64 = batch.iter().map(|append| append.records).sum();
                let context = format!("appending {records} records to {}", segment.display());
                answer(batch, || Err(io_copy(&context, &error)));
            }
        }
    }

    /// Gives back the room reserved for records that were not written; `failed` stops the
    /// writer for good.
    fn release(&self, bytes: u64, failed: Option<String>) {
        let mut state = lock(&self.shared.state);
        state.reserved_bytes -= bytes;
        if let Some(reason) = failed {
            tracing::error!(%reason, "spool writer stopped: reopen the spool");
            state.failed.get_or_insert(reason);
        }
    }

    /// Starts the next segment. The previous one is already fsynced, and its name plus this
    /// one's tell recovery how many records it holds, so it is never scanned again.
    fn roll(&mut self) -> io::Result<()> {
        let base = self.next_seq;
        let path = format::segment_path(&self.shared.dir, base);
        let created = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path);
        let file = match created.and_then(|file| format::sync_dir(&self.shared.dir).map(|()| file)) {
            Ok(file) => file,
            Err(error) => {
                // A leftover empty segment named after `next_seq` would count as the last one
                // on reopen while records went on into this one.
                let _ = fs::remove_file(&path);
                return Err(error);
            }
        };
        lock(&self.shared.state).segments.insert(base, 0);
        self.file = file;
        self.base = base;
        self.len = 0;
        Ok(())
    }
}

fn answer(batch: &mut Vec<Append>, outcome: impl Fn() -> Result<(), SpoolError>) {
    for append in batch.drain(..) {
        // The appender may have stopped waiting (its request was cancelled): nothing to tell.
        let _ = append.done.send(outcome());
    }
}

/// Every appender of a failed batch gets its own copy of the error.
fn io_copy(context: &str, error: &io::Error) -> SpoolError {
    SpoolError::Io { context: context.to_owned(), source: io::Error::new(error.kind(), error.to_string()) }
}
