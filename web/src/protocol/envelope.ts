/**
 * The signing envelope of docs/PROTOCOL.md §2: every signature in the protocol is over
 *
 *     "guildhall-sig-v1" ‖ lp(label) ‖ lp(field_1) ‖ … ‖ lp(field_n)
 *     lp(x) = len(x) as 4-byte big-endian ‖ x
 *
 * `Envelope` appends fields in the order a kind's table lists them, encoding each by its type
 * (§2's table). This is the only place such bytes are built; `kinds.ts` lists the kinds.
 */

import { concat, keyFromHex, utf8 } from "./bytes";

/** The 16 ASCII bytes every envelope starts with (no length prefix). */
export const PREFIX = utf8("guildhall-sig-v1");

function u32(n: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, n, false);
  return out;
}

function u64(n: bigint | number): Uint8Array {
  const v = BigInt(n);
  if (v < 0n || v > 0xffff_ffff_ffff_ffffn) throw new Error(`not an unsigned 64-bit integer: ${n}`);
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, v, false);
  return out;
}

function lp(x: Uint8Array): Uint8Array {
  return concat([u32(x.length), x]);
}

/** A key given as its 64-character hex or its 32 raw bytes. */
export type KeyInput = string | Uint8Array;

function keyBytes(key: KeyInput): Uint8Array {
  const raw = typeof key === "string" ? keyFromHex(key) : key;
  if (raw.length !== 32) throw new Error("a key is 32 bytes");
  return raw;
}

/** Builds one kind's signing bytes, field by field. */
export class Envelope {
  private readonly parts: Uint8Array[];

  constructor(label: string) {
    if (!/^[\x20-\x7e]+$/.test(label)) throw new Error("a label is printable ASCII");
    this.parts = [PREFIX, lp(utf8(label))];
  }

  /** A string: its UTF-8 bytes as sent. */
  string(s: string): this {
    this.parts.push(lp(utf8(s)));
    return this;
  }

  /** An unsigned integer: 8 bytes big-endian. */
  u64(n: bigint | number): this {
    this.parts.push(lp(u64(n)));
    return this;
  }

  /** A boolean: one byte 0x00 or 0x01. */
  bool(b: boolean): this {
    this.parts.push(lp(Uint8Array.of(b ? 1 : 0)));
    return this;
  }

  /** A key: its 32 raw bytes, not its hex. */
  key(k: KeyInput): this {
    this.parts.push(lp(keyBytes(k)));
    return this;
  }

  /** Raw bytes, as they are (a hash, a nonce, a payload). */
  raw(b: Uint8Array): this {
    this.parts.push(lp(b));
    return this;
  }

  /** A repeated string: count as 4-byte big-endian, then each item length-prefixed. */
  strings(items: readonly string[]): this {
    this.parts.push(lp(concat([u32(items.length), ...items.map((s) => lp(utf8(s)))])));
    return this;
  }

  /** An optional string: absent is the empty string, present is 0x01 ‖ its UTF-8. */
  optString(s: string | undefined): this {
    this.parts.push(lp(s === undefined ? new Uint8Array() : concat([Uint8Array.of(1), utf8(s)])));
    return this;
  }

  /** An optional unsigned integer: absent empty, present 0x01 ‖ 8 bytes big-endian. */
  optU64(n: bigint | number | undefined): this {
    this.parts.push(lp(n === undefined ? new Uint8Array() : concat([Uint8Array.of(1), u64(n)])));
    return this;
  }

  /** An optional boolean: absent empty, present 0x01 ‖ one byte. */
  optBool(b: boolean | undefined): this {
    this.parts.push(
      lp(b === undefined ? new Uint8Array() : Uint8Array.of(1, b ? 1 : 0)),
    );
    return this;
  }

  /** The bytes to sign. */
  bytes(): Uint8Array {
    return concat(this.parts);
  }
}
