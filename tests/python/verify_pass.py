#!/usr/bin/env python3
"""An independent e-HAC pass verifier: the checks of ehac-pass (docs/PASS.md), written again
from the format description with cbor2, cryptography and base45, so a shared bug in the Rust
crates does not go unnoticed.

    verify_pass.py --trust-list FILE --root-key PEM --airport CGK [--now RFC3339] PASS...

Prints one line per pass: ACCEPT <name>, REJECT <reason> or DEGRADED <reason>.
"""
import argparse
import hashlib
import io
import json
import sys
import zlib
from collections.abc import Mapping
from datetime import datetime, timezone

import base45
import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

PREFIX = "EH1:"
MAX_PASS_CHARS = 2420
MAX_COSE_BYTES = 4096
TOLERANCE = 300
ES256 = -7
EHAC_CLAIM = -65537
KNOWN_FIELDS = {"v", "n", "dob", "fl", "ap", "ad", "t"}


class Reject(Exception):
    pass


def b64url(text):
    import base64
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jwk_public(jwk):
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256" or "d" in jwk:
        raise ValueError("not a public P-256 JWK")
    x, y = int.from_bytes(b64url(jwk["x"]), "big"), int.from_bytes(b64url(jwk["y"]), "big")
    return ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()


def kid_of(public):
    sec1 = public.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return hashlib.sha256(sec1).digest()[:8]


def strict_cbor(data):
    stream = io.BytesIO(data)
    value = cbor2.CBORDecoder(stream).decode()
    if stream.tell() != len(data):
        raise ValueError("trailing bytes")
    return value


def open_sign1(data):
    """COSE_Sign1 with tag 18, ES256 protected, kid protected only: (protected bytes, kid, payload, sig)."""
    try:
        tagged = strict_cbor(data)
        if not isinstance(tagged, cbor2.CBORTag) or tagged.tag != 18:
            raise ValueError("not tag 18")
        protected_bytes, unprotected, payload, signature = tagged.value
        protected = strict_cbor(protected_bytes) if protected_bytes else {}
        if not (isinstance(protected, Mapping) and isinstance(unprotected, Mapping) and isinstance(payload, bytes) and isinstance(signature, bytes)):
            raise ValueError("shape")
    except Exception:
        raise Reject("bad_cbor")
    if protected.get(1) != ES256 or 1 in unprotected:
        raise Reject("algorithm_not_allowed")
    if 4 in unprotected:
        raise Reject("kid_unprotected")
    if not protected.get(4):
        raise Reject("kid_missing")
    return protected_bytes, protected[4], payload, signature


def check_es256(public, protected_bytes, payload, signature):
    if len(signature) != 64:
        raise Reject("bad_signature_format")
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    if not (0 < r < n and 0 < s < n):
        raise Reject("bad_signature_format")
    tbs = cbor2.dumps(["Signature1", protected_bytes, b"", payload])
    try:
        public.verify(encode_dss_signature(r, s), tbs, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise Reject("bad_signature")


def parse_time(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def load_trust_list(data, root):
    protected_bytes, kid, payload, signature = open_sign1(data)
    if kid != kid_of(root):
        raise SystemExit("trust list refused: signed by an unpinned root")
    try:
        check_es256(root, protected_bytes, payload, signature)
    except Reject:
        raise SystemExit("trust list refused: bad root signature")
    trust = json.loads(payload)
    keys = {}
    for entry in trust["issuing_keys"]:
        public = jwk_public(entry["public_key"])
        if kid_of(public).hex() != entry["kid"]:
            raise SystemExit("trust list refused: kid is not the kid of its key")
        keys[bytes.fromhex(entry["kid"])] = (public, entry)
    revoked = {bytes.fromhex(r["pass_hash"]) for r in trust["revoked_passes"]}
    return trust, keys, revoked


def verify(text, trust, keys, revoked, airport, now):
    if len(text) > MAX_PASS_CHARS:
        raise Reject("too_long")
    if not text.startswith(PREFIX):
        raise Reject("bad_prefix")
    body = text[len(PREFIX):]
    try:
        compressed = base45.b45decode(body)
        if base45.b45encode(compressed).decode() != body:
            raise ValueError("not canonical")
    except Exception:
        raise Reject("bad_base45")
    inflate = zlib.decompressobj()
    try:
        cose = inflate.decompress(compressed, MAX_COSE_BYTES + 1)
    except zlib.error:
        raise Reject("bad_compression")
    if len(cose) > MAX_COSE_BYTES:
        raise Reject("too_large")
    if not inflate.eof or inflate.unused_data:
        raise Reject("bad_compression")
    protected_bytes, kid, payload, signature = open_sign1(cose)
    stale = (now - parse_time(trust["issued"])).total_seconds() > trust["max_age_secs"]
    if kid not in keys:
        if stale:
            return "DEGRADED unknown_kid_stale_trust_list"
        raise Reject("unknown_kid")
    public, entry = keys[kid]
    if now.timestamp() + TOLERANCE < parse_time(entry["valid_from"]).timestamp() or now.timestamp() - TOLERANCE > parse_time(entry["valid_until"]).timestamp():
        raise Reject("key_not_valid")
    check_es256(public, protected_bytes, payload, signature)
    try:
        claims = strict_cbor(payload)
        data = claims[EHAC_CLAIM]
        if set(claims) != {1, 4, 5, 6, 7, EHAC_CLAIM} or set(data) != KNOWN_FIELDS or data["v"] != 1:
            raise ValueError("claims")
        iss, exp, nbf, cti = claims[1], claims[4], claims[5], claims[7]
        if not (isinstance(iss, str) and all(isinstance(claims[k], int) for k in (4, 5, 6)) and isinstance(cti, bytes) and cti):
            raise ValueError("types")
        if data["t"] not in ("green", "yellow", "red"):
            raise ValueError("triage")
    except Exception:
        raise Reject("bad_claims")
    if iss != entry["region"]:
        raise Reject("wrong_issuer")
    if nbf > now.timestamp() + TOLERANCE:
        raise Reject("not_yet_valid")
    if exp < now.timestamp() - TOLERANCE:
        raise Reject("expired")
    if hashlib.sha256(cti).digest()[:16] in revoked:
        raise Reject("revoked")
    if data["ap"].upper() != airport.strip().upper():
        raise Reject("wrong_airport")
    return ("DEGRADED stale_trust_list " if stale else "ACCEPT ") + data["n"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trust-list", required=True)
    parser.add_argument("--root-key", required=True)
    parser.add_argument("--airport", required=True)
    parser.add_argument("--now")
    parser.add_argument("passes", nargs="+")
    args = parser.parse_args()
    root = serialization.load_pem_public_key(open(args.root_key, "rb").read())
    trust, keys, revoked = load_trust_list(open(args.trust_list, "rb").read(), root)
    now = parse_time(args.now) if args.now else datetime.now(timezone.utc)
    for text in args.passes:
        try:
            print(verify(text.strip(), trust, keys, revoked, args.airport, now))
        except Reject as reject:
            print(f"REJECT {reject}")


if __name__ == "__main__":
    sys.exit(main())
