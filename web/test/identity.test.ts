// Signed requests as whole messages, and the identity file both ways.

import { test } from "node:test";
import assert from "node:assert/strict";

import { fromHex, toHex } from "../src/protocol/bytes";
import * as kinds from "../src/protocol/kinds";
import { SeedSigner, WebCryptoSigner, verify } from "../src/protocol/signer";
import { Identity, certValid, certify } from "../src/identity";
import { exportIdentityFile, importIdentityFile } from "../src/identityfile";

const seed = (b: number) => new Uint8Array(32).fill(b);
const K_ID = SeedSigner.fromSeed(seed(1));
const K_DEV = SeedSigner.fromSeed(seed(2));
const SERVER = toHex(SeedSigner.fromSeed(seed(3)).publicKey);
const T = 1767225600000;
const EXPIRY = 1798761600000;
const CERT_SIG =
  "77ee08de2a75a1d2fe519c48cc57a1eee14e7e8aff3f897fd368acbe5743ce8511322f87dc11e25275833db91b91658e917ced3201c74bc659c6aecebb356804";

async function vectorIdentity(): Promise<Identity> {
  const cert = await certify(K_ID, K_DEV.publicKey, "phone", T);
  // certify() uses a year from now; the vector's expiry is fixed, so build the vector's cert.
  const vectorCert = { ...cert, expiry: BigInt(EXPIRY), signature: CERT_SIG };
  assert.ok(certValid(vectorCert, toHex(K_ID.publicKey), T));
  return new Identity(toHex(K_ID.publicKey), K_ID, K_DEV, vectorCert);
}

test("Register carries the id-proof and register signatures of the §7 vectors", async () => {
  const id = await vectorIdentity();
  const req = await id.register(SERVER, "Ada Lovelace", "Phone", T);
  assert.equal(
    req.idProof,
    "e41d0992659f228801f4ce3ff95c10202eeecf0f3dcb3cf8149a8bc1be245d84c1a3b1e3bba1acf0c6868a2a9683c974627d8361aa4c89c42973423968d11802",
  );
  assert.equal(
    toHex(req.signature),
    "9700bc1a665821658016fc723d2e8c2b1fc7af4e1dd6f99872cbc48219b6787134f106a0940737b48910725a679a303d2c1e3b0b8a0f7a61e14fd00992dec808",
  );
  assert.equal(req.publicKey, toHex(K_ID.publicKey));
  assert.equal(req.deviceCert?.signature, CERT_SIG);
  assert.equal(req.timestamp, BigInt(T));
});

test("JoinInvite carries the join-invite vector's signature", async () => {
  const id = await vectorIdentity();
  const req = await id.joinInvite(SERVER, "0123456789abcdef", "Ada", "https://home.example", T);
  assert.equal(
    toHex(req.signature),
    "1d58420a965c3bfc20a6a23476cdd084390bbc7d61c9ac95f686191ace005aa45084897604ca1c36351633b253a33270cd5343af02346565cdedb76ae4966f0e",
  );
  assert.equal(req.homeserverUrl, "https://home.example");
  assert.equal(req.avatarUrl, "");
});

test("UpdateUser v2 carries the update-user-v2 vector's signature and version 2", async () => {
  const id = await vectorIdentity();
  const req = await id.updateUser({ pronouns: "she/her", bannerUrl: "", accentColor: "#ff8800" }, T);
  assert.equal(req.signatureVersion, 2);
  assert.equal(req.name, undefined);
  assert.equal(
    toHex(req.signature),
    "a48c7e6c72a0aa0faeda0a974ea932fc2f23c32f7a232fc4b8e54be546da452d96191c9f88e01bb4c52e7cb7af10a998bfd8c0ef4486d128b2458d9986413204",
  );
});

