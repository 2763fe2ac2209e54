//! API key tokens: `ehac_<key id>_<secret>_<checksum>`, after GitHub's `ghp_` tokens.
//!
//! - the prefix makes a leaked key recognisable to secret scanners and to people;
//! - the key id (12 base62 characters) names the key in the registry and in logs, so the
//!   secret never has to be logged or looked up;
//! - the secret is 256 random bits, base62 in 43 characters (no `_`, so a double-click selects
//!   the whole token);
//! - the checksum (CRC32 of everything before it, base62 in 6 characters) lets the gateway
//!   refuse a mistyped or truncated token without a registry lookup.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const PREFIX: &str = "ehac_";
pub const KEY_ID_LEN: usize = 12;
const SECRET_LEN: usize = 43;
const CHECKSUM_LEN: usize = 6;
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A parsed (or newly made) API key. The secret is held in clear only here, in memory.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    pub key_id: String,
    pub secret: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("not an e-HAC API key (they start with {PREFIX})")]
    Prefix,
    #[error("malformed API key: {0}")]
    Malformed(&'static str),
    #[error("API key checksum does not match: mistyped or truncated")]
    Checksum,
}

impl Token {
    /// A new key with a random id and secret, from the operating system's CSPRNG (`rand`'s
    /// thread RNG is seeded from it and is a ChaCha CSPRNG).
    pub fn generate() -> Token {
        use rand::RngCore;
        let mut rng = rand::rng();
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        let key_id = (0..KEY_ID_LEN).map(|_| ALPHABET[(rng.next_u32() % 62) as usize] as char).collect();
        Token { key_id, secret }
    }

    /// Parses a token as presented by a client, checking its shape and checksum only.
    pub fn parse(text: &str) -> Result<Token, TokenError> {
        let rest = text.strip_prefix(PREFIX).ok_or(TokenError::Prefix)?;
        let mut parts = rest.split('_');
        let (Some(key_id), Some(secret), Some(checksum), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(TokenError::Malformed("expected ehac_<key id>_<secret>_<checksum>"));
        };
        if key_id.len() != KEY_ID_LEN || !key_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(TokenError::Malformed("the key id is not 12 letters or digits"));
        }
        if checksum.len() != CHECKSUM_LEN || secret.len() != SECRET_LEN {
            return Err(TokenError::Malformed("the secret or checksum has the wrong length"));
        }
        let signed = &text[..text.len() - CHECKSUM_LEN - 1];
        let expected: [u8; 4] = decode(checksum).ok_or(TokenError::Malformed("the checksum is not base62"))?;
        if expected[..] != crc32(signed).to_be_bytes()[..] {
            return Err(TokenError::Checksum);
        }
        let secret: [u8; 32] = decode(secret).ok_or(TokenError::Malformed("the secret is not base62"))?;
        Ok(Token { key_id: key_id.to_owned(), secret })
    }

    /// What the registry keeps: SHA-256 of the secret, in hex. A fast hash is enough because
    /// the secret is 256 uniformly random bits: there is no dictionary to try and 2^256 guesses
    /// to make. Slow password hashes (argon2, bcrypt) protect low-entropy human passwords, and
    /// at a per-request cost of tens of milliseconds they would be a denial-of-service lever.
    pub fn secret_hash(&self) -> String {
        hash_secret(&self.secret)
    }

    /// Whether this token's secret hashes to `stored` (hex), in time independent of where they
    /// differ.
    pub fn matches(&self, stored: &str) -> bool {
        let presented = Sha256::digest(self.secret);
        let stored = decode_hex(stored).unwrap_or([0u8; 32]);
        presented.as_slice().ct_eq(&stored).into()
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let signed = format!("{PREFIX}{}_{}", self.key_id, encode(&self.secret, SECRET_LEN));
        let checksum = encode(&crc32(&signed).to_be_bytes(), CHECKSUM_LEN);
        write!(f, "{signed}_{checksum}")
    }
}

