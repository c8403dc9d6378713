/**
 * Ed25519 signers. A key is either a seed held in memory (`SeedSigner`, @noble/ed25519: K_id,
 * which the identity file must be able to carry) or a WebCrypto key pair whose private half is
 * non-extractable (`WebCryptoSigner`: K_dev where the browser supports Ed25519, so script can sign
 * with it but never read it out). Both give the same signatures for the same key (RFC 8032 is
 * deterministic), which the tests check.
 */

import * as ed from "@noble/ed25519";
import { sha256 as nobleSha256, sha512 } from "@noble/hashes/sha2.js";
import { concat, fromHex, toHex } from "./bytes";

ed.hashes.sha512 = sha512;

/** Something that signs with one ed25519 key. */
export interface Signer {
  /** The 32-byte public key. */
  readonly publicKey: Uint8Array;
  /** The 64-byte signature of `message`. */
  sign(message: Uint8Array): Promise<Uint8Array>;
}

/** A signer over a 32-byte seed kept in memory (RFC 8032 secret key). */
export class SeedSigner implements Signer {
  readonly publicKey: Uint8Array;

  private constructor(readonly seed: Uint8Array) {
    this.publicKey = ed.getPublicKey(seed);
  }

  static fromSeed(seed: Uint8Array): SeedSigner {
    if (seed.length !== 32) throw new Error("an ed25519 seed is 32 bytes");
    return new SeedSigner(Uint8Array.from(seed));
  }

  static fromSeedHex(hex: string): SeedSigner {
    return SeedSigner.fromSeed(fromHex(hex));
  }

  static generate(): SeedSigner {
    return new SeedSigner(crypto.getRandomValues(new Uint8Array(32)));
  }

  async sign(message: Uint8Array): Promise<Uint8Array> {
    return ed.sign(message, this.seed);
  }
}

/** PKCS#8 header of an Ed25519 private key (RFC 8410), followed by the 32-byte seed. */
const PKCS8_ED25519 = fromHex("302e020100300506032b657004220420");

/** A signer over a WebCrypto Ed25519 key pair. */
export class WebCryptoSigner implements Signer {
  private constructor(
    readonly privateKey: CryptoKey,
    readonly publicKey: Uint8Array,
  ) {}

  /** Whether this platform's WebCrypto signs with Ed25519. */
  static async supported(): Promise<boolean> {
    try {
      const pair = (await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"])) as CryptoKeyPair;
      const probe = new Uint8Array([1]);
      const sig = await crypto.subtle.sign({ name: "Ed25519" }, pair.privateKey, probe);
      return new Uint8Array(sig).length === 64;
    } catch {
      return false;
    }
  }

  /** A fresh key whose private half can't be exported. */
  static async generate(): Promise<WebCryptoSigner> {
    const pair = (await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"])) as CryptoKeyPair;
    const pub = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
    return new WebCryptoSigner(pair.privateKey, pub);
  }

  /** An existing seed made into a non-extractable key (importing a device key from a file). */
  static async fromSeed(seed: Uint8Array): Promise<WebCryptoSigner> {
    const privateKey = await crypto.subtle.importKey(
      "pkcs8",
      concat([PKCS8_ED25519, seed]).slice(),
      { name: "Ed25519" },
      false,
      ["sign"],
    );
    return new WebCryptoSigner(privateKey, SeedSigner.fromSeed(seed).publicKey);
  }

  /** A signer over a key pair read back from IndexedDB. */
  static fromStored(privateKey: CryptoKey, publicKey: Uint8Array): WebCryptoSigner {
    return new WebCryptoSigner(privateKey, publicKey);
  }

  async sign(message: Uint8Array): Promise<Uint8Array> {
    return new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, this.privateKey, message.slice()));
  }
}

/** Strict RFC 8032 verification (no ZIP-215 leniency), as the node verifies. */
export function verify(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean {
  try {
    return ed.verify(signature, message, publicKey, { zip215: false });
  } catch {
    return false;
  }
}

/** SHA-256. */
export function sha256(data: Uint8Array): Uint8Array {
  return nobleSha256(data);
}

/**
 * A device key's fingerprint (PROTOCOL.md §8.2): the first 10 bytes of SHA-256 of the raw key, as
 * lowercase hex in five groups of four joined by `-`.
 */
export function fingerprint(deviceKey: Uint8Array): string {
  const hex = toHex(sha256(deviceKey).slice(0, 10));
  return hex.match(/.{4}/g)!.join("-");
}
