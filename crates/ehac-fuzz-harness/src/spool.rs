//! The spool's frame reader ([`ehac_spool::decode_frame`]), and [`ehac_spool::Spool::open`]
//! plus a full drain of a directory the fuzzer wrote: torn, corrupt or oddly named segments
//! and a damaged drain cursor.

use std::path::Path;

use ehac_spool::{decode_frame, encode_frame, Spool, SpoolConfig};

/// Reads one frame from the start of `bytes`. A frame it accepts must lie inside `bytes` and
/// be exactly what the writer writes for its record.
pub fn check_frame(bytes: &[u8]) {
    let Ok((record, len)) = decode_frame(bytes) else { return };
    assert!(len <= bytes.len(), "frame of {len} bytes read from {} bytes", bytes.len());
    assert_eq!(encode_frame(&record.key, &record.payload), bytes[..len], "an accepted frame is not what the writer writes");
}

/// A spool directory as the fuzz input describes it (see [`SpoolDir::parse`]).
#[derive(Debug, Default)]
pub struct SpoolDir {
    /// Contents of `drained.cursor`, if there is one.
    pub cursor: Option<Vec<u8>>,
    /// Segments by the sequence number in their name, with their bytes.
    pub segments: Vec<(u64, Vec<u8>)>,
}

/// The layout of `drained.cursor` (ehac-spool's `format.rs`): magic, segment, offset, seq,
/// CRC32 of the rest. Written here so that the fuzzer can reach a cursor the spool trusts;
/// `tests::a_cursor_written_here_is_honoured` fails if the two ever drift apart.
pub fn cursor_bytes(segment: u64, offset: u64, seq: u64) -> Vec<u8> {
    let mut bytes = b"EHSPCUR\x01".to_vec();
    for word in [segment, offset, seq] {
        bytes.extend_from_slice(&word.to_le_bytes());
    }
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

impl SpoolDir {
    /// Reads a directory description from fuzz input; missing bytes read as zeroes.
    ///
    /// `flags` (1 byte: bits 0-1 segment count - 1, at most 3; bit 2 a cursor file; bit 3 its
    /// CRC is computed here rather than taken from the input), then the cursor (segment,
    /// offset, seq: 3 x u64 LE, plus a u32 CRC unless bit 3), then per segment: its base
    /// (u64 LE), its length (u16 LE) and that many bytes.
    pub fn parse(input: &[u8]) -> SpoolDir {
        let mut input = Input(input);
        let flags = input.take(1)[0];
        let cursor = (flags & 0b100 != 0).then(|| {
            let (segment, offset, seq) = (input.word(), input.word(), input.word());
            let mut bytes = cursor_bytes(segment, offset, seq);
            if flags & 0b1000 == 0 {
                bytes.truncate(32);
                bytes.extend(input.take(4));
            }
            bytes
        });
        let segments = (0..=(flags & 0b11).min(2))
            .map(|_| {
                let base = input.word();
                let len = u16::from_le_bytes(input.take(2).try_into().unwrap()) as usize;
                (base, input.take_up_to(len).to_vec())
            })
            .collect();
        SpoolDir { cursor, segments }
    }

    /// The fuzz input that [`SpoolDir::parse`] reads back as `self` (the cursor taken as it is).
    pub fn to_input(&self) -> Vec<u8> {
        assert!((1..=3).contains(&self.segments.len()));
        let mut out = vec![(self.segments.len() - 1) as u8];
        if let Some(cursor) = &self.cursor {
            out[0] |= 0b100;
            out.extend_from_slice(&cursor[8..36]);
        }
        for (base, bytes) in &self.segments {
            out.extend_from_slice(&base.to_le_bytes());
            out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
            out.extend_from_slice(bytes);
        }
        out
    }

    /// Writes the files into `dir` (which must be empty).
    pub fn write(&self, dir: &Path) {
        if let Some(cursor) = &self.cursor {
            std::fs::write(dir.join("drained.cursor"), cursor).unwrap();
        }
        for (base, bytes) in &self.segments {
            std::fs::write(dir.join(format!("{base:020}.seg")), bytes).unwrap();
        }
    }
}

/// Fuzz input read front to back.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    /// The next `n` bytes, zero-padded past the end of the input.
    fn take(&mut self, n: usize) -> Vec<u8> {
        let mut bytes = self.take_up_to(n).to_vec();
        bytes.resize(n, 0);
        bytes
    }

    fn take_up_to(&mut self, n: usize) -> &[u8] {
        let (head, tail) = self.0.split_at(n.min(self.0.len()));
        self.0 = tail;
        head
    }

    fn word(&mut self) -> u64 {
        u64::from_le_bytes(self.take(8).try_into().unwrap())
    }
}

/// At most this many batches per drain: more means the drain does not end.
const MAX_BATCHES: usize = 10_000;

/// Writes the directory the input describes, opens it as a spool and drains it the way the
/// gateway's drain task does. The spool may refuse the directory or report a corrupt record;
/// it must not panic, must not hand out a position it then refuses to acknowledge, must not
/// return an empty batch while it says records wait (the gateway's drain task would spin), and
/// once drained it must reopen empty.
pub fn check_dir(input: &[u8]) {
    let layout = SpoolDir::parse(input);
    // tmpfs when there is one: open and acknowledge fsync, which on a disk is most of the time.
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.expect("a temporary directory");
    layout.write(dir.path());
    let config = SpoolConfig { max_bytes: 1 << 20, segment_bytes: 4096 };
    let Ok(spool) = Spool::open(dir.path(), config) else { return };
    let mut drained = true;
    for _ in 0..MAX_BATCHES {
        let waiting = spool.depth().records;
        let batch = match spool.peek_batch(64) {
            Ok(batch) => batch,
            Err(_) => {
                drained = false;
                break;
            }
        };
        let Some(&(last, _)) = batch.last() else {
            assert_eq!(waiting, 0, "an empty batch while {waiting} records wait to be drained");
            break;
        };
        for pair in batch.windows(2) {
            assert!(pair[0].0.seq() < pair[1].0.seq(), "a batch out of order");
        }
        spool.acknowledge(last).unwrap_or_else(|e| panic!("a position from peek_batch was refused: {e}"));
        assert!(spool.depth().records < waiting, "acknowledging a batch freed nothing");
    }
    assert!(!drained || spool.depth().records == 0, "the drain did not end");
    drop(spool);
    let reopened = Spool::open(dir.path(), config).unwrap_or_else(|e| panic!("a spool it opened before does not open again: {e}"));
    if drained {
        assert_eq!(reopened.depth().records, 0, "a drained spool reopens with records");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_written_here_is_honoured() {
        let frames: Vec<Vec<u8>> = (0..3).map(|i| encode_frame(format!("k{i}").as_bytes(), b"payload")).collect();
        let after_first = frames[0].len() as u64;
        let layout = SpoolDir { cursor: Some(cursor_bytes(0, after_first, 1)), segments: vec![(0, frames.concat())] };
        let dir = tempfile::tempdir().unwrap();
        layout.write(dir.path());
        let spool = Spool::open(dir.path(), SpoolConfig::default()).unwrap();
        assert_eq!(spool.depth().records, 2);
        assert_eq!(spool.peek_batch(10).unwrap()[0].1.key, b"k1");
    }

    #[test]
    fn layouts_survive_the_input_format() {
        let layout = SpoolDir { cursor: Some(cursor_bytes(5, 6, 7)), segments: vec![(0, vec![1, 2]), (9, vec![])] };
        let again = SpoolDir::parse(&layout.to_input());
        assert_eq!((again.cursor, again.segments), (layout.cursor, layout.segments));
    }
}
