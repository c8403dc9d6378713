// Every signed kind a client makes, checked against the vectors of docs/PROTOCOL.md (§7, §8.2,
// §12.4), read from the document itself so the two can't drift apart. Each vector's signing bytes
// must match byte for byte, and its signature must come out of both signers (noble and WebCrypto).

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import { fromHex, toHex } from "../src/protocol/bytes";
import * as kinds from "../src/protocol/kinds";
import { SeedSigner, WebCryptoSigner, fingerprint, verify } from "../src/protocol/signer";

const doc = readFileSync(new URL("../../docs/PROTOCOL.md", import.meta.url), "utf8");

interface Vector {
  label: string;
  signer: string;
  signingBytes: string;
  signature: string;
}

/** The ```vector blocks of the document, by label. */
function vectors(): Map<string, Vector> {
  const out = new Map<string, Vector>();
  for (const block of doc.matchAll(/```vector\n([\s\S]*?)```/g)) {
    const text = block[1];
    const label = /^label: (.+)$/m.exec(text)![1].trim();
    const signer = /^signer: (.+)$/m.exec(text)![1].trim();
    const hexAfter = (name: string) => {
      const m = new RegExp(`^${name}:\\n((?:  [0-9a-f]+\\n)+)`, "m").exec(text);
      assert.ok(m, `vector ${label}: no ${name}`);
      return m[1].replace(/\s+/g, "");
    };
    out.set(label, { label, signer, signingBytes: hexAfter("signing_bytes"), signature: hexAfter("signature") });
  }
  return out;
}

const seed = (byte: number) => new Uint8Array(32).fill(byte);
const K_ID = SeedSigner.fromSeed(seed(1));
const K_DEV = SeedSigner.fromSeed(seed(2));
const SERVER = SeedSigner.fromSeed(seed(3));
const SECOND = SeedSigner.fromSeed(seed(4));
const T = 1767225600000n;
const EXPIRY = 1798761600000n;

test("the §7 keys are what the document says", () => {
  assert.equal(toHex(K_ID.publicKey), "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c");
  assert.equal(toHex(K_DEV.publicKey), "8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394");
  assert.equal(toHex(SERVER.publicKey), "ed4928c628d1c2c6eae90338905995612959273a5c63f93636c14614ac8737d1");
  assert.equal(toHex(SECOND.publicKey), "ca93ac1705187071d67b83c7ff0efe8108e8ec4530575d7726879333dbdabe7c");
});

const all = vectors();
const moveSignature =
  "5f5dfe3055894383ca8e31a8d4de52e1ae17334a25a6ad9ee2cc395140682d6a9adb4bc4e210dd9894d394df7d90138d73543636cd39f3e9655764ea5fcc1605";

/** What this client builds for each label, with the §7 / §12.4 inputs, and who signs it. */
const built: Record<string, [Uint8Array, SeedSigner]> = {
  "device-cert": [
    kinds.deviceCertBytes({ idKey: K_ID.publicKey, deviceKey: K_DEV.publicKey, deviceId: "phone", issuedAt: T, expiry: EXPIRY }),
    K_ID,
  ],
  "id-proof": [kinds.idProofBytes({ audience: SERVER.publicKey, idKey: K_ID.publicKey, timestamp: T }), K_ID],
  register: [
    kinds.registerBytes({
      audience: SERVER.publicKey,
      idKey: K_ID.publicKey,
      deviceKey: K_DEV.publicKey,
      displayName: "Ada Lovelace",
      deviceName: "Phone",
      timestamp: T,
    }),
    K_DEV,
  ],
  "homeserver-move": [kinds.homeserverMoveBytes({ idKey: K_ID.publicKey, newHomeserver: "https://new.example", timestamp: T }), K_ID],
  login: [
    kinds.loginBytes({
      audience: SERVER.publicKey,
      idKey: K_ID.publicKey,
      deviceKey: K_DEV.publicKey,
      deviceName: undefined,
      newHomeserver: "https://new.example",
      migrationTimestamp: T,
      migrationSignature: moveSignature,
      migrationTargets: ["https://old.example", "https://other.example"],
      timestamp: T,
    }),
    K_DEV,
  ],
  "update-user": [
    kinds.updateUserBytes({
      idKey: K_ID.publicKey,
      deviceKey: K_DEV.publicKey,
      name: "Ada",
      avatarUrl: "",
      bio: "hi",
      isProfileSynced: true,
      timestamp: T,
    }),
    K_DEV,
  ],
  "update-user-v2": [
    kinds.updateUserV2Bytes({
      idKey: K_ID.publicKey,
      deviceKey: K_DEV.publicKey,
      pronouns: "she/her",
      bannerUrl: "",
      accentColor: "#ff8800",
      timestamp: T,
    }),
    K_DEV,
  ],
  "verify-user": [kinds.verifyUserBytes({ audience: SERVER.publicKey, idKey: K_ID.publicKey, timestamp: T }), K_ID],
  "join-invite": [
    kinds.joinInviteBytes({
      audience: SERVER.publicKey,
      idKey: K_ID.publicKey,
      deviceKey: K_DEV.publicKey,
      token: "0123456789abcdef",
      displayName: "Ada",
      avatarUrl: "",
      homeserverUrl: "https://home.example",
      timestamp: T,
    }),
    K_DEV,
  ],
  "dm-invite": [
    kinds.dmInviteBytes({
      audience: SECOND.publicKey,
      idKey: K_ID.publicKey,
      deviceKey: K_DEV.publicKey,
      target: SECOND.publicKey,
      token: "0123456789abcdef",
      guildId: "42",
      hostServerUrl: "https://a.example",
      timestamp: T,
    }),
    K_DEV,
  ],
  relationship: [
    kinds.relationshipBytes({
      audience: SECOND.publicKey,
      idKey: K_ID.publicKey,
      deviceKey: K_DEV.publicKey,
      other: SECOND.publicKey,
      action: "request",
      homeserverUrl: "https://a.example",
      timestamp: T,
    }),
    K_DEV,
  ],
  "homeserver-move-v2": [
    kinds.homeserverMoveV2Bytes({
      idKey: K_ID.publicKey,
      newHomeserver: "https://new.example",
      timestamp: T,
      sequence: 2,
      prev: new Uint8Array(32).fill(0xab),
    }),
    K_ID,
  ],
  "device-revocation": [kinds.deviceRevocationBytes({ idKey: K_ID.publicKey, deviceKey: K_DEV.publicKey, timestamp: T }), K_ID],
  "account-status": [kinds.accountStatusBytes({ idKey: K_ID.publicKey, status: "deleted", timestamp: T }), K_ID],
  // Verified, never signed, by the client: it accepts a pinned server's new key with it.
  "server-key-rotation": [
    kinds.serverKeyRotationBytes({ oldKey: SERVER.publicKey, newKey: SECOND.publicKey, newKeyValidUntil: EXPIRY, timestamp: T }),
    SERVER,
  ],
};

