// The IANA COSE values coset 0.4 (the Rust verifier's COSE library) knows. coset refuses a
// header whose alg, crit entry or content format is a number neither registered nor in the
// private-use range, so the gate must too, or the two would give different reasons.

/** COSE Algorithms; private use below -65536. */
export const ALGORITHMS = new Set([
  -65535, -65534, -65533, -65532, -65531, -65530, -65529, -268, -267, -266, -265, -260, -259, -258, -257, -53, -52, -51, -50, -49, -48, -47,
  -46, -45, -44, -43, -42, -41, -40, -39, -38, -37, -36, -35, -34, -33, -32, -31, -30, -29, -28, -27, -26, -25, -19, -18, -17, -16, -15, -14,
  -13, -12, -11, -10, -9, -8, -7, -6, -5, -4, -3, 0, 1, 2, 3, 4, 5, 6, 7, 10, 11, 12, 13, 14, 15, 24, 25, 26, 30, 31, 32, 33, 34,
].map(BigInt));

/** COSE Header Parameters; private use below -65536. */
export const HEADER_PARAMETERS = new Set([0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 32, 33, 34, 35, 256, 257].map(BigInt));

/** CoAP Content-Formats (the integer form of a COSE content type); no private range. */
export const COAP_CONTENT_FORMATS = new Set([
  0, 16, 17, 18, 19, 21, 22, 23, 40, 41, 42, 47, 50, 51, 52, 60, 61, 62, 63, 64, 65, 96, 97, 98, 101, 102, 110, 111, 112, 113, 114, 115, 140,
  256, 257, 258, 259, 260, 261, 262, 263, 264, 265, 266, 267, 268, 271, 272, 280, 281, 282, 283, 284, 285, 286, 287, 290, 291, 310, 311, 320,
  322, 340, 341, 432, 433, 601, 10000, 10001, 10002, 10003, 10004, 11050, 11060, 11542, 11543, 11544, 20000, 30000,
].map(BigInt));

export const PRIVATE_USE_MAX = -65536n;
