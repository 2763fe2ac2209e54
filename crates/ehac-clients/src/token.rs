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

/// Base62 digits as a big-endian number of `N` bytes; `None` if a digit is not base62 or the
/// value does not fit.
fn decode<const N: usize>(text: &str) -> Option<[u8; N]> {
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

fn decode_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
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
