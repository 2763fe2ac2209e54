//! The bytes on disk: record frames, segment file names and the drained-cursor file. Nothing
//! here keeps state; [`crate::Spool`] decides when to write and when to fsync.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::Record;

/// First byte of every frame: says "a frame of format version 1 starts here". A frame read at
/// an offset where no frame starts (zeroes after a crash, garbage) fails here or at the CRC.
const FRAME_MAGIC: u8 = 0xE1;
/// Magic byte, body length (u32 LE), CRC32 (u32 LE) of magic + length + body.
pub(crate) const FRAME_HEADER_BYTES: usize = 1 + 4 + 4;
/// Largest key + payload one record may carry. Declarations are at most 64 KiB; the bound also
/// keeps a corrupt length field from making the reader allocate gigabytes.
pub const MAX_RECORD_BYTES: usize = 4 << 20;

const SEGMENT_SUFFIX: &str = ".seg";
const CURSOR_FILE: &str = "drained.cursor";
const CURSOR_TEMP_FILE: &str = "drained.cursor.tmp";
pub(crate) const LOCK_FILE: &str = "LOCK";
/// "EHSPCUR" and the cursor format version.
const CURSOR_MAGIC: &[u8; 8] = b"EHSPCUR\x01";
const CURSOR_BYTES: usize = 8 + 8 + 8 + 8 + 4;

/// A point between two records: the next record starts at `offset` in the segment whose first
/// record has sequence number `segment`, and has sequence number `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub segment: u64,
    pub offset: u64,
    pub seq: u64,
}

/// The whole frame of one record, ready to be appended.
pub fn encode_frame(key: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(FRAME_HEADER_BYTES + 4 + key.len() + payload.len());
    append_frame(&mut frame, key, payload);
    frame
}

/// Appends the frame of one record to `out`, which may hold earlier frames (a batch).
pub(crate) fn append_frame(out: &mut Vec<u8>, key: &[u8], payload: &[u8]) {
    let body_len = 4 + key.len() + payload.len();
    let start = out.len();
    out.reserve(FRAME_HEADER_BYTES + body_len);
    out.push(FRAME_MAGIC);
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(payload);
    let frame = &mut out[start..];
    let crc = frame_crc(&frame[..5], &frame[FRAME_HEADER_BYTES..]);
    frame[5..9].copy_from_slice(&crc.to_le_bytes());
}

fn frame_crc(magic_and_length: &[u8], body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(magic_and_length);
    hasher.update(body);
    hasher.finalize()
}

/// Why the bytes at an offset are not a whole, intact frame.
#[derive(Debug)]
pub(crate) enum FrameError {
    /// Not a frame: cut short, wrong magic, impossible length or CRC mismatch.
    Invalid(&'static str),
    Io(io::Error),
}

/// Reads the frame starting at `offset`, using no byte at or past `end`. Returns the record
/// and the offset just past its frame. The checks are [`check_header`] and [`check_body`],
/// which [`decode_frame`] shares: the two read the same frames the same way.
pub(crate) fn read_frame_at(file: &File, offset: u64, end: u64) -> Result<(Record, u64), FrameError> {
    if end.saturating_sub(offset) < FRAME_HEADER_BYTES as u64 {
        return Err(FrameError::Invalid("frame header cut short"));
    }
    let mut header = [0u8; FRAME_HEADER_BYTES];
    file.read_exact_at(&mut header, offset).map_err(FrameError::Io)?;
    let body_len = check_header(&header).map_err(FrameError::Invalid)?;
    let frame_end = offset + (FRAME_HEADER_BYTES + body_len) as u64;
    if frame_end > end {
        return Err(FrameError::Invalid("frame body cut short"));
    }
    let mut body = vec![0u8; body_len];
    file.read_exact_at(&mut body, offset + FRAME_HEADER_BYTES as u64).map_err(FrameError::Io)?;
    Ok((check_body(&header, body).map_err(FrameError::Invalid)?, frame_end))
}

/// Reads the frame at the start of `bytes`: the record and the length of its frame. The same
/// checks as [`read_frame_at`] on a file holding `bytes`, without the file (the fuzz target's
/// way in). `Err` says why the bytes are not a whole, intact frame.
pub fn decode_frame(bytes: &[u8]) -> Result<(Record, usize), &'static str> {
    let Some(header) = bytes.first_chunk::<FRAME_HEADER_BYTES>() else { return Err("frame header cut short") };
    let body_len = check_header(header)?;
    let Some(body) = bytes[FRAME_HEADER_BYTES..].get(..body_len) else { return Err("frame body cut short") };
    Ok((check_body(header, body.to_vec())?, FRAME_HEADER_BYTES + body_len))
}

