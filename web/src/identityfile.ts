/**
 * The CLI's identity file (src/client.rs `IdentityFile` plus the CLI's `homeserver` and
 * `sessions`, docs/CLI.md), read and written so one identity works in both clients.
 *
 * Export: a non-extractable device key can't be written out, and handing the file this browser's
 * own sessions would have two clients spend one refresh token (PROTOCOL.md §5: the second spend
 * ends the login for both). So a full identity is exported with K_id and a *fresh* device key that
 * K_id certifies for the file: the CLI is a device of its own, logs in by itself, and nothing it
 * does disturbs this browser. Sessions are left out; `homeserver` is kept.
 *
 * Import: a file with `id_secret` makes a new device for this browser, certified by the file's
 * K_id (the file's device stays the CLI's). A device-only file (no `id_secret`) has nothing to
 * certify with, so its device key is taken as this browser's, made non-extractable where
 * WebCrypto allows; it then logs in, as that device, on its homeserver and every server the file
 * has a session on.
 */

import { fromHex, toHex } from "./protocol/bytes";
import { SeedSigner, WebCryptoSigner, type Signer } from "./protocol/signer";
import { Identity, certValid, certify, newDeviceId, newDeviceKey, type Cert } from "./identity";

/** One saved session, as the CLI writes it. */
export interface FileSession {
  server: string;
  access_token: string;
  refresh_token: string;
}

/** The JSON of an identity file. */
export interface IdentityFileJson {
  id_secret?: string;
  user_id?: string;
  device_secret: string;
  device_id: string;
  issued_at: number;
  expiry: number;
  cert_signature: string;
  access_token?: string;
  refresh_token?: string;
  server?: string;
  homeserver?: string;
  sessions?: FileSession[];
}

/** What an imported file gives this browser. */
export interface Imported {
  identity: Identity;
  /** The user's homeserver (the file's `homeserver`, else its legacy `server`). */
  homeserver: string;
  /** Servers the file holds sessions on, the homeserver included: where to log in again. */
  servers: string[];
  /** Whether the device key is the file's own (device-only file) rather than a new one. */
  sameDevice: boolean;
}

function need(cond: unknown, what: string): asserts cond {
  if (!cond) throw new Error(`identity file: ${what}`);
}

/** Reads an identity file's text, checking that its fields describe one identity. */
export async function importIdentityFile(text: string, now: number): Promise<Imported> {
  let json: IdentityFileJson;
  try {
    json = JSON.parse(text);
  } catch {
    throw new Error("identity file: not JSON");
  }
  need(typeof json === "object" && json, "not a JSON object");
  need(typeof json.device_secret === "string" && /^[0-9a-f]{64}$/.test(json.device_secret), "device_secret is not 64 hex characters");
  need(typeof json.device_id === "string" && json.device_id.length > 0, "device_id is missing");
  need(Number.isSafeInteger(json.issued_at) && Number.isSafeInteger(json.expiry), "issued_at / expiry are not numbers");
  need(typeof json.cert_signature === "string" && /^[0-9a-f]{128}$/.test(json.cert_signature), "cert_signature is not 128 hex characters");
  const idKey = json.id_secret ? SeedSigner.fromSeedHex(json.id_secret) : null;
  const userId = idKey ? toHex(idKey.publicKey) : json.user_id ?? "";
  need(/^[0-9a-f]{64}$/.test(userId), "has neither id_secret nor user_id");
  need(!json.user_id || json.user_id === userId, "user_id is not the public key of id_secret");
  const fileDevice = SeedSigner.fromSeedHex(json.device_secret);
  const fileCert: Cert = {
    pubkey: toHex(fileDevice.publicKey),
    deviceId: json.device_id,
    issuedAt: BigInt(json.issued_at),
    expiry: BigInt(json.expiry),
    signature: json.cert_signature,
  };
  need(certValid(fileCert, userId, now), "its device cert is not K_id's valid signature (or it expired)");

  const homeserver = json.homeserver || json.server || "";
  const servers = new Set<string>();
  if (homeserver) servers.add(homeserver);
  for (const s of json.sessions ?? []) if (s.server) servers.add(s.server);

  let identity: Identity;
  if (idKey) {
    const device = await newDeviceKey();
    identity = new Identity(userId, idKey, device, await certify(idKey, device.publicKey, newDeviceId(), now));
  } else {
    const seed = fromHex(json.device_secret);
    const device: Signer = (await WebCryptoSigner.supported()) ? await WebCryptoSigner.fromSeed(seed) : fileDevice;
    identity = new Identity(userId, null, device, fileCert);
  }
  return { identity, homeserver, servers: [...servers], sameDevice: !idKey };
}

/**
 * The identity as a file for the CLI. A full identity gets a fresh device key certified by K_id
 * (`device_id` "cli-…"); a device-only one can be exported only if its key is a seed.
 */
export async function exportIdentityFile(identity: Identity, homeserver: string, now: number): Promise<IdentityFileJson> {
  let seed: Uint8Array;
  let cert: Cert;
  if (identity.idKey) {
    const device = SeedSigner.generate();
    seed = device.seed;
    cert = await certify(identity.idKey, device.publicKey, newDeviceId("cli"), now);
  } else if (identity.device instanceof SeedSigner) {
    seed = identity.device.seed;
    cert = identity.cert;
  } else {
    throw new Error(
      "this browser holds only a device key it can't read out (non-extractable) and no identity key to certify another; export from the device that has your identity key",
    );
  }
  const file: IdentityFileJson = {
    user_id: identity.userId,
    device_secret: toHex(seed),
    device_id: cert.deviceId,
    issued_at: Number(cert.issuedAt),
    expiry: Number(cert.expiry),
    cert_signature: cert.signature,
    homeserver,
  };
  if (identity.idKey) file.id_secret = toHex(identity.idKey.seed);
  return file;
}
