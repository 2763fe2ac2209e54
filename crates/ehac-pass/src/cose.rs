//! The envelope shared by passes and trust lists: COSE_Sign1 (tag 18), ES256, kid protected;
//! and, for passes, zlib and Base45.

use coset::{iana, CoseSign1, CoseSign1Builder, HeaderBuilder, TaggedCborSerializable};
use flate2::{Decompress, FlushDecompress, Status};
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::{PublicKey, SecretKey};

use crate::key::Kid;

/// The protected header every signature here carries: ES256 and the signer's kid.
pub(crate) fn protected_header(kid: Kid, content_type: Option<&str>) -> coset::Header {
    let mut header = HeaderBuilder::new().algorithm(iana::Algorithm::ES256).key_id(kid.0.to_vec());
    if let Some(content_type) = content_type {
        header = header.content_type(content_type.to_owned());
    }
    header.build()
}

/// The protected header's bytes for ES256 and `kid`, written directly: `{1: -7, 4: kid}`.
pub(crate) fn protected_header_bytes(kid: Kid) -> Vec<u8> {
    use crate::cbor::{self, MAP};
    let mut out = Vec::with_capacity(16);
    cbor::head(&mut out, MAP, 2);
    cbor::int(&mut out, 1);
    cbor::int(&mut out, -7);
    cbor::int(&mut out, 4);
    cbor::bytes(&mut out, &kid.0);
    out
}

/// Tagged COSE_Sign1 bytes over an already-encoded protected header, written directly: the
/// Sig_structure `["Signature1", protected, h'', payload]` is signed, then
/// `18([protected, {}, payload, signature])` is written. The same bytes as [`sign1`].
pub(crate) fn sign1_direct(protected: &[u8], payload: &[u8], sign: impl FnOnce(&[u8]) -> Vec<u8>) -> Vec<u8> {
    use crate::cbor::{self, ARRAY, MAP, TAG};
    let mut tbs = Vec::with_capacity(16 + protected.len() + payload.len());
    cbor::head(&mut tbs, ARRAY, 4);
    cbor::text(&mut tbs, "Signature1");
    cbor::bytes(&mut tbs, protected);
    cbor::bytes(&mut tbs, b"");
    cbor::bytes(&mut tbs, payload);
    let signature = sign(&tbs);
    let mut out = Vec::with_capacity(16 + protected.len() + payload.len() + signature.len());
    cbor::head(&mut out, TAG, 18);
    cbor::head(&mut out, ARRAY, 4);
    cbor::bytes(&mut out, protected);
    cbor::head(&mut out, MAP, 0);
    cbor::bytes(&mut out, payload);
    cbor::bytes(&mut out, &signature);
    out
}

/// Tagged COSE_Sign1 bytes, signed by `sign` over the Sig_structure.
pub(crate) fn sign1(protected: coset::Header, payload: Vec<u8>, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> Vec<u8> {
    CoseSign1Builder::new()
        .protected(protected)
        .payload(payload)
        .create_signature(b"", sign)
        .build()
        .to_tagged_vec()
        .expect("a COSE_Sign1 encodes")
}

/// Deterministic ES256 (RFC 6979) with RustCrypto: used for trust lists, where speed does not
/// matter and determinism makes the signed file reproducible.
pub(crate) fn sign_p256(secret: &SecretKey, data: &[u8]) -> Vec<u8> {
    let signature: Signature = SigningKey::from(secret).sign(data);
    signature.to_bytes().to_vec()
}

pub(crate) enum SignatureError {
    /// Not 64 bytes of r || s with both in range (DER, truncated, zero).
    Format,
    Mismatch,
}

/// ES256 over `data`, the signature as fixed 64-byte r || s (RFC 8152 section 8.1) only.
///
/// The format is checked with RustCrypto (so a zero or out-of-range r or s is a format error, not
/// a mismatch); the curve arithmetic is ring's, which verified much faster than
/// RustCrypto's `VerifyingKey` on the same passes (`ehac bench pass`). A gate checks a pass in
/// the time a traveller takes to hold up a phone, on whatever small device it runs on.
pub(crate) fn verify_es256(key: &PublicKey, signature: &[u8], data: &[u8]) -> Result<(), SignatureError> {
    if signature.len() != 64 {
        return Err(SignatureError::Format);
    }
    Signature::from_slice(signature).map_err(|_| SignatureError::Format)?;
    let point = p256::EncodedPoint::from(key);
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point.as_bytes())
        .verify(data, signature)
        .map_err(|_| SignatureError::Mismatch)
}

/// RustCrypto's verifier, kept for the benchmark that compares the two on the same bytes.
pub(crate) fn verify_es256_p256(key: &PublicKey, signature: &[u8], data: &[u8]) -> bool {
    Signature::from_slice(signature).is_ok_and(|signature| VerifyingKey::from(key).verify(data, &signature).is_ok())
}

pub(crate) enum Envelope {
    Cbor,
    Algorithm,
    KidUnprotected,
    KidMissing,
}

