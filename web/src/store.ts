/**
 * What the client keeps in IndexedDB (database "guildhall", one record): the keys, the
 * homeserver, one session per server (PROTOCOL.md §11: the homeserver and each host of a guild
 * joined remotely), the server keys met so far (pinned on first use, §6 step 2) and where each
 * event stream left off. A WebCrypto `CryptoKey` is stored as itself (structured clone), so a
 * non-extractable K_dev stays non-extractable at rest too.
 */

import { toHex } from "./protocol/bytes";
import { SeedSigner, WebCryptoSigner } from "./protocol/signer";
import { Identity, type Cert } from "./identity";

/** A session on one server. */
export interface Session {
  server: string;
  accessToken: string;
  refreshToken: string;
}

/** The stored state. */
export interface Saved {
  identity: Identity;
  homeserver: string;
  displayName: string;
  sessions: Session[];
  serverKeys: Record<string, string>;
  lastEventIds: Record<string, string>;
  /** A server's canonical address → the address this client dials it at, where they differ. */
  aliases: Record<string, string>;
}

type StoredDevice = { kind: "webcrypto"; privateKey: CryptoKey; publicKey: Uint8Array } | { kind: "seed"; seed: Uint8Array };

interface Record_ {
  userId: string;
  idSeed: string | null;
  device: StoredDevice;
  cert: Cert;
  homeserver: string;
  displayName: string;
  sessions: Session[];
  serverKeys: Record<string, string>;
  lastEventIds: Record<string, string>;
  aliases?: Record<string, string>;
}

const DB = "guildhall";
const STORE = "state";
const KEY = "current";

function open(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function tx<T>(mode: IDBTransactionMode, run: (s: IDBObjectStore) => IDBRequest<T>): Promise<T> {
  const db = await open();
  try {
    return await new Promise<T>((resolve, reject) => {
      const t = db.transaction(STORE, mode);
      const req = run(t.objectStore(STORE));
      t.oncomplete = () => resolve(req.result);
      t.onerror = () => reject(t.error);
      t.onabort = () => reject(t.error);
    });
  } finally {
    db.close();
  }
}

/** The saved state, or null when this browser has no identity yet. */
export async function load(): Promise<Saved | null> {
  const r = (await tx("readonly", (s) => s.get(KEY))) as Record_ | undefined;
  if (!r) return null;
  const idKey = r.idSeed ? SeedSigner.fromSeedHex(r.idSeed) : null;
  const device =
    r.device.kind === "webcrypto"
      ? WebCryptoSigner.fromStored(r.device.privateKey, r.device.publicKey)
      : SeedSigner.fromSeed(r.device.seed);
  return {
    identity: new Identity(r.userId, idKey, device, r.cert),
    homeserver: r.homeserver,
    displayName: r.displayName,
    sessions: r.sessions,
    serverKeys: r.serverKeys,
    lastEventIds: r.lastEventIds ?? {},
    aliases: r.aliases ?? {},
  };
}

/** Saves the whole state. */
export async function save(s: Saved): Promise<void> {
  const d = s.identity.device;
  const device: StoredDevice =
    d instanceof WebCryptoSigner
      ? { kind: "webcrypto", privateKey: d.privateKey, publicKey: d.publicKey }
      : { kind: "seed", seed: (d as SeedSigner).seed };
  const r: Record_ = {
    userId: s.identity.userId,
    idSeed: s.identity.idKey ? toHex(s.identity.idKey.seed) : null,
    device,
    cert: s.identity.cert,
    homeserver: s.homeserver,
    displayName: s.displayName,
    sessions: s.sessions,
    serverKeys: s.serverKeys,
    lastEventIds: s.lastEventIds,
    aliases: s.aliases,
  };
  await tx("readwrite", (st) => st.put(r, KEY));
}

/** Forgets everything (sign out of this browser). */
export async function clear(): Promise<void> {
  await tx("readwrite", (s) => s.delete(KEY));
}

