//! A durable local spool for declarations the gateway could not hand to Kafka.
//!
//! When the broker is unreachable or a produce passes its deadline, the gateway appends the
//! declaration here and still answers 202; a drain task sends the spool to Kafka, oldest first,
//! once the broker is back. The gateway answers 503 only when the spool is [`SpoolError::Full`].
//! (In December 2020 the e-HAC server went down at Soekarno-Hatta and passengers filled in paper
//! forms again: a broker outage must not become a traveller's problem.)
//!
//! # Files
//!
//! A spool is a directory holding:
//! - `{seq:020}.seg` segments, named by the sequence number of their first record. A segment is
//!   a run of frames: `magic 0xE1 | body length u32 LE | CRC32 u32 LE | body`, where the body
//!   is `key length u32 LE | key | payload` and the CRC covers magic, length and body.
//! - `drained.cursor`: where draining resumes (segment, byte offset, sequence number), with
//!   its own magic and CRC, replaced by write-temp, fsync, rename, fsync of the directory.
//! - `LOCK`: held with `flock` while a process has the spool open.
//!
//! # Durability
//!
//! [`Spool::append`] resolves `Ok` only after the record's frame was written and `fdatasync`ed,
//! and records are written in order, each batch starting where the last durable one ended. So
//! every acknowledged record lies before the end of the last successful fsync, and everything
//! before that point is intact on disk. A crash (kill -9, power loss) can only tear bytes
//! after it: the frames of a batch whose fsync had not returned, which no appender was told
//! about. On open the last segment is scanned and cut at the first frame that is short, has no
//! magic or fails its CRC; that point is at or after the last durable end, so the cut loses
//! nothing acknowledged and returns nothing corrupt. Earlier segments were fsynced before the
//! next one was created, so they are whole. A failed write or fsync is cut off before the
//! next batch, or the spool stops accepting appends ([`SpoolError::WriterFailed`]).
//!
//! Draining is at least once: the cursor is persisted by [`Spool::acknowledge`] after Kafka
//! acknowledged the records, so a crash between the two resends a few records (the pipeline
//! deduplicates by declaration id) but never skips one.
//!
//! # Group commit
//!
//! One writer thread owns the last segment. Appenders hand it framed records through a channel;
//! it takes all that are waiting, writes them at once, fsyncs once and wakes them all. Under
//! load, fsyncs per append fall well below one ([`SpoolStats::fsyncs`]). [`Spool::append_batch`]
//! hands over many records as one unit, which is never split: one write, one fsync.

mod format;
mod writer;

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io;
use std::ops::Bound;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use tokio::sync::{oneshot, watch};

pub use format::{decode_frame, encode_frame, MAX_RECORD_BYTES};
use format::{Cursor, FrameError};
use writer::{Append, Writer};

/// How large a spool may grow and how it is cut into files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolConfig {
    /// Bound on the frame bytes of records not yet drained, including appends in flight. An
    /// append that would pass it fails with [`SpoolError::Full`]. Disk use can exceed it by
    /// the drained part of the oldest segment (less than one segment).
    pub max_bytes: u64,
    /// A segment is closed once it holds this many bytes; the next batch starts a new one.
    /// Drained space comes back a whole segment at a time.
    pub segment_bytes: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig { max_bytes: 1 << 30, segment_bytes: 64 << 20 }
    }
}

/// One spooled declaration: opaque bytes to the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
}

/// Where a record sits in the spool, handed out by [`Spool::peek_batch`] and given back to
/// [`Spool::acknowledge`]. Positions order like the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpoolPosition {
    seq: u64,
    segment: u64,
    /// Byte offset just past the record's frame in its segment.
    end: u64,
}

impl SpoolPosition {
    /// The record's sequence number: 0 for the first record ever appended, then one more for
    /// each record, across restarts.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

/// What is waiting to be drained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpoolDepth {
    pub records: u64,
    /// Frame bytes on disk (header included) of those records.
    pub bytes: u64,
}

