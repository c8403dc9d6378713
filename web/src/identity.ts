/**
 * The user's keys in this browser and every signed request they make.
 *
 * K_id (the identity key) is a seed held by `SeedSigner`: the identity file must be able to carry
 * it, so it can't be a non-extractable WebCrypto key. K_dev (this browser's device key) is a
 * non-extractable WebCrypto key where the browser signs Ed25519, else a noble seed. K_id
 * certifies K_dev (`device-cert`). A device-only identity (linked by the mailbox, §8, or imported
 * from a file without `id_secret`) has no K_id secret: it logs in and joins but can't register,
 * link devices or revoke them.
 *
 * Every request that proves who the user is gets built here, from `protocol/kinds.ts`, exactly as
 * docs/PROTOCOL.md lists its fields.
 */

import { create } from "@bufbuild/protobuf";
import {
  AccountStatus,
  AccountStatusStatementSchema,
  DMInviteSchema,
  DeviceCertSchema,
  DeviceRevocationSchema,
  JoinInviteRequestSchema,
  LoginRequestSchema,
  RegisterRequestSchema,
  RelationshipStatementSchema,
  UpdateUserRequestSchema,
  type AccountStatusStatement,
  type DMInvite,
  type DeviceCert,
  type DeviceRevocation,
  type JoinInviteRequest,
  type LoginRequest,
  type RegisterRequest,
  type RelationshipStatement,
  type UpdateUserRequest,
} from "./gen/guildhall/v1/guildhall_pb";
import { fromHex, keyFromHex, toHex } from "./protocol/bytes";
import * as kinds from "./protocol/kinds";
import { SeedSigner, WebCryptoSigner, verify, type Signer } from "./protocol/signer";

/** How long a device cert lasts: a year, as the CLI's (PROTOCOL.md §3 advises a year or less). */
export const CERT_LIFETIME_MS = 365 * 24 * 60 * 60 * 1000;

/** A device cert as the protocol spells it (keys and signature in hex). */
export interface Cert {
  pubkey: string;
  deviceId: string;
  issuedAt: bigint;
  expiry: bigint;
  signature: string;
}

/** The cert as the `DeviceCert` message. */
export function certProto(cert: Cert): DeviceCert {
  return create(DeviceCertSchema, { ...cert });
}

/** K_id's `device-cert` for `deviceKey`, valid for `CERT_LIFETIME_MS` from `now`. */
export async function certify(idKey: SeedSigner, deviceKey: Uint8Array, deviceId: string, now: number): Promise<Cert> {
  const issuedAt = BigInt(now);
  const expiry = BigInt(now + CERT_LIFETIME_MS);
  const bytes = kinds.deviceCertBytes({ idKey: idKey.publicKey, deviceKey, deviceId, issuedAt, expiry });
  return { pubkey: toHex(deviceKey), deviceId, issuedAt, expiry, signature: toHex(await idKey.sign(bytes)) };
}

/** Whether `cert` is K_id `userId`'s valid signature over its fields (and not expired at `now`). */
export function certValid(cert: Cert, userId: string, now: number): boolean {
  if (cert.expiry <= cert.issuedAt || cert.expiry <= BigInt(now)) return false;
  try {
    const bytes = kinds.deviceCertBytes({
      idKey: userId,
      deviceKey: cert.pubkey,
      deviceId: cert.deviceId,
      issuedAt: cert.issuedAt,
      expiry: cert.expiry,
    });
    return verify(fromHex(cert.signature), bytes, keyFromHex(userId));
  } catch {
    return false;
  }
}

/** A device key made the best way this browser allows. */
export async function newDeviceKey(): Promise<Signer> {
  if (await WebCryptoSigner.supported()) return WebCryptoSigner.generate();
  return SeedSigner.generate();
}

/** A device id for this browser: "web-" and 8 random hex characters (1-64 bytes, §3). */
export function newDeviceId(prefix = "web"): string {
  return `${prefix}-${toHex(crypto.getRandomValues(new Uint8Array(4)))}`;
}

/** One user's keys on this device. */
export class Identity {
  constructor(
    /** Hex of K_id: the user's id. */
    readonly userId: string,
    /** K_id's secret, absent on a device-only identity. */
    readonly idKey: SeedSigner | null,
    /** This device's key. */
    readonly device: Signer,
    /** K_id's cert for it. */
    readonly cert: Cert,
  ) {
    if (idKey && toHex(idKey.publicKey) !== userId) throw new Error("user_id is not K_id's public key");
    if (toHex(device.publicKey) !== cert.pubkey) throw new Error("the cert is for another device key");
  }

  /** A new user: fresh K_id and K_dev, and the cert. */
  static async create(now: number): Promise<Identity> {
    const idKey = SeedSigner.generate();
    const device = await newDeviceKey();
    const cert = await certify(idKey, device.publicKey, newDeviceId(), now);
    return new Identity(toHex(idKey.publicKey), idKey, device, cert);
  }

  get deviceKeyHex(): string {
    return this.cert.pubkey;
  }