/// The body length a frame header announces, if the header can start a frame. Checked before
/// the body is read, so a corrupt length never makes the reader allocate more than
/// [`MAX_RECORD_BYTES`].
fn check_header(header: &[u8; FRAME_HEADER_BYTES]) -> Result<usize, &'static str> {
    if header[0] != FRAME_MAGIC {
        return Err("no frame magic byte");
    }
    let body_len = u32::from_le_bytes(header[1..5].try_into().unwrap()) as usize;
    if !(4..=4 + MAX_RECORD_BYTES).contains(&body_len) {
        return Err("impossible frame length");
    }
    Ok(body_len)
}

/// The record in a frame's body (of the length its header announced), if the CRC matches.
fn check_body(header: &[u8; FRAME_HEADER_BYTES], mut body: Vec<u8>) -> Result<Record, &'static str> {
    let crc = u32::from_le_bytes(header[5..9].try_into().unwrap());
    if frame_crc(&header[..5], &body) != crc {
        return Err("CRC mismatch");
    }
    let key_len = u32::from_le_bytes(body[..4].try_into().unwrap()) as usize;
    if key_len > body.len() - 4 {
        return Err("key longer than the frame");
    }
    let payload = body.split_off(4 + key_len);
    body.drain(..4);
    Ok(Record { key: body, payload })
}

/// Segments are named by the sequence number of their first record, zero-padded so that
/// name order is log order.
pub(crate) fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}{SEGMENT_SUFFIX}"))
}

/// The base of a segment file name. Names past [`MAX_SEQ`] are not segments this spool wrote
/// (it would take 2^62 records), and sequence arithmetic near `u64::MAX` would overflow
/// (a `18446744073709551615.seg` crashed the spool_dir fuzz target on open).
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&base| base <= MAX_SEQ)
}

/// The highest sequence number a segment name may carry.
pub(crate) const MAX_SEQ: u64 = 1 << 62;

pub(crate) fn cursor_path(dir: &Path) -> PathBuf {
    dir.join(CURSOR_FILE)
}

pub(crate) fn cursor_temp_path(dir: &Path) -> PathBuf {
    dir.join(CURSOR_TEMP_FILE)
}

fn encode_cursor(cursor: Cursor) -> [u8; CURSOR_BYTES] {
    let mut bytes = [0u8; CURSOR_BYTES];
    bytes[..8].copy_from_slice(CURSOR_MAGIC);
    bytes[8..16].copy_from_slice(&cursor.segment.to_le_bytes());
    bytes[16..24].copy_from_slice(&cursor.offset.to_le_bytes());
    bytes[24..32].copy_from_slice(&cursor.seq.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..32]);
    bytes[32..].copy_from_slice(&crc.to_le_bytes());
    bytes
}

/// `None` when the bytes are not a cursor this version wrote.
pub(crate) fn decode_cursor(bytes: &[u8]) -> Option<Cursor> {
    if bytes.len() != CURSOR_BYTES || &bytes[..8] != CURSOR_MAGIC {
        return None;
    }
    if crc32fast::hash(&bytes[..32]) != u32::from_le_bytes(bytes[32..].try_into().unwrap()) {
        return None;
    }
    let word = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap());
    Some(Cursor { segment: word(8), offset: word(16), seq: word(24) })
}