/// Strict COSE_Sign1: tag 18, nothing after it, an embedded payload, alg ES256 in the protected
/// header and nowhere else, kid in the protected header and nowhere else. Checked in that order.
pub(crate) fn open_sign1(bytes: &[u8]) -> Result<(CoseSign1, Vec<u8>), Envelope> {
    let sign1 = CoseSign1::from_tagged_slice(bytes).map_err(|_| Envelope::Cbor)?;
    let Some(payload) = sign1.payload.clone() else { return Err(Envelope::Cbor) };
    let es256 = coset::Algorithm::Assigned(iana::Algorithm::ES256);
    if sign1.protected.header.alg != Some(es256) || sign1.unprotected.alg.is_some() {
        return Err(Envelope::Algorithm);
    }
    if !sign1.unprotected.key_id.is_empty() {
        return Err(Envelope::KidUnprotected);
    }
    if sign1.protected.header.key_id.is_empty() {
        return Err(Envelope::KidMissing);
    }
    Ok((sign1, payload))
}

/// A zlib stream (RFC 1950) of stored deflate blocks. A pass's COSE_Sign1 is mostly signature,
/// random pass id and kid: deflate made it no shorter and the QR version came out the same
/// (`cargo test -p ehac-pass --test qr`). What deflating did cost was zlib-rs's hash-table
/// clear on every reset, a real part of a pass's CPU; stored blocks need no state at all. Any zlib inflater reads them, the
/// gate's included.
pub(crate) fn zlib(bytes: &[u8]) -> Vec<u8> {
    const BLOCK: usize = u16::MAX as usize;
    let blocks = bytes.len().div_ceil(BLOCK).max(1);
    let mut out = Vec::with_capacity(2 + 5 * blocks + bytes.len() + 4);
    // CMF 0x78: deflate with a 32 KiB window; FLG 0x01: no dictionary, "fastest", and
    // CMF * 256 + FLG a multiple of 31 as the header check requires.
    out.extend_from_slice(&[0x78, 0x01]);
    let mut chunks = bytes.chunks(BLOCK).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[0x01, 0x00, 0x00, 0xFF, 0xFF]);
    }
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        let len = chunk.len() as u16;
        // BFINAL on the last block, BTYPE 00 (stored), then LEN and its one's complement.
        out.push(u8::from(last));
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&adler2::adler32_slice(bytes).to_be_bytes());
    out
}

pub(crate) enum Inflate {
    Corrupt,
    TooLarge,
}

/// Strict zlib: one complete stream, nothing after it, at most `cap` bytes out. The output buffer
/// is `cap + 1` bytes and never grows, so a decompression bomb costs at most that much work.
pub(crate) fn unzlib(bytes: &[u8], cap: usize) -> Result<Vec<u8>, Inflate> {
    let mut out = Vec::with_capacity(cap + 1);
    let mut inflate = Decompress::new(true);
    match inflate.decompress_vec(bytes, &mut out, FlushDecompress::Finish) {
        Ok(Status::StreamEnd) if out.len() <= cap && inflate.total_in() as usize == bytes.len() => Ok(out),
        Ok(Status::StreamEnd) if out.len() <= cap => Err(Inflate::Corrupt),
        _ if out.len() > cap => Err(Inflate::TooLarge),
        _ => Err(Inflate::Corrupt),
    }
}

/// Strict Base45: only the RFC 9285 alphabet, no dangling character, every group in range. The
/// `base45` crate decodes leniently (a 2-character group above 255 wraps), so a decoding is only
/// accepted if it encodes back to the same text.
pub(crate) fn unbase45(text: &str) -> Option<Vec<u8>> {
    let bytes = base45::decode(text).ok()?;
    (base45::encode(&bytes) == text).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stored stream must read back through a real inflater (flate2's, like the gate's)
    /// at the sizes where blocks split, and through our strict one.
    #[test]
    fn stored_zlib_inflates_to_the_same_bytes() {
        use std::io::Read;
        for len in [0, 1, 230, 65_535, 65_536, 140_000] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
            let stream = zlib(&bytes);
            assert_eq!(u16::from_be_bytes([stream[0], stream[1]]) % 31, 0, "header check");
            let mut inflated = Vec::new();
            flate2::read::ZlibDecoder::new(&stream[..]).read_to_end(&mut inflated).unwrap();
            assert_eq!(inflated, bytes, "{len} bytes");
            assert!(matches!(unzlib(&stream, len.max(1)), Ok(out) if out == bytes), "{len} bytes through unzlib");
        }
    }

    #[test]
    fn the_direct_sign1_is_cosets_byte_for_byte() {
        let kid = Kid([1, 2, 3, 4, 5, 6, 7, 8]);
        let payload = vec![0xa1, 0x01, 0x63, b'a', b'b', b'c'];
        let mut direct_tbs = Vec::new();
        let direct = sign1_direct(&protected_header_bytes(kid), &payload, |tbs| {
            direct_tbs = tbs.to_vec();
            vec![9; 64]
        });
        let mut coset_tbs = Vec::new();
        let with_coset = sign1(protected_header(kid, None), payload.clone(), |tbs| {
            coset_tbs = tbs.to_vec();
            vec![9; 64]
        });
        assert_eq!(direct, with_coset);
        assert_eq!(direct_tbs, coset_tbs);
        let (parsed, _) = open_sign1(&direct).ok().expect("a strict COSE_Sign1");
        assert_eq!(parsed.tbs_data(b""), direct_tbs);
    }
}