/** Kinds only nodes sign; the browser never makes them. */
const SERVER_KINDS = new Set(["s2s-request", "ban", "server-ban", "server-event"]);

test("every vector in the document is either a client kind checked here or a server's", () => {
  assert.ok(all.size >= 18, `found only ${all.size} vectors`);
  for (const label of all.keys()) {
    assert.ok(label in built || SERVER_KINDS.has(label), `vector ${label} is not checked by the web client's tests`);
  }
  for (const label of Object.keys(built)) assert.ok(all.has(label), `the document has no vector ${label}`);
});

for (const [label, [bytes, signer]] of Object.entries(built)) {
  test(`${label}: signing bytes and signature match the document`, async () => {
    const v = all.get(label)!;
    assert.equal(toHex(bytes), v.signingBytes);
    assert.equal(signer === K_ID ? "K_id" : signer === K_DEV ? "K_dev" : "server", v.signer);
    const sig = await signer.sign(bytes);
    assert.equal(toHex(sig), v.signature);
    assert.ok(verify(sig, bytes, signer.publicKey));
    // The same key as a non-extractable WebCrypto key gives the same signature.
    const web = await WebCryptoSigner.fromSeed(signer.seed);
    assert.equal(toHex(web.publicKey), toHex(signer.publicKey));
    assert.equal(toHex(await web.sign(bytes)), v.signature);
  });
}

test("the login vector embeds the homeserver-move vector's signature", () => {
  assert.equal(all.get("homeserver-move")!.signature, moveSignature);
});

test("flipping a bit of the bytes or the signature fails strict verification", async () => {
  const [bytes] = built["register"];
  const sig = await K_DEV.sign(bytes);
  const badBytes = Uint8Array.from(bytes);
  badBytes[20] ^= 1;
  assert.equal(verify(sig, badBytes, K_DEV.publicKey), false);
  const badSig = Uint8Array.from(sig);
  badSig[5] ^= 0x80;
  assert.equal(verify(badSig, bytes, K_DEV.publicKey), false);
});

test("optional fields: absent and present-empty sign differently", () => {
  const base = { idKey: K_ID.publicKey, deviceKey: K_DEV.publicKey, timestamp: T };
  const absent = kinds.updateUserBytes(base);
  const empty = kinds.updateUserBytes({ ...base, avatarUrl: "" });
  assert.notEqual(toHex(absent), toHex(empty));
});

test("§8.2: the fingerprint of the §7 K_dev", () => {
  assert.equal(fingerprint(K_DEV.publicKey), "6a38-03d5-f059-902a-1c6d");
  assert.ok(doc.includes("`6a38-03d5-f059-902a-1c6d`"));
});

test("hex is lowercase only", () => {
  assert.throws(() => fromHex("AB"));
  assert.deepEqual(fromHex("ab01"), Uint8Array.of(0xab, 1));
});