/// Counters since the spool was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpoolStats {
    /// Records made durable (a batch counts its records).
    pub appends: u64,
    /// fdatasync calls that made appends durable: one per group commit.
    pub fsyncs: u64,
    /// Frame bytes made durable.
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error(
        "spool is full: {waiting_bytes} bytes wait to be drained and a {record_bytes}-byte record would pass the bound of {max_bytes}"
    )]
    /// `record_bytes`: the frame bytes of the record, or of the whole batch, refused.
    Full { max_bytes: u64, waiting_bytes: u64, record_bytes: u64 },
    #[error("record of {size} bytes is larger than the spool's limit of {MAX_RECORD_BYTES}")]
    RecordTooLarge { size: usize },
    #[error("spool {} is open in another process or handle", dir.display())]
    Locked { dir: PathBuf },
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
    #[error("corrupt record in {} at byte {offset}: {reason}", segment.display())]
    Corrupt { segment: PathBuf, offset: u64, reason: &'static str },
    #[error("position {seq} is not a record of this spool that could be acknowledged")]
    UnknownPosition { seq: u64 },
    #[error("spool no longer accepts appends: {0}")]
    WriterFailed(String),
}

fn io_error(context: impl FnOnce() -> String) -> impl FnOnce(io::Error) -> SpoolError {
    move |source| SpoolError::Io { context: context(), source }
}

/// A durable, bounded, ordered spool of records in one directory. Cheap to clone: clones
/// share one writer thread. Appends may come from any number of tasks; [`Spool::peek_batch`]
/// and [`Spool::acknowledge`] are meant for one drain task. The directory is released when
/// the last clone is dropped, after the appends already submitted are written.
#[derive(Clone)]
pub struct Spool {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    /// `None` only while dropping: closing the channel is what stops the writer.
    requests: Option<mpsc::Sender<Append>>,
    writer: Option<JoinHandle<()>>,
    drain: Mutex<DrainState>,
    _lock: File,
}

/// What the writer thread and the handles share.
pub(crate) struct Shared {
    dir: PathBuf,
    config: SpoolConfig,
    state: Mutex<State>,
    /// The sequence number after the last durable record; wakes [`Spool::wait_for_records`].
    appended: watch::Sender<u64>,
    /// Held by a test to make the writer wait before it gathers a batch.
    #[cfg(test)]
    test_gate: Mutex<()>,
}

pub(crate) struct State {
    /// First sequence number of each segment on disk -> its durable length.
    segments: BTreeMap<u64, u64>,
    /// End of the durable log.
    durable: Cursor,
    /// Where draining resumes; persisted in `drained.cursor`.
    drained: Cursor,
    /// Frame bytes between `drained` and `durable`.
    depth_bytes: u64,
    /// Frame bytes of appends accepted but not yet durable: counted against the bound.
    reserved_bytes: u64,
    stats: SpoolStats,
    /// Set when a failed write could not be cut off: appends are refused from then on.
    failed: Option<String>,
}

