/**
 * Byte helpers: lowercase hex (the only spelling the protocol accepts, PROTOCOL.md §1), UTF-8,
 * and concatenation.
 */

const HEX = "0123456789abcdef";

/** Lowercase hex of `bytes`. */
export function toHex(bytes: Uint8Array): string {
  let out = "";
  for (const b of bytes) out += HEX[b >> 4] + HEX[b & 15];
  return out;
}

/** Bytes of lowercase `hex`; throws on uppercase, odd length or other characters. */
export function fromHex(hex: string): Uint8Array {
  if (hex.length % 2 !== 0 || !/^[0-9a-f]*$/.test(hex)) {
    throw new Error(`not lowercase hex: ${hex.slice(0, 16)}…`);
  }
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** A 32-byte key from its 64-character hex, or throws naming `what`. */
export function keyFromHex(hex: string, what = "key"): Uint8Array {
  if (hex.length !== 64) throw new Error(`${what}: must be 64 lowercase hex characters`);
  return fromHex(hex);
}

const encoder = new TextEncoder();

/** UTF-8 bytes of `s`, exactly as sent (no normalisation). */
export function utf8(s: string): Uint8Array {
  return encoder.encode(s);
}

/** `parts` joined. */
export function concat(parts: Uint8Array[]): Uint8Array {
  let length = 0;
  for (const p of parts) length += p.length;
  const out = new Uint8Array(length);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Whether two byte strings are equal. */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