/// Replaces the cursor file atomically: a crash leaves either the old cursor or the new one,
/// never a torn mix, and the new one is on disk when this returns.
pub(crate) fn write_cursor(dir: &Path, cursor: Cursor) -> io::Result<()> {
    let temp = cursor_temp_path(dir);
    let mut file = File::create(&temp)?;
    file.write_all(&encode_cursor(cursor))?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temp, cursor_path(dir))?;
    sync_dir(dir)
}

/// Makes file creations, renames and removals in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trips_and_rejects_any_flipped_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let frame = encode_frame(b"decl-1", b"{\"passport\":\"X\"}");
        fs::write(&path, &frame).unwrap();
        let file = File::open(&path).unwrap();
        let (record, end) = read_frame_at(&file, 0, frame.len() as u64).unwrap();
        assert_eq!(
            (record.key.as_slice(), record.payload.as_slice(), end),
            (&b"decl-1"[..], &b"{\"passport\":\"X\"}"[..], frame.len() as u64)
        );

        for i in 0..frame.len() {
            let mut bad = frame.clone();
            bad[i] ^= 0x40;
            fs::write(&path, &bad).unwrap();
            let file = File::open(&path).unwrap();
            assert!(matches!(read_frame_at(&file, 0, bad.len() as u64), Err(FrameError::Invalid(_))), "flipped byte {i} not detected");
            assert!(decode_frame(&bad).is_err(), "flipped byte {i} not detected in a slice");
        }
    }

    #[test]
    fn slice_and_file_readers_agree() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut frames = encode_frame(b"k", b"payload one");
        frames.extend(encode_frame(b"", b""));
        frames.extend(encode_frame(b"key-3", &[0xE1; 300]));
        for end in 0..=frames.len() {
            let bytes = &frames[..end];
            fs::write(&path, bytes).unwrap();
            let file = File::open(&path).unwrap();
            let (mut from_file, mut from_slice) = (Vec::new(), Vec::new());
            let mut at = 0;
            loop {
                match read_frame_at(&file, at, end as u64) {
                    Ok((record, next)) => from_file.push(Ok((record, next))),
                    Err(FrameError::Invalid(reason)) => from_file.push(Err(reason)),
                    Err(FrameError::Io(e)) => panic!("{e}"),
                }
                match decode_frame(&bytes[at as usize..]) {
                    Ok((record, len)) => from_slice.push(Ok((record, at + len as u64))),
                    Err(reason) => from_slice.push(Err(reason)),
                }
                match from_file.last().unwrap() {
                    Ok((_, next)) => at = *next,
                    Err(_) => break,
                }
            }
            assert_eq!(from_file, from_slice, "frames cut at {end}");
        }
    }

    #[test]
    fn cursor_round_trips_and_rejects_corruption() {
        let cursor = Cursor { segment: 7, offset: 1234, seq: 99 };
        let mut bytes = encode_cursor(cursor);
        assert_eq!(decode_cursor(&bytes), Some(cursor));
        bytes[20] ^= 1;
        assert_eq!(decode_cursor(&bytes), None);
        assert_eq!(decode_cursor(&bytes[..10]), None);
    }

    #[test]
    fn segment_names_sort_in_log_order_and_parse_back() {
        let dir = Path::new("/spool");
        let a = segment_path(dir, 9);
        let b = segment_path(dir, 10);
        assert!(a < b);
        assert_eq!(parse_segment_name(b.file_name().unwrap().to_str().unwrap()), Some(10));
        assert_eq!(parse_segment_name("10.seg"), None);
        assert_eq!(parse_segment_name("drained.cursor"), None);
        assert_eq!(parse_segment_name(&format!("{}.seg", u64::MAX)), None);
        assert_eq!(parse_segment_name(&format!("{MAX_SEQ:020}.seg")), Some(MAX_SEQ));
    }
}