#[derive(Default)]
struct DrainState {
    /// The segment last read, kept open between batches.
    open: Option<(u64, File)>,
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the state consistent, so a panic elsewhere poisons nothing.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Spool {
    /// Opens the spool in `dir`, creating it if needed, and recovers it: cuts a torn tail off
    /// the last segment, loads the drain cursor and removes segments already drained.
    pub fn open(dir: impl AsRef<Path>, config: SpoolConfig) -> Result<Spool, SpoolError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(io_error(|| format!("creating spool directory {}", dir.display())))?;
        let lock_file = take_lock(&dir)?;
        let _ = fs::remove_file(format::cursor_temp_path(&dir));

        let stored_cursor = read_cursor(&dir)?;
        let mut segments = list_segments(&dir)?;
        if segments.is_empty() {
            // Keep sequence numbers going up across a spool that was drained empty.
            let base = stored_cursor.map_or(0, |cursor| cursor.seq);
            create_segment(&dir, base)?;
            segments.insert(base, 0);
        }
        let (&last_base, _) = segments.last_key_value().unwrap();
        let (last_file, last_len, last_count) = recover_last_segment(&dir, last_base)?;
        segments.insert(last_base, last_len);
        let durable = Cursor { segment: last_base, offset: last_len, seq: last_base + last_count };

        let drained = normalize(resume_point(stored_cursor, &segments, durable), &segments);
        let doomed: Vec<u64> = segments.range(..drained.segment).map(|(&base, _)| base).collect();
        for base in &doomed {
            segments.remove(base);
        }
        remove_segments(&dir, &doomed);
        let depth_bytes = bytes_between(drained, durable, &segments);
        tracing::info!(
            dir = %dir.display(),
            records = durable.seq - drained.seq,
            bytes = depth_bytes,
            segments = segments.len(),
            "spool opened"
        );

        let (appended, _) = watch::channel(durable.seq);
        let shared = Arc::new(Shared {
            dir: dir.clone(),
            config,
            state: Mutex::new(State {
                segments,
                durable,
                drained,
                depth_bytes,
                reserved_bytes: 0,
                stats: SpoolStats::default(),
                failed: None,
            }),
            appended,
            #[cfg(test)]
            test_gate: Mutex::new(()),
        });
        let writer = Writer { shared: shared.clone(), file: last_file, base: last_base, len: last_len, next_seq: durable.seq };
        let (requests, receiver) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("ehac-spool-writer".into())
            .spawn(move || writer.run(receiver))
            .map_err(io_error(|| "starting the spool writer thread".into()))?;
        Ok(Spool {
            inner: Arc::new(Inner {
                shared,
                requests: Some(requests),
                writer: Some(writer),
                drain: Mutex::new(DrainState::default()),
                _lock: lock_file,
            }),
        })
    }