test("DMInvite, DeviceRevocation, AccountStatus carry the vectors' signatures", async () => {
  const id = await vectorIdentity();
  const second = toHex(SeedSigner.fromSeed(seed(4)).publicKey);
  const dm = await id.dmInvite(second, { target: second, token: "0123456789abcdef", guildId: "42", hostServerUrl: "https://a.example" }, T);
  assert.equal(
    toHex(dm.signature),
    "1d36718bfc5aa2cc083e4e9c2a4e1d3e592ddfdd69697d5b680b92c3a5da39d50e7c8d7a0e11536b4b61e4a10b9172c66a51cd13c042ac52f0810af403b9ba0d",
  );
  assert.equal(dm.inviterPubkey, id.userId);
  const rev = await id.revokeDevice(toHex(K_DEV.publicKey), T);
  assert.equal(
    rev.signature,
    "eae537b6176ea72281adaa4c992688ec39b4e5b0e22fd2359989ea7692bcbf538bc2382f9e381ef717ea84407cfcabc284c8fff91f0ce4ef58696708a38bc50b",
  );
  const st = await id.accountStatus("deleted", T);
  assert.equal(st.status, 3);
  assert.equal(
    st.signature,
    "4fea99887b0e915c87cb816d60a0ef88dcf925307ae6ddb80e121e5a51a185592be15735d18c95e7cb5ee87a973d6e64d928a297bc2dd59d3ad6510f5a8cd408",
  );
  const rel = await id.relationship(second, { other: second, action: "request", homeserverUrl: "https://a.example" }, T);
  assert.equal(
    toHex(rel.signature),
    "12c5b25b30042f3fa93c156156649d59dee60fc2d066e352b0568f1f05bc5733a0ad68a5a20e96882d56ddfa34a8bb6ade6823a7cc37d732a36c0ae529c2a10e",
  );
});

test("Login without a move verifies under K_dev over the login kind", async () => {
  const id = await vectorIdentity();
  const req = await id.login(SERVER, "Browser", T);
  const bytes = kinds.loginBytes({
    audience: SERVER,
    idKey: id.userId,
    deviceKey: id.cert.pubkey,
    deviceName: "Browser",
    migrationTargets: [],
    timestamp: T,
  });
  assert.ok(verify(req.signature, bytes, K_DEV.publicKey));
  assert.equal(req.userId, id.userId);
  assert.equal(req.newHomeserver, undefined);
});

/** A file as `guildhall keygen` writes it for the §7 keys, with a session per server. */
const CLI_FILE = JSON.stringify({
  id_secret: "01".repeat(32),
  user_id: toHex(K_ID.publicKey),
  device_secret: "02".repeat(32),
  device_id: "phone",
  issued_at: T,
  expiry: EXPIRY,
  cert_signature: CERT_SIG,
  access_token: "a1",
  refresh_token: "r1",
  server: "http://b:7400",
  homeserver: "http://b:7400",
  sessions: [
    { server: "http://b:7400", access_token: "a1", refresh_token: "r1" },
    { server: "http://a:7400", access_token: "a2", refresh_token: "r2" },
  ],
});

test("importing a CLI file with id_secret makes a new browser device certified by K_id", async () => {
  const got = await importIdentityFile(CLI_FILE, T);
  assert.equal(got.identity.userId, toHex(K_ID.publicKey));
  assert.equal(got.homeserver, "http://b:7400");
  assert.deepEqual(got.servers, ["http://b:7400", "http://a:7400"]);
  assert.equal(got.sameDevice, false);
  assert.notEqual(got.identity.cert.pubkey, toHex(K_DEV.publicKey));
  assert.ok(got.identity.device instanceof WebCryptoSigner, "node's WebCrypto signs Ed25519, so K_dev is non-extractable");
  assert.ok(certValid(got.identity.cert, got.identity.userId, T));
});

test("importing a device-only file keeps its device key, as a non-extractable key", async () => {
  const file = JSON.parse(CLI_FILE);
  delete file.id_secret;
  const got = await importIdentityFile(JSON.stringify(file), T);
  assert.equal(got.identity.idKey, null);
  assert.equal(got.sameDevice, true);
  assert.equal(got.identity.cert.pubkey, toHex(K_DEV.publicKey));
  assert.equal(toHex(await got.identity.device.sign(Uint8Array.of(1))), toHex(await K_DEV.sign(Uint8Array.of(1))));
});

