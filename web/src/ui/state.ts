/**
 * What the client knows, per server: guilds with their channels, members and roles; the loaded
 * part of each channel's history; users by id; presence. Guilds and channels are keyed by server
 * and id together, since two nodes number theirs independently.
 */

import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { Channel, Folder, Guild, GuildMemberSummary, Message, Role, User } from "../gen/guildhall/v1/guildhall_pb";
import { PresenceStatus } from "../gen/guildhall/v1/guildhall_pb";
import type { Server } from "../api";

export interface GuildView {
  key: string;
  server: Server;
  guild: Guild;
  channels: Channel[];
  /** The guild's channel folders (channels name theirs in `folder_id`). */
  folders: Folder[];
  members: Map<string, GuildMemberSummary>;
  roles: Role[];
  perms: Set<string>;
  membersLoaded: boolean;
}

export interface ChannelView {
  key: string;
  guildKey: string;
  server: Server;
  channel: Channel;
  /** Loaded messages by id. */
  msgs: Map<string, Message>;
  /** Their ids, oldest first. */
  order: string[];
  /** The cursor for the next older page ("" once the start is reached). */
  cursor: string;
  hasMore: boolean;
  loaded: boolean;
  loading: boolean;
  /** Who is typing, until when (ms). */
  typing: Map<string, number>;
}

export function guildKey(server: Server, guildId: string): string {
  return `${server.url}|g${guildId}`;
}

export function channelKey(server: Server, channelId: string): string {
  return `${server.url}|c${channelId}`;
}

/** Message and channel ids are decimal u64s; compare them as numbers. */
export function idLess(a: string, b: string): boolean {
  if (a.length !== b.length) return a.length < b.length;
  return a < b;
}

export function createdMs(m: Message): number {
  return m.createdAt ? timestampMs(m.createdAt) : 0;
}

/** Inserts or replaces `m` in `cv`, keeping `order` sorted. Returns whether it was new. */
export function putMessage(cv: ChannelView, m: Message): boolean {
  const fresh = !cv.msgs.has(m.id);
  cv.msgs.set(m.id, m);
  if (fresh) {
    let i = cv.order.length;
    while (i > 0 && idLess(m.id, cv.order[i - 1])) i--;
    cv.order.splice(i, 0, m.id);
  }
  return fresh;
}

export function removeMessage(cv: ChannelView, id: string): void {
  if (!cv.msgs.delete(id)) return;
  const i = cv.order.indexOf(id);
  if (i >= 0) cv.order.splice(i, 1);
}

/** The name to show for a user: their guild nickname, their name, or a short id. */
export function displayName(users: Map<string, User>, gv: GuildView | undefined, userId: string, fallback = ""): string {
  const nick = gv?.members.get(userId)?.nick;
  if (nick) return nick;
  const u = users.get(userId) ?? gv?.members.get(userId)?.user;
  if (u?.name) return u.name;
  return fallback || `${userId.slice(0, 8)}…`;
}

/** A message's text with mentions as `@Name` (for quotes, search results and editing); fills `names` (label → id) if given. */
export function plainText(text: string, users: Map<string, User>, gv: GuildView | undefined, names?: Map<string, string>): string {
  return text.replace(/<@([0-9a-f]{64})>/g, (_, id: string) => {
    const label = `@${displayName(users, gv, id)}`;
    names?.set(label, id);
    return label;
  });
}

export function presenceLabel(s: PresenceStatus | undefined): string {
  switch (s) {
    case PresenceStatus.ONLINE:
      return "online";
    case PresenceStatus.BUSY:
      return "busy";
    default:
      return "offline";
  }
}

/** Read markers: the last message id read per channel, in localStorage (per browser). */
export const readMarks = {
  get(cv: { server: Server; channel: Channel }): string {
    return localStorage.getItem(`gh-read ${cv.server.url} ${cv.channel.id}`) ?? "";
  },
  set(server: Server, channelId: string, id: string): void {
    const k = `gh-read ${server.url} ${channelId}`;
    const old = localStorage.getItem(k) ?? "";
    if (!old || idLess(old, id)) localStorage.setItem(k, id);
  },
};

export function unread(server: Server, ch: Channel): boolean {
  if (!ch.latestMessageId) return false;
  const read = readMarks.get({ server, channel: ch });
  return !read || idLess(read, ch.latestMessageId);
}
