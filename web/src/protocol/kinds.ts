/**
 * Every signed kind a client makes (docs/PROTOCOL.md §3, §12, §14.4), each as a function from its
 * fields to the signing bytes. Fields go in the order of the kind's table; the comments name the
 * signer. The node's own kinds (`s2s-request`, `ban`, …) are not here: a browser never signs them.
 */

import { Envelope, type KeyInput } from "./envelope";

type U64 = bigint | number;

/** `device-cert` (K_id): K_id certifies a device key for `deviceId`. */
export function deviceCertBytes(f: {
  idKey: KeyInput;
  deviceKey: KeyInput;
  deviceId: string;
  issuedAt: U64;
  expiry: U64;
}): Uint8Array {
  return new Envelope("device-cert")
    .key(f.idKey)
    .key(f.deviceKey)
    .string(f.deviceId)
    .u64(f.issuedAt)
    .u64(f.expiry)
    .bytes();
}

/** `id-proof` (K_id): possession of K_id, for one server. */
export function idProofBytes(f: { audience: KeyInput; idKey: KeyInput; timestamp: U64 }): Uint8Array {
  return new Envelope("id-proof").key(f.audience).key(f.idKey).u64(f.timestamp).bytes();
}

/** `register` (K_dev). */
export function registerBytes(f: {
  audience: KeyInput;
  idKey: KeyInput;
  deviceKey: KeyInput;
  displayName: string;
  deviceName: string | undefined;
  timestamp: U64;
}): Uint8Array {
  return new Envelope("register")
    .key(f.audience)
    .key(f.idKey)
    .key(f.deviceKey)
    .string(f.displayName)
    .optString(f.deviceName)
    .u64(f.timestamp)
    .bytes();
}

/** `homeserver-move` (K_id): superseded by v2, kept because the `login` vector embeds one. */
export function homeserverMoveBytes(f: {
  idKey: KeyInput;
  newHomeserver: string;
  timestamp: U64;
}): Uint8Array {
  return new Envelope("homeserver-move")
    .key(f.idKey)
    .string(f.newHomeserver)
    .u64(f.timestamp)
    .bytes();
}

/** `homeserver-move-v2` (K_id), §12.1: one link of the user's chain of moves. */
export function homeserverMoveV2Bytes(f: {
  idKey: KeyInput;
  newHomeserver: string;
  timestamp: U64;
  sequence: U64;
  prev: Uint8Array;
}): Uint8Array {
  return new Envelope("homeserver-move-v2")
    .key(f.idKey)
    .string(f.newHomeserver)
    .u64(f.timestamp)
    .u64(f.sequence)
    .raw(f.prev)
    .bytes();
}

/** `login` (K_dev); covers the migration fields so they can't be stripped or swapped. */
export function loginBytes(f: {
  audience: KeyInput;
  idKey: KeyInput;
  deviceKey: KeyInput;
  deviceName?: string;
  newHomeserver?: string;
  migrationTimestamp?: U64;
  migrationSignature?: string;
  migrationTargets: readonly string[];
  timestamp: U64;
}): Uint8Array {
  return new Envelope("login")
    .key(f.audience)
    .key(f.idKey)
    .key(f.deviceKey)
    .optString(f.deviceName)
    .optString(f.newHomeserver)
    .optU64(f.migrationTimestamp)
    .optString(f.migrationSignature)
    .strings(f.migrationTargets)
    .u64(f.timestamp)
    .bytes();
}

/** The profile fields of `update-user` (fields 3-9); absent means "leave unchanged". */
export interface ProfileFields {
  name?: string;
  avatarUrl?: string;
  /** The `PresenceStatus` enum's number. */
  presencePreference?: number;
  bio?: string;
  guildOrder?: string;
  isProfileSynced?: boolean;
  ircName?: string;
}

/** The fields `update-user-v2` adds (10-12). */
export interface ProfileFieldsV2 extends ProfileFields {
  pronouns?: string;
  bannerUrl?: string;
  accentColor?: string;
}

function profileEnvelope(label: string, f: ProfileFields & { idKey: KeyInput; deviceKey: KeyInput }): Envelope {
  return new Envelope(label)
    .key(f.idKey)
    .key(f.deviceKey)
    .optString(f.name)
    .optString(f.avatarUrl)
    .optU64(f.presencePreference)
    .optString(f.bio)
    .optString(f.guildOrder)
    .optBool(f.isProfileSynced)
    .optString(f.ircName);
}