test("a file whose cert is not K_id's, or whose user_id disagrees, is refused", async () => {
  const bad = JSON.parse(CLI_FILE);
  bad.cert_signature = "00".repeat(64);
  await assert.rejects(importIdentityFile(JSON.stringify(bad), T), /device cert/);
  const other = JSON.parse(CLI_FILE);
  other.user_id = "ab".repeat(32);
  await assert.rejects(importIdentityFile(JSON.stringify(other), T), /user_id/);
  await assert.rejects(importIdentityFile("{", T), /not JSON/);
});

test("export certifies a fresh CLI device and leaves sessions out; it imports back", async () => {
  const id = await Identity.create(T);
  const file = await exportIdentityFile(id, "http://b:7400", T);
  assert.equal(file.id_secret, toHex(id.idKey!.seed));
  assert.match(file.device_id, /^cli-[0-9a-f]{8}$/);
  assert.notEqual(toHex(SeedSigner.fromSeed(fromHex(file.device_secret)).publicKey), id.cert.pubkey);
  assert.equal(file.sessions, undefined);
  assert.equal(file.access_token, undefined);
  const back = await importIdentityFile(JSON.stringify(file), T + 1);
  assert.equal(back.identity.userId, id.userId);
  assert.equal(back.homeserver, "http://b:7400");
});

test("a device-only identity with a non-extractable key can't be exported", async () => {
  const dev = await WebCryptoSigner.generate();
  const cert = await certify(K_ID, dev.publicKey, "web-1", T);
  const id = new Identity(toHex(K_ID.publicKey), null, dev, cert);
  await assert.rejects(exportIdentityFile(id, "http://b:7400", T), /can't read out/);
});

import * as link from "../src/link";

test("§8.2 device linking: a cert for the request is accepted, anything else is refused", async () => {
  const newDev = SeedSigner.fromSeed(seed(9));
  const req = link.parseRequest(link.requestPayload(toHex(newDev.publicKey), "laptop", "Laptop"));
  assert.equal(link.requestFingerprint(link.parseRequest(link.requestPayload(toHex(K_DEV.publicKey), "x", ""))), "6a38-03d5-f059-902a-1c6d");
  const answer = await link.certPayload(K_ID, req, T);
  const cert = link.acceptAnswer(answer, toHex(K_ID.publicKey), toHex(newDev.publicKey), "laptop", T + 1000);
  assert.equal(cert.deviceId, "laptop");
  assert.ok(certValid(cert, toHex(K_ID.publicKey), T));
  // Another identity than expected, another device, a refusal, a forged signature.
  const other = toHex(SeedSigner.fromSeed(seed(8)).publicKey);
  assert.throws(() => link.acceptAnswer(answer, other, toHex(newDev.publicKey), "laptop", T), /another identity/);
  assert.throws(() => link.acceptAnswer(answer, toHex(K_ID.publicKey), toHex(K_DEV.publicKey), "laptop", T), /another device/);
  assert.throws(() => link.acceptAnswer(link.refusalPayload(), toHex(K_ID.publicKey), toHex(newDev.publicKey), "laptop", T), /refused/);
  const forged = JSON.parse(new TextDecoder().decode(answer));
  forged.device_cert.signature = "00".repeat(64);
  assert.throws(() => link.acceptAnswer(new TextEncoder().encode(JSON.stringify(forged)), toHex(K_ID.publicKey), toHex(newDev.publicKey), "laptop", T), /not signed/);
  assert.throws(() => link.acceptAnswer(answer, toHex(K_ID.publicKey), toHex(newDev.publicKey), "laptop", T - 400_000), /future/);
  assert.throws(() => link.parseRequest(new TextEncoder().encode(JSON.stringify({ type: "guildhall.link-request.v1", device_key: "zz", device_id: "a" }))), /device_key/);
  assert.ok(link.isLinkCode(link.newLinkCode()));
});