// Never print the secret by accident, e.g. in a `{:?}` of a request.
impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

pub fn hash_secret(secret: &[u8; 32]) -> String {
    Sha256::digest(secret).iter().map(|b| format!("{b:02x}")).collect()
}

fn crc32(text: &str) -> u32 {
    crc32fast::hash(text.as_bytes())
}

/// Big-endian `bytes` as exactly `width` base62 digits (leading zeros kept).
fn encode(bytes: &[u8], width: usize) -> String {
    let mut number = bytes.to_vec();
    let mut digits = vec![b'0'; width];
    for digit in digits.iter_mut().rev() {
        let mut remainder = 0u32;
        for byte in number.iter_mut() {
            let value = (remainder << 8) | u32::from(*byte);
            *byte = (value / 62) as u8;
            remainder = value % 62;
        }
        *digit = ALPHABET[remainder as usize];
    }
    debug_assert!(number.iter().all(|b| *b == 0), "width too small for the value");
    String::from_utf8(digits).expect("ASCII")
}

/// Each byte's base62 digit value, or [`NOT_BASE62`].
const DIGITS: [u8; 256] = {
    let mut digits = [NOT_BASE62; 256];
    let mut i = 0;
    while i < ALPHABET.len() {
        digits[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    digits
};
const NOT_BASE62: u8 = 0xFF;

/// Base62 digits as a big-endian number of `N` bytes (at most 32); `None` if a digit is not
/// base62 or the value does not fit. Every request's key goes through here: the digits are
/// looked up in a table and multiplied into 32-bit limbs, far cheaper than a byte-wise loop
/// with a search of the alphabet per digit.
/// The table lookup also takes the same time for every digit, where the search took longer
/// for letters late in the alphabet.
fn decode<const N: usize>(text: &str) -> Option<[u8; N]> {
    const { assert!(N <= 32, "at most 256 bits") };
    let limbs = N.div_ceil(4);
    // Little-endian: number[0] holds the lowest 32 bits.
    let mut number = [0u32; 8];
    for c in text.bytes() {
        let digit = DIGITS[usize::from(c)];
        if digit == NOT_BASE62 {
            return None;
        }
        let mut carry = u64::from(digit);
        for limb in &mut number[..limbs] {
            let value = u64::from(*limb) * 62 + carry;
            *limb = value as u32;
            carry = value >> 32;
        }
        // The value only grows digit by digit, so once too large it stays too large.
        if carry != 0 {
            return None;
        }
    }
    let mut little_endian = [0u8; 32];
    for (bytes, limb) in little_endian.chunks_exact_mut(4).zip(&number) {
        bytes.copy_from_slice(&limb.to_le_bytes());
    }
    if little_endian[N..limbs * 4].iter().any(|b| *b != 0) {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, value) in out.iter_mut().zip(little_endian[..N].iter().rev()) {
        *byte = *value;
    }
    Some(out)
}

fn decode_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    // Every request compares against a stored hash: nibbles by hand, not a str slice and
    // from_str_radix per byte, which showed in a request's cost.
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed() -> Token {
        Token { key_id: "AbCdEf012345".into(), secret: [0xA5; 32] }
    }

    #[test]
    fn a_token_round_trips_and_has_the_documented_shape() {
        for token in [fixed(), Token::generate(), Token { key_id: "000000000000".into(), secret: [0; 32] }] {
            let text = token.to_string();
            assert!(text.starts_with("ehac_"), "{text}");
            assert_eq!(text.len(), 5 + 12 + 1 + 43 + 1 + 6, "{text}");
            assert_eq!(Token::parse(&text), Ok(token));
        }
        let max = Token { key_id: "zzzzzzzzzzzz".into(), secret: [0xFF; 32] };
        assert_eq!(Token::parse(&max.to_string()), Ok(max));
    }

    #[test]
    fn generated_tokens_differ() {
        let (a, b) = (Token::generate(), Token::generate());
        assert_ne!(a.key_id, b.key_id);
        assert_ne!(a.secret, b.secret);
    }

    #[test]
    fn a_changed_character_fails_the_checksum() {
        let text = fixed().to_string();
        let position = 5 + 12 + 1 + 10;
        let mut changed = text.clone().into_bytes();
        changed[position] = if changed[position] == b'x' { b'y' } else { b'x' };
        assert_eq!(Token::parse(std::str::from_utf8(&changed).unwrap()), Err(TokenError::Checksum));
    }

    #[test]
    fn malformed_tokens_are_told_apart_from_bad_checksums() {
        let text = fixed().to_string();
        assert_eq!(Token::parse(""), Err(TokenError::Prefix));
        assert_eq!(Token::parse(&text.replacen("ehac_", "ghp_", 1)), Err(TokenError::Prefix));
        assert!(matches!(Token::parse(&text[..text.len() - 1]), Err(TokenError::Malformed(_))));
        assert!(matches!(Token::parse(&format!("{text}_x")), Err(TokenError::Malformed(_))));
        assert!(matches!(Token::parse("ehac_short_x_y"), Err(TokenError::Malformed(_))));
        // A secret of 43 base62 digits above 2^256 is not a secret this format makes.
        let over = format!("ehac_AbCdEf012345_{}", "z".repeat(43));
        let over = format!("{over}_{}", encode(&crc32(&over).to_be_bytes(), 6));
        assert!(matches!(Token::parse(&over), Err(TokenError::Malformed(_))), "{over}");
    }

    /// The byte-wise decoder `decode` replaced, kept as the reference it must agree with.
    fn decode_bytewise<const N: usize>(text: &str) -> Option<[u8; N]> {
        let mut number = [0u8; N];
        for c in text.bytes() {
            let digit = ALPHABET.iter().position(|a| *a == c)? as u32;
            let mut carry = digit;
            for byte in number.iter_mut().rev() {
                let value = u32::from(*byte) * 62 + carry;
                *byte = value as u8;
                carry = value >> 8;
            }
            if carry != 0 {
                return None;
            }
        }
        Some(number)
    }

    #[test]
    fn decoding_agrees_with_the_bytewise_reference() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(17);
        let mut texts: Vec<String> = vec![String::new(), "z".repeat(43), "z".repeat(6), "0".repeat(50), "1_".into(), "é".into()];
        texts.extend([5, 6, 7, 42, 43, 44].map(|n| "z".repeat(n)));
        for _ in 0..3_000 {
            let len = rng.random_range(0..48);
            let high = if rng.random_bool(0.5) { 62 } else { 64 };
            texts.push(
                (0..len)
                    .map(|_| {
                        *b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_".get(rng.random_range(0..high)).unwrap() as char
                    })
                    .collect(),
            );
        }
        for secret in [[0u8; 32], [0xFF; 32], [0x80; 32]] {
            texts.push(encode(&secret, SECRET_LEN));
        }
        for text in &texts {
            assert_eq!(decode::<32>(text), decode_bytewise::<32>(text), "{text:?}");
            assert_eq!(decode::<4>(text), decode_bytewise::<4>(text), "{text:?}");
            assert_eq!(decode::<3>(text), decode_bytewise::<3>(text), "{text:?}");
        }
        assert_eq!(decode::<32>(&encode(&[0xA5; 32], SECRET_LEN)), Some([0xA5; 32]));
    }

    #[test]
    fn the_hash_matches_only_its_own_secret() {
        let token = fixed();
        let hash = token.secret_hash();
        assert_eq!(hash.len(), 64);
        assert!(token.matches(&hash));
        assert!(!Token { secret: [0xA4; 32], ..fixed() }.matches(&hash));
        assert!(!token.matches("not hex"));
    }
}