    /// Appends one record. The bound is checked and the record framed now; the returned
    /// future resolves once the record is durable (fsynced), sharing that fsync with the
    /// appends that were waiting at the same time. Dropping the future does not withdraw the
    /// record.
    pub fn append(&self, key: &[u8], payload: &[u8]) -> impl Future<Output = Result<(), SpoolError>> + Send + 'static {
        self.append_batch(&[(key, payload)])
    }

    /// Appends several records as one unit: they are written with one write and made durable
    /// by one fsync (shared with other appends waiting then), in the order given, with nothing
    /// between them; the future resolves once all are durable. All or none: if one is too
    /// large or the batch would pass the bound, none is appended. A gateway's batch request
    /// costs one fsync, not one per declaration. An empty batch resolves at once.
    pub fn append_batch(&self, records: &[(&[u8], &[u8])]) -> impl Future<Output = Result<(), SpoolError>> + Send + use<> {
        let submitted = self.submit(records);
        async move {
            match submitted? {
                None => Ok(()),
                Some(outcome) => match outcome.await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(SpoolError::WriterFailed("the spool writer thread stopped".into())),
                },
            }
        }
    }

    /// Frames the records, reserves their room and hands them to the writer; `None` when there
    /// is nothing to write.
    fn submit(&self, records: &[(&[u8], &[u8])]) -> Result<Option<oneshot::Receiver<Result<(), SpoolError>>>, SpoolError> {
        let mut frames = Vec::new();
        let mut count = 0;
        for &(key, payload) in records {
            let size = key.len() + payload.len();
            if size > MAX_RECORD_BYTES {
                return Err(SpoolError::RecordTooLarge { size });
            }
            format::append_frame(&mut frames, key, payload);
            count += 1;
        }
        if count == 0 {
            return Ok(None);
        }
        let record_bytes = frames.len() as u64;
        {
            let mut state = lock(&self.inner.shared.state);
            if let Some(reason) = &state.failed {
                return Err(SpoolError::WriterFailed(reason.clone()));
            }
            let waiting_bytes = state.depth_bytes + state.reserved_bytes;
            let max_bytes = self.inner.shared.config.max_bytes;
            if waiting_bytes + record_bytes > max_bytes {
                return Err(SpoolError::Full { max_bytes, waiting_bytes, record_bytes });
            }
            state.reserved_bytes += record_bytes;
        }
        let (done, outcome) = oneshot::channel();
        let sent = self.inner.requests.as_ref().map(|requests| requests.send(Append { frames, records: count, done }));
        if !matches!(sent, Some(Ok(()))) {
            lock(&self.inner.shared.state).reserved_bytes -= record_bytes;
            return Err(SpoolError::WriterFailed("the spool writer thread stopped".into()));
        }
        Ok(Some(outcome))
    }

    /// Up to `max` of the oldest records not yet acknowledged, oldest first. Sees every record
    /// made durable before the call; calling again without [`Spool::acknowledge`] returns the
    /// same records. Blocking file reads: from async code, call it in `spawn_blocking`.
    pub fn peek_batch(&self, max: usize) -> Result<Vec<(SpoolPosition, Record)>, SpoolError> {
        let mut drain = lock(&self.inner.drain);
        let (mut at, end, sealed) = {
            let state = lock(&self.inner.shared.state);
            let sealed: Vec<(u64, u64)> = state.segments.range(state.drained.segment..).map(|(&base, &len)| (base, len)).collect();
            (state.drained, state.durable, sealed)
        };
        let segment_len = |base: u64| if base == end.segment { Some(end.offset) } else { sealed.iter().find(|s| s.0 == base).map(|s| s.1) };
        let mut batch = Vec::new();
        while batch.len() < max && at.seq < end.seq {
            let Some(len) = segment_len(at.segment) else { break };
            if at.offset >= len {
                let Some(&(next, _)) = sealed.iter().find(|s| s.0 > at.segment) else {
                    // The segment names (which the depth is counted from) promise records that
                    // are not there: damage. An empty batch would leave the drain task asking
                    // again at once, forever, with a depth that never falls (found by the
                    // spool_dir fuzz target).
                    if batch.is_empty() {
                        let path = format::segment_path(&self.inner.shared.dir, at.segment);
                        return Err(SpoolError::Corrupt {
                            segment: path,
                            offset: at.offset,
                            reason: "fewer records than the segment names count",
                        });
                    }
                    break;
                };
                if next != at.seq {
                    tracing::warn!(segment = next, expected = at.seq, "spool segment name does not follow the previous segment's records");
                }
                // Number on from the name when it is ahead, as the depth does: a gap in the
                // names is then drained past rather than counted as waiting forever.
                at = Cursor { segment: next, offset: 0, seq: at.seq.max(next) };
                continue;
            }
            let path = format::segment_path(&self.inner.shared.dir, at.segment);
            if !matches!(&drain.open, Some((base, _)) if *base == at.segment) {
                let file = File::open(&path).map_err(io_error(|| format!("opening {}", path.display())))?;
                drain.open = Some((at.segment, file));
            }
            let file = &drain.open.as_ref().unwrap().1;
            let (record, next_offset) = format::read_frame_at(file, at.offset, len).map_err(|error| match error {
                FrameError::Invalid(reason) => SpoolError::Corrupt { segment: path.clone(), offset: at.offset, reason },
                FrameError::Io(source) => SpoolError::Io { context: format!("reading {} at byte {}", path.display(), at.offset), source },
            })?;
            batch.push((SpoolPosition { seq: at.seq, segment: at.segment, end: next_offset }, record));
            at = Cursor { segment: at.segment, offset: next_offset, seq: at.seq + 1 };
        }
        Ok(batch)
    }

    /// Marks every record up to and including `upto` as drained: persists the cursor (so a
    /// restart resumes after it), frees their room in the bound and deletes segments that are
    /// now fully drained. Acknowledging an already drained position does nothing. Blocking
    /// (two fsyncs): from async code, call it in `spawn_blocking`.
    pub fn acknowledge(&self, upto: SpoolPosition) -> Result<(), SpoolError> {
        let mut drain = lock(&self.inner.drain);
        let dir = &self.inner.shared.dir;
        let new = {
            let state = lock(&self.inner.shared.state);
            if upto.seq < state.drained.seq {
                return Ok(());
            }
            let known = state.segments.get(&upto.segment).is_some_and(|&len| upto.end <= len);
            if upto.seq >= state.durable.seq || upto.segment < state.drained.segment || !known {
                return Err(SpoolError::UnknownPosition { seq: upto.seq });
            }
            normalize(Cursor { segment: upto.segment, offset: upto.end, seq: upto.seq + 1 }, &state.segments)
        };
        format::write_cursor(dir, new).map_err(io_error(|| format!("persisting the drain cursor in {}", dir.display())))?;
        let doomed: Vec<u64> = {
            let mut state = lock(&self.inner.shared.state);
            let freed = bytes_between(state.drained, new, &state.segments);
            state.depth_bytes -= freed;
            state.drained = new;
            let doomed: Vec<u64> = state.segments.range(..new.segment).map(|(&base, _)| base).collect();
            for base in &doomed {
                state.segments.remove(base);
            }
            doomed
        };
        if drain.open.as_ref().is_some_and(|(base, _)| *base < new.segment) {
            drain.open = None;
        }
        remove_segments(dir, &doomed);
        Ok(())
    }

    /// Resolves once at least one record waits to be drained (at once if one already does).
    pub async fn wait_for_records(&self) {
        let mut appended = self.inner.shared.appended.subscribe();
        loop {
            if self.depth().records > 0 {
                return;
            }
            if appended.changed().await.is_err() {
                return;
            }
        }
    }

    /// Records and bytes waiting to be drained. Cheap: for `/readyz` and gauges.
    pub fn depth(&self) -> SpoolDepth {
        let state = lock(&self.inner.shared.state);
        SpoolDepth { records: state.durable.seq - state.drained.seq, bytes: state.depth_bytes }
    }

    pub fn stats(&self) -> SpoolStats {
        lock(&self.inner.shared.state).stats
    }
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool").field("dir", &self.inner.shared.dir).field("depth", &self.depth()).finish()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Close the channel so the writer finishes what was submitted and stops; the lock
        // file is released only after it, so a reopen never races a still-running writer.
        drop(self.requests.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

fn take_lock(dir: &Path) -> Result<File, SpoolError> {
    let path = dir.join(format::LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_error(|| format!("opening {}", path.display())))?;
    // SAFETY: flock on a file descriptor this function owns; no memory is involved.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let error = io::Error::last_os_error();
        if error.kind() == io::ErrorKind::WouldBlock {
            return Err(SpoolError::Locked { dir: dir.to_path_buf() });
        }
        return Err(SpoolError::Io { context: format!("locking {}", path.display()), source: error });
    }
    Ok(file)
}