  /** `Register` on the server whose key is `audience` (§6 step 3). */
  async register(audience: string, displayName: string, deviceName: string | undefined, now: number): Promise<RegisterRequest> {
    if (!this.idKey) throw new Error("this device has no identity key: register from the device that has it");
    const timestamp = BigInt(now);
    const idProof = await this.idKey.sign(kinds.idProofBytes({ audience, idKey: this.userId, timestamp }));
    const signature = await this.device.sign(
      kinds.registerBytes({ audience, idKey: this.userId, deviceKey: this.cert.pubkey, displayName, deviceName, timestamp }),
    );
    return create(RegisterRequestSchema, {
      displayName,
      publicKey: this.userId,
      deviceCert: certProto(this.cert),
      idProof: toHex(idProof),
      deviceName,
      signature,
      timestamp,
    });
  }

  /** `Login` (no move), carrying `user_id` so a server new to this device accepts the cert. */
  async login(audience: string, deviceName: string | undefined, now: number): Promise<LoginRequest> {
    const timestamp = BigInt(now);
    const signature = await this.device.sign(
      kinds.loginBytes({ audience, idKey: this.userId, deviceKey: this.cert.pubkey, deviceName, migrationTargets: [], timestamp }),
    );
    return create(LoginRequestSchema, {
      deviceCert: certProto(this.cert),
      signature,
      timestamp,
      deviceName,
      userId: this.userId,
    });
  }

  /** `JoinInvite` at the host whose key is `audience`; `homeserverUrl` empty when it is home. */
  async joinInvite(
    audience: string,
    token: string,
    displayName: string,
    homeserverUrl: string,
    now: number,
  ): Promise<JoinInviteRequest> {
    const timestamp = BigInt(now);
    const avatarUrl = "";
    const signature = await this.device.sign(
      kinds.joinInviteBytes({
        audience,
        idKey: this.userId,
        deviceKey: this.cert.pubkey,
        token,
        displayName,
        avatarUrl,
        homeserverUrl,
        timestamp,
      }),
    );
    return create(JoinInviteRequestSchema, {
      token,
      publicKey: this.userId,
      deviceCert: certProto(this.cert),
      signature,
      timestamp,
      displayName,
      avatarUrl,
      homeserverUrl,
    });
  }

  /** A signed `UpdateUser`, always `update-user-v2` (signature_version 2). */
  async updateUser(fields: kinds.ProfileFieldsV2, now: number): Promise<UpdateUserRequest> {
    const timestamp = BigInt(now);
    const signature = await this.device.sign(
      kinds.updateUserV2Bytes({ ...fields, idKey: this.userId, deviceKey: this.cert.pubkey, timestamp }),
    );
    return create(UpdateUserRequestSchema, {
      ...fields,
      deviceCert: certProto(this.cert),
      timestamp,
      signature,
      signatureVersion: 2,
    });
  }

  /** A signed `DMInvite` for the target's homeserver `audience` (§14.1 step 2). */
  async dmInvite(
    audience: string,
    f: { target: string; token: string; guildId: string; hostServerUrl: string },
    now: number,
  ): Promise<DMInvite> {
    const timestamp = BigInt(now);
    const signature = await this.device.sign(
      kinds.dmInviteBytes({ audience, idKey: this.userId, deviceKey: this.cert.pubkey, ...f, timestamp }),
    );
    return create(DMInviteSchema, {
      token: f.token,
      inviterId: this.userId,
      guildId: f.guildId,
      hostServerUrl: f.hostServerUrl,
      timestamp,
      signature,
      inviterPubkey: this.userId,
      deviceCert: certProto(this.cert),
      targetUserId: f.target,
    });
  }

  /** A signed `RelationshipStatement` for the other user's homeserver `audience` (§14.4). */
  async relationship(
    audience: string,
    f: { other: string; action: "request" | "accept" | "remove"; homeserverUrl: string },
    now: number,
  ): Promise<RelationshipStatement> {
    const timestamp = BigInt(now);
    const signature = await this.device.sign(
      kinds.relationshipBytes({ audience, idKey: this.userId, deviceKey: this.cert.pubkey, ...f, timestamp }),
    );
    return create(RelationshipStatementSchema, {
      userId: this.userId,
      otherUserId: f.other,
      action: f.action,
      homeserverUrl: f.homeserverUrl,
      timestamp,
      deviceCert: certProto(this.cert),
      signature,
    });
  }

  /** K_id's `DeviceRevocation` of `deviceKey` (§12.2). */
  async revokeDevice(deviceKey: string, now: number): Promise<DeviceRevocation> {
    if (!this.idKey) throw new Error("only the device with the identity key can revoke devices");
    const timestamp = BigInt(now);
    const signature = await this.idKey.sign(kinds.deviceRevocationBytes({ idKey: this.userId, deviceKey, timestamp }));
    return create(DeviceRevocationSchema, { userId: this.userId, devicePubkey: deviceKey, timestamp, signature: toHex(signature) });
  }

  /** K_id's `AccountStatusStatement` (§12.5). */
  async accountStatus(status: "enabled" | "disabled" | "deleted", now: number): Promise<AccountStatusStatement> {
    if (!this.idKey) throw new Error("only the device with the identity key can change the account's status");
    const timestamp = BigInt(now);
    const signature = await this.idKey.sign(kinds.accountStatusBytes({ idKey: this.userId, status, timestamp }));
    const number = { enabled: AccountStatus.ENABLED, disabled: AccountStatus.DISABLED, deleted: AccountStatus.DELETED }[status];
    return create(AccountStatusStatementSchema, { userId: this.userId, status: number, timestamp, signature: toHex(signature) });
  }
}
