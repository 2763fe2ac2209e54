//! The few CBOR items (RFC 8949) a pass is made of, written straight into a buffer: the issue
//! path runs once per accepted declaration, on a budget of 25 CPU-µs, and building coset's
//! value tree, then cloning the header and payload for the Sig_structure, was a fifth of it.
//! Everything is read back with coset (strict), and tests check these bytes equal coset's.

/// A major type's head with its argument in the shortest form (preferred serialisation).
pub(crate) fn head(out: &mut Vec<u8>, major: u8, argument: u64) {
    let major = major << 5;
    match argument {
        0..=23 => out.push(major | argument as u8),
        24..=0xff => out.extend_from_slice(&[major | 24, argument as u8]),
        0x100..=0xffff => {
            out.push(major | 25);
            out.extend_from_slice(&(argument as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(major | 26);
            out.extend_from_slice(&(argument as u32).to_be_bytes());
        }
        _ => {
            out.push(major | 27);
            out.extend_from_slice(&argument.to_be_bytes());
        }
    }
}

pub(crate) const UNSIGNED: u8 = 0;
pub(crate) const NEGATIVE: u8 = 1;
pub(crate) const BYTES: u8 = 2;
pub(crate) const TEXT: u8 = 3;
pub(crate) const ARRAY: u8 = 4;
pub(crate) const MAP: u8 = 5;
pub(crate) const TAG: u8 = 6;

pub(crate) fn int(out: &mut Vec<u8>, value: i64) {
    if value >= 0 {
        head(out, UNSIGNED, value as u64);
    } else {
        // -1 - n is encoded as n.
        head(out, NEGATIVE, !value as u64);
    }
}

pub(crate) fn bytes(out: &mut Vec<u8>, value: &[u8]) {
    head(out, BYTES, value.len() as u64);
    out.extend_from_slice(value);
}

pub(crate) fn text(out: &mut Vec<u8>, value: &str) {
    head(out, TEXT, value.len() as u64);
    out.extend_from_slice(value.as_bytes());
}

/// `YYYY-MM-DD` as a text item, without chrono's format-string machinery.
pub(crate) fn date(out: &mut Vec<u8>, date: chrono::NaiveDate) {
    use chrono::Datelike;
    use std::io::Write;
    head(out, TEXT, 10);
    let start = out.len();
    write!(out, "{:04}-{:02}-{:02}", date.year(), date.month(), date.day()).expect("writing to a Vec cannot fail");
    debug_assert_eq!(out.len() - start, 10, "years 0-9999 only");
}

#[cfg(test)]
mod tests {
    use super::*;
    use coset::cbor::Value;

    fn coset_bytes(value: Value) -> Vec<u8> {
        let mut out = Vec::new();
        coset::cbor::ser::into_writer(&value, &mut out).unwrap();
        out
    }

    #[test]
    fn integers_match_ciborium_at_every_width_boundary() {
        for value in
            [0i64, 1, 23, 24, 255, 256, 65535, 65536, 4_294_967_295, 4_294_967_296, i64::MAX, -1, -24, -25, -256, -257, -65537, i64::MIN]
        {
            let mut out = Vec::new();
            int(&mut out, value);
            assert_eq!(out, coset_bytes(Value::Integer(value.into())), "{value}");
        }
    }

    #[test]
    fn strings_match_ciborium() {
        for len in [0usize, 23, 24, 255, 256, 70_000] {
            let text_value = "a".repeat(len);
            let mut out = Vec::new();
            text(&mut out, &text_value);
            assert_eq!(out, coset_bytes(Value::Text(text_value.clone())), "text of {len}");
            let mut out = Vec::new();
            bytes(&mut out, text_value.as_bytes());
            assert_eq!(out, coset_bytes(Value::Bytes(text_value.into_bytes())), "bytes of {len}");
        }
        let mut out = Vec::new();
        date(&mut out, chrono::NaiveDate::from_ymd_opt(988, 3, 4).unwrap());
        assert_eq!(out, coset_bytes(Value::Text("0988-03-04".into())));
    }
}
