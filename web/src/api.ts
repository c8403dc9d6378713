/**
 * One server as the client talks to it: a gRPC-web client for `guildhall.v1.GuildHall` and the
 * session held there (PROTOCOL.md §5). Every non-public call carries `authorization: Bearer`; when
 * the server refuses the access token, the session is renewed once (`Refresh`, else a fresh
 * `Login` with the device key) and the call sent again.
 *
 * Refresh tokens rotate, and presenting a spent one ends the whole login (§5), so two tabs must
 * never both spend the same one: renewals of one server's session are serialised across tabs with
 * a Web Lock, and a tab first takes up a pair another tab saved meanwhile.
 */

import { ConnectError, Code, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { GuildHall, type ServerInfoResponse } from "./gen/guildhall/v1/guildhall_pb";
import { fromHex } from "./protocol/bytes";
import { serverKeyRotationBytes } from "./protocol/kinds";
import { verify } from "./protocol/signer";
import type { Session } from "./store";

export type Api = Client<typeof GuildHall>;

/** Methods that take no bearer token (§5); their requests are signed or need nothing. */
export const PUBLIC_METHODS = new Set([
  "Register",
  "Login",
  "Refresh",
  "HelloGrpc",
  "Ping",
  "GetServerInfo",
  "GetServerSettings",
  "PreviewInvite",
  "JoinInvite",
  "SyncMailbox",
  "SetAccountStatus",
  "ClaimIrcAccount",
]);

/** A server address as the client keys it: `scheme://host[:port]`, no trailing slash or path. */
export function normalizeUrl(input: string): string {
  let s = input.trim();
  if (!/^https?:\/\//i.test(s)) s = `http://${s}`;
  const u = new URL(s);
  if (u.protocol !== "http:" && u.protocol !== "https:") throw new Error(`${input}: not an http(s) address`);
  return `${u.protocol}//${u.host}`;
}

/** Whether two addresses name the same server. */
export function sameServer(a: string, b: string): boolean {
  try {
    return normalizeUrl(a) === normalizeUrl(b);
  } catch {
    return false;
  }
}

/** What a `Server` needs from the account that owns it. */
export interface ServerHooks {
  /** The session of `url` as last saved (another tab may have renewed it). */
  latest(url: string): Promise<Session | null>;
  /** The server's session changed (or ended: `session` null); save it. */
  sessionChanged(server: Server): Promise<void>;
  /** A new session by signing in again with the device key, or null if this server refuses. */
  relogin(server: Server): Promise<Session | null>;
  /** The key pinned for `url`, if any, and pinning a new one. */
  pinned(url: string): string | undefined;
  pin(url: string, key: string): Promise<void>;
  /** The server at `url` calls itself `canonical` (another spelling of the same server). */
  learned(url: string, canonical: string): void;
}

/** A call's error as one line for a person: the server's message, or what went wrong. */
export function errorText(e: unknown): string {
  if (e instanceof ConnectError) {
    const what: Partial<Record<Code, string>> = {
      [Code.Unavailable]: "could not be reached",
      [Code.PermissionDenied]: "not allowed",
      [Code.NotFound]: "not found",
      [Code.ResourceExhausted]: "too many requests",
      [Code.Unauthenticated]: "not signed in",
      [Code.DeadlineExceeded]: "took too long",
    };
    const msg = e.rawMessage || what[e.code] || Code[e.code];
    return msg;
  }
  return e instanceof Error ? e.message : String(e);
}

async function withLock<T>(name: string, run: () => Promise<T>): Promise<T> {
  const locks = (globalThis.navigator as Navigator | undefined)?.locks;
  if (!locks) return run();
  return locks.request(name, run) as Promise<T>;
}

/** One server and the session on it. */
export class Server {
  readonly url: string;
  readonly api: Api;
  session: Session | null = null;
  private info: ServerInfoResponse | null = null;
  private renewing: Promise<boolean> | null = null;

  constructor(
    url: string,
    private readonly hooks: ServerHooks,
  ) {
    this.url = normalizeUrl(url);
    const transport = createGrpcWebTransport({
      baseUrl: this.url,
      interceptors: [this.auth],
      defaultTimeoutMs: 30_000,
    });
    this.api = createClient(GuildHall, transport);
  }

  private auth: Interceptor = (next) => async (req) => {
    if (PUBLIC_METHODS.has(req.method.name) || !this.session) return next(req);
    const token = this.session.accessToken;
    req.header.set("authorization", `Bearer ${token}`);
    // A stream's refusal arrives while it is read; the event stream renews and reconnects itself.
    if (req.stream) return next(req);
    try {
      return await next(req);
    } catch (e) {
      if (!(e instanceof ConnectError) || e.code !== Code.Unauthenticated) throw e;
      if (!(await this.renew(token))) throw e;
      req.header.set("authorization", `Bearer ${this.session!.accessToken}`);
      return next(req);
    }
  };

  /**
   * Renews the session after `staleToken` was refused. True when there is a new one to use.
   * Concurrent callers share one renewal.
   */
  renew(staleToken: string): Promise<boolean> {
    if (this.session && this.session.accessToken !== staleToken) return Promise.resolve(true);
    this.renewing ??= withLock(`guildhall-session ${this.url}`, () => this.renewLocked(staleToken)).finally(() => {
      this.renewing = null;
    });
    return this.renewing;
  }

  private async renewLocked(staleToken: string): Promise<boolean> {
    const latest = await this.hooks.latest(this.url);
    if (latest && latest.accessToken !== staleToken) {
      this.session = latest;
      return true;
    }
    const refreshToken = this.session?.refreshToken;
    if (refreshToken) {
      try {
        const r = await this.api.refresh({ refreshToken });
        this.session = { server: this.url, accessToken: r.token, refreshToken: r.refreshToken };
        await this.hooks.sessionChanged(this);
        return true;
      } catch (e) {
        // Only a refusal ends the session; a network failure leaves it for the next try.
        if (!(e instanceof ConnectError) || e.code !== Code.Unauthenticated) return false;
      }
    }
    let fresh: Session | null = null;
    try {
      fresh = await this.hooks.relogin(this);
    } catch {
      fresh = null;
    }
    this.session = fresh;
    await this.hooks.sessionChanged(this);
    return fresh !== null;
  }

  /**
   * The server's `GetServerInfo`, with its key checked against the one pinned on first use: a
   * different key is taken only with a `server-key-rotation` from the pinned key (§10).
   */
  async serverInfo(): Promise<ServerInfoResponse> {
    if (this.info) return this.info;
    const info = await this.api.getServerInfo({});
    const key = info.serverPubkey;
    if (!/^[0-9a-f]{64}$/.test(key)) throw new Error(`${this.url} answered no server key`);
    const pinned = this.hooks.pinned(this.url);
    if (pinned && pinned !== key) {
      const rot = info.keyRotation;
      const ok =
        rot !== undefined &&
        rot.oldKey === pinned &&
        rot.newKey === key &&
        verify(
          fromHex(rot.signature),
          serverKeyRotationBytes({ oldKey: rot.oldKey, newKey: rot.newKey, newKeyValidUntil: rot.newKeyValidUntil, timestamp: rot.timestamp }),
          fromHex(pinned),
        );
      if (!ok) throw new Error(`the key of ${this.url} changed without a signed rotation; not trusting it`);
    }
    if (pinned !== key) await this.hooks.pin(this.url, key);
    this.info = info;
    if (info.canonicalAddress) {
      try {
        this.hooks.learned(this.url, normalizeUrl(info.canonicalAddress));
      } catch {
        // A canonical address that is not a URL names nothing else.
      }
    }
    return info;
  }

  /** The audience of requests signed for this server: its key. */
  async key(): Promise<string> {
    return (await this.serverInfo()).serverPubkey;
  }

  /** The server's canonical address (what `homeserver_url` and DM invites name). */
  async canonical(): Promise<string> {
    const c = (await this.serverInfo()).canonicalAddress;
    return c ? c.replace(/\/+$/, "") : this.url;
  }
}

/** A server reached with no account (public calls only: previews, the mailbox). */
export function bareServer(url: string): Server {
  return new Server(url, {
    latest: async () => null,
    sessionChanged: async () => {},
    relogin: async () => null,
    pinned: () => undefined,
    pin: async () => {},
    learned: () => {},
  });
}