fn read_cursor(dir: &Path) -> Result<Option<Cursor>, SpoolError> {
    let path = format::cursor_path(dir);
    match fs::read(&path) {
        Ok(bytes) => {
            let cursor = format::decode_cursor(&bytes);
            if cursor.is_none() {
                // Only written by rename after fsync, so this is damage, not a crash. Draining
                // from the start resends records; skipping any could lose them.
                tracing::warn!(path = %path.display(), "unreadable drain cursor: draining from the oldest record");
            }
            Ok(cursor)
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SpoolError::Io { context: format!("reading {}", path.display()), source }),
    }
}

/// Every segment in `dir` with its length on disk.
fn list_segments(dir: &Path) -> Result<BTreeMap<u64, u64>, SpoolError> {
    let mut segments = BTreeMap::new();
    let entries = fs::read_dir(dir).map_err(io_error(|| format!("listing {}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(io_error(|| format!("listing {}", dir.display())))?;
        let Some(base) = entry.file_name().to_str().and_then(format::parse_segment_name) else { continue };
        let len = entry.metadata().map_err(io_error(|| format!("reading metadata of {}", entry.path().display())))?.len();
        segments.insert(base, len);
    }
    Ok(segments)
}

fn create_segment(dir: &Path, base: u64) -> Result<(), SpoolError> {
    let path = format::segment_path(dir, base);
    File::create(&path).map_err(io_error(|| format!("creating {}", path.display())))?;
    format::sync_dir(dir).map_err(io_error(|| format!("syncing directory {}", dir.display())))
}

/// Scans the last segment, the only one a crash can have torn, and cuts it after its last
/// whole frame. Returns it open for appending, with its length and record count.
fn recover_last_segment(dir: &Path, base: u64) -> Result<(File, u64, u64), SpoolError> {
    let path = format::segment_path(dir, base);
    let context = || format!("recovering {}", path.display());
    let file = OpenOptions::new().read(true).write(true).open(&path).map_err(io_error(context))?;
    let file_len = file.metadata().map_err(io_error(context))?.len();
    let (mut len, mut count) = (0, 0);
    while len < file_len {
        match format::read_frame_at(&file, len, file_len) {
            Ok((_, next)) => {
                len = next;
                count += 1;
            }
            Err(FrameError::Invalid(reason)) => {
                tracing::warn!(segment = %path.display(), offset = len, dropped_bytes = file_len - len, reason, "cutting a torn tail off the spool");
                file.set_len(len).and_then(|()| file.sync_all()).map_err(io_error(context))?;
                break;
            }
            Err(FrameError::Io(source)) => return Err(SpoolError::Io { context: context(), source }),
        }
    }
    Ok((file, len, count))
}

/// Where draining resumes, from the stored cursor checked against the segments on disk.
fn resume_point(stored: Option<Cursor>, segments: &BTreeMap<u64, u64>, durable: Cursor) -> Cursor {
    let (&first, _) = segments.first_key_value().expect("a spool always has a segment");
    let oldest = Cursor { segment: first, offset: 0, seq: first };
    let Some(cursor) = stored else { return oldest };
    if cursor.seq > durable.seq || cursor.segment > durable.segment {
        tracing::warn!(?cursor, ?durable, "drain cursor is past the end of the spool: nothing left to drain");
        return durable;
    }
    match segments.get(&cursor.segment) {
        Some(&len) if cursor.offset <= len => cursor,
        Some(_) => {
            tracing::warn!(?cursor, "drain cursor is past the end of its segment: resuming at the next one");
            Cursor { segment: cursor.segment, offset: segments[&cursor.segment], seq: cursor.seq }
        }
        None => {
            // Its segment is gone: resume at the oldest segment after it, or the very oldest.
            let next = segments.range(cursor.segment..).next().map_or(first, |(&base, _)| base);
            tracing::warn!(?cursor, resume = next, "drain cursor names a missing segment");
            Cursor { segment: next, offset: 0, seq: next }
        }
    }
}

/// A cursor at the end of a closed segment moves to the start of the next one, so that the
/// closed one counts as drained and can be deleted. The last segment may still grow: not moved.
fn normalize(cursor: Cursor, segments: &BTreeMap<u64, u64>) -> Cursor {
    let mut cursor = cursor;
    while segments.get(&cursor.segment) == Some(&cursor.offset) {
        match segments.range((Bound::Excluded(cursor.segment), Bound::Unbounded)).next() {
            Some((&next, _)) => cursor = Cursor { segment: next, offset: 0, seq: cursor.seq },
            None => break,
        }
    }
    cursor
}

/// Frame bytes from `from` to `to` (`from` not after `to`).
fn bytes_between(from: Cursor, to: Cursor, segments: &BTreeMap<u64, u64>) -> u64 {
    if from.segment == to.segment {
        return to.offset - from.offset;
    }
    let whole: u64 = segments.range(from.segment..to.segment).map(|(_, &len)| len).sum();
    whole - from.offset + to.offset
}

fn remove_segments(dir: &Path, bases: &[u64]) {
    for &base in bases {
        let path = format::segment_path(dir, base);
        // A segment left behind is below the cursor and is removed again on the next open.
        if let Err(error) = fs::remove_file(&path) {
            tracing::warn!(segment = %path.display(), %error, "could not delete a drained spool segment");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The writer is held before it gathers a batch while 64 appends are submitted: they must
    /// all share one fsync. Fails if the writer syncs per record or stops gathering early.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appends_waiting_together_share_one_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), SpoolConfig::default()).unwrap();
        let gate = lock(&spool.inner.shared.test_gate);
        let pending: Vec<_> = (0..64u32).map(|i| spool.append(&i.to_be_bytes(), &[7; 500])).collect();
        drop(gate);
        for append in pending {
            append.await.unwrap();
        }
        let stats = spool.stats();
        assert_eq!((stats.appends, stats.fsyncs), (64, 1));
        let order: Vec<u32> =
            spool.peek_batch(100).unwrap().into_iter().map(|(_, r)| u32::from_be_bytes(r.key.try_into().unwrap())).collect();
        assert_eq!(order, (0..64).collect::<Vec<_>>());
    }

    /// A batch is one unit for the writer: one fsync for all of it, even when the writer picks
    /// it up alone, and its records in order. Fails if the batch were split into appends.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_is_made_durable_with_one_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), SpoolConfig::default()).unwrap();
        spool.append(b"before", b"x").await.unwrap();
        let keys: Vec<[u8; 4]> = (0..500u32).map(u32::to_be_bytes).collect();
        let payload = [7u8; 900];
        let records: Vec<(&[u8], &[u8])> = keys.iter().map(|k| (&k[..], &payload[..])).collect();
        spool.append_batch(&records).await.unwrap();
        let stats = spool.stats();
        assert_eq!((stats.appends, stats.fsyncs), (501, 2), "one fsync for the single record, one for the batch");
        let batch = spool.peek_batch(1_000).unwrap();
        assert_eq!(batch.len(), 501);
        assert_eq!(batch[0].1.key, b"before");
        let order: Vec<u32> = batch[1..].iter().map(|(_, r)| u32::from_be_bytes(r.key.clone().try_into().unwrap())).collect();
        assert_eq!(order, (0..500).collect::<Vec<_>>());
        assert_eq!(batch.last().unwrap().0.seq(), 500);
        spool.append_batch(&[]).await.unwrap();
        assert_eq!(spool.stats().fsyncs, 2, "an empty batch writes nothing");
    }

    /// All or none: a batch that would pass the bound is refused whole, and nothing of it is
    /// counted against the bound afterwards.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_over_the_bound_is_refused_whole() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), SpoolConfig { max_bytes: 10_000, ..SpoolConfig::default() }).unwrap();
        let payload = [1u8; 1_000];
        let refused = spool.append_batch(&[(&b"k"[..], &payload[..]); 20]).await;
        assert!(matches!(refused, Err(SpoolError::Full { .. })), "{refused:?}");
        assert_eq!(spool.depth(), SpoolDepth::default());
        spool.append_batch(&[(&b"k"[..], &payload[..]); 9]).await.unwrap();
        assert_eq!(spool.depth().records, 9);
    }

    #[test]
    fn bytes_between_spans_segments() {
        let segments = BTreeMap::from([(0, 100), (5, 50), (9, 30)]);
        let from = Cursor { segment: 0, offset: 40, seq: 2 };
        assert_eq!(bytes_between(from, Cursor { segment: 0, offset: 100, seq: 5 }, &segments), 60);
        assert_eq!(bytes_between(from, Cursor { segment: 9, offset: 10, seq: 10 }, &segments), 60 + 50 + 10);
    }

    #[test]
    fn normalize_moves_only_past_closed_segments() {
        let segments = BTreeMap::from([(0, 100), (5, 50), (9, 30)]);
        assert_eq!(normalize(Cursor { segment: 0, offset: 100, seq: 5 }, &segments), Cursor { segment: 5, offset: 0, seq: 5 });
        assert_eq!(normalize(Cursor { segment: 5, offset: 50, seq: 9 }, &segments), Cursor { segment: 9, offset: 0, seq: 9 });
        assert_eq!(normalize(Cursor { segment: 9, offset: 30, seq: 12 }, &segments), Cursor { segment: 9, offset: 30, seq: 12 });
        assert_eq!(normalize(Cursor { segment: 0, offset: 60, seq: 3 }, &segments), Cursor { segment: 0, offset: 60, seq: 3 });
    }
}
