/**
 * Linking a device through the server's mailbox (docs/PROTOCOL.md §8.2), both sides:
 *
 * - the **new device** makes K_dev and a link code, puts a `guildhall.link-request.v1` on
 *   `<code>-request`, shows the code and K_dev's fingerprint, and waits on `<code>-cert`;
 * - the **existing device** (it holds K_id) takes the request, shows its fingerprint, and only
 *   when the person confirms they match signs a `DeviceCert` and puts `guildhall.link-cert.v1`
 *   (or `guildhall.link-refused.v1`) on `<code>-cert`;
 * - the new device accepts the cert only for the K_id the person said to expect, for its own key
 *   and device id, signed by that K_id, unexpired and not issued in the future.
 *
 * The mailbox is trusted with nothing but passing the messages on.
 */

import { fromHex, toHex, utf8 } from "./protocol/bytes";
import { fingerprint } from "./protocol/signer";
import { certValid, certify, type Cert } from "./identity";
import type { SeedSigner } from "./protocol/signer";
import type { Server } from "./api";

/** How far in the future a cert's issue time may be (the servers' default clock window). */
const CLOCK_SKEW_MS = 300_000;
/** How long either side waits for the other, in all. */
export const LINK_WAIT_MS = 10 * 60_000;

export interface LinkRequest {
  type: "guildhall.link-request.v1";
  device_key: string;
  device_id: string;
  device_name?: string;
}

/** A fresh link code: 16 random bytes as 32 lowercase hex characters. */
export function newLinkCode(): string {
  return toHex(crypto.getRandomValues(new Uint8Array(16)));
}

/** Whether `code` is a link code as the CLI and this client make them. */
export function isLinkCode(code: string): boolean {
  return /^[0-9a-f]{32}$/.test(code);
}

export function requestPayload(deviceKey: string, deviceId: string, deviceName: string): Uint8Array {
  const r: LinkRequest = { type: "guildhall.link-request.v1", device_key: deviceKey, device_id: deviceId, device_name: deviceName };
  return utf8(JSON.stringify(r));
}

/** Reads a link request; throws if it is not one. */
export function parseRequest(payload: Uint8Array): LinkRequest {
  const r = JSON.parse(new TextDecoder().decode(payload));
  if (r?.type !== "guildhall.link-request.v1") throw new Error("not a link request");
  if (typeof r.device_key !== "string" || !/^[0-9a-f]{64}$/.test(r.device_key)) throw new Error("link request: device_key is not a key");
  if (typeof r.device_id !== "string" || r.device_id.length < 1 || utf8(r.device_id).length > 64 || /[\x00-\x1f\x7f-\x9f]/.test(r.device_id)) {
    throw new Error("link request: device_id must be 1-64 bytes without control characters");
  }
  return r;
}

/** The fingerprint the person compares on both devices. */
export function requestFingerprint(r: LinkRequest): string {
  return fingerprint(fromHex(r.device_key));
}

/** The existing device's answer: K_id's cert for the requesting key. */
export async function certPayload(idKey: SeedSigner, r: LinkRequest, now: number): Promise<Uint8Array> {
  const cert = await certify(idKey, fromHex(r.device_key), r.device_id, now);
  return utf8(
    JSON.stringify({
      type: "guildhall.link-cert.v1",
      user_id: toHex(idKey.publicKey),
      device_cert: { pubkey: cert.pubkey, device_id: cert.deviceId, issued_at: Number(cert.issuedAt), expiry: Number(cert.expiry), signature: cert.signature },
    }),
  );
}

export function refusalPayload(): Uint8Array {
  return utf8(JSON.stringify({ type: "guildhall.link-refused.v1" }));
}

/** The new device's check of the answer (§8.2 step 3); returns the cert or throws why not. */
export function acceptAnswer(payload: Uint8Array, expectUserId: string, deviceKey: string, deviceId: string, now: number): Cert {
  const a = JSON.parse(new TextDecoder().decode(payload));
  if (a?.type === "guildhall.link-refused.v1") throw new Error("the other device refused the link (the fingerprints did not match, or it was declined)");
  if (a?.type !== "guildhall.link-cert.v1") throw new Error("the answer is not a link cert");
  if (a.user_id !== expectUserId) throw new Error("the cert is from another identity than the one you gave");
  const c = a.device_cert ?? {};
  if (c.pubkey !== deviceKey || c.device_id !== deviceId) throw new Error("the cert is for another device");
  if (!Number.isSafeInteger(c.issued_at) || !Number.isSafeInteger(c.expiry) || typeof c.signature !== "string") throw new Error("the cert is malformed");
  const cert: Cert = { pubkey: c.pubkey, deviceId: c.device_id, issuedAt: BigInt(c.issued_at), expiry: BigInt(c.expiry), signature: c.signature };
  if (c.issued_at > now + CLOCK_SKEW_MS) throw new Error("the cert is issued in the future");
  if (!certValid(cert, expectUserId, now)) throw new Error("the cert is not signed by that identity, or has expired");
  return cert;
}

/**
 * Takes one payload from `session`, long-polling until `deadline` (ms). Null when nothing came in
 * time or `signal` aborted.
 */
export async function take(server: Server, session: string, deadline: number, signal?: AbortSignal): Promise<Uint8Array | null> {
  while (Date.now() < deadline && !signal?.aborted) {
    const r = await server.api.syncMailbox({ sessionId: session, waitForData: true }, { timeoutMs: 70_000, signal });
    if (r.payload && r.payload.length) return r.payload;
  }
  return null;
}

export async function put(server: Server, session: string, payload: Uint8Array): Promise<void> {
  await server.api.syncMailbox({ sessionId: session, payload });
}