/** `update-user` (K_dev): signature_version 0 or 1. Not bound to an audience. */
export function updateUserBytes(
  f: ProfileFields & { idKey: KeyInput; deviceKey: KeyInput; timestamp: U64 },
): Uint8Array {
  return profileEnvelope("update-user", f).u64(f.timestamp).bytes();
}

/** `update-user-v2` (K_dev): signature_version 2, with pronouns, banner and accent colour. */
export function updateUserV2Bytes(
  f: ProfileFieldsV2 & { idKey: KeyInput; deviceKey: KeyInput; timestamp: U64 },
): Uint8Array {
  return profileEnvelope("update-user-v2", f)
    .optString(f.pronouns)
    .optString(f.bannerUrl)
    .optString(f.accentColor)
    .u64(f.timestamp)
    .bytes();
}

/** `verify-user` (K_id): the challenge a homeserver checks before vouching. */
export function verifyUserBytes(f: { audience: KeyInput; idKey: KeyInput; timestamp: U64 }): Uint8Array {
  return new Envelope("verify-user").key(f.audience).key(f.idKey).u64(f.timestamp).bytes();
}

/** `join-invite` (K_dev), audience the guild's host; `homeserverUrl` empty for a local join. */
export function joinInviteBytes(f: {
  audience: KeyInput;
  idKey: KeyInput;
  deviceKey: KeyInput;
  token: string;
  displayName: string;
  avatarUrl: string;
  homeserverUrl: string;
  timestamp: U64;
}): Uint8Array {
  return new Envelope("join-invite")
    .key(f.audience)
    .key(f.idKey)
    .key(f.deviceKey)
    .string(f.token)
    .string(f.displayName)
    .string(f.avatarUrl)
    .string(f.homeserverUrl)
    .u64(f.timestamp)
    .bytes();
}

/** `dm-invite` (K_dev), audience the target's homeserver. */
export function dmInviteBytes(f: {
  audience: KeyInput;
  idKey: KeyInput;
  deviceKey: KeyInput;
  target: KeyInput;
  token: string;
  guildId: string;
  hostServerUrl: string;
  timestamp: U64;
}): Uint8Array {
  return new Envelope("dm-invite")
    .key(f.audience)
    .key(f.idKey)
    .key(f.deviceKey)
    .key(f.target)
    .string(f.token)
    .string(f.guildId)
    .string(f.hostServerUrl)
    .u64(f.timestamp)
    .bytes();
}

/** `relationship` (K_dev), §14.4, audience the other user's homeserver. */
export function relationshipBytes(f: {
  audience: KeyInput;
  idKey: KeyInput;
  deviceKey: KeyInput;
  other: KeyInput;
  action: "request" | "accept" | "remove";
  homeserverUrl: string;
  timestamp: U64;
}): Uint8Array {
  return new Envelope("relationship")
    .key(f.audience)
    .key(f.idKey)
    .key(f.deviceKey)
    .key(f.other)
    .string(f.action)
    .string(f.homeserverUrl)
    .u64(f.timestamp)
    .bytes();
}

/** `device-revocation` (K_id), §12.2. */
export function deviceRevocationBytes(f: { idKey: KeyInput; deviceKey: KeyInput; timestamp: U64 }): Uint8Array {
  return new Envelope("device-revocation").key(f.idKey).key(f.deviceKey).u64(f.timestamp).bytes();
}

/** The account statuses of §12.5 by `AccountStatus` number. */
export const ACCOUNT_STATUS_NAMES: Record<number, string> = { 1: "enabled", 2: "disabled", 3: "deleted" };

/** `account-status` (K_id), §12.5. */
export function accountStatusBytes(f: { idKey: KeyInput; status: "enabled" | "disabled" | "deleted"; timestamp: U64 }): Uint8Array {
  return new Envelope("account-status").key(f.idKey).string(f.status).u64(f.timestamp).bytes();
}

/**
 * `server-key-rotation` (signed by a server's old key). A node signs it; the client only verifies
 * it, to accept a server's new key after pinning the old one (§10).
 */
export function serverKeyRotationBytes(f: { oldKey: KeyInput; newKey: KeyInput; newKeyValidUntil: U64; timestamp: U64 }): Uint8Array {
  return new Envelope("server-key-rotation")
    .key(f.oldKey)
    .key(f.newKey)
    .u64(f.newKeyValidUntil)
    .u64(f.timestamp)
    .bytes();
}
