/**
 * The signed-in user of this browser: their identity, homeserver and the servers they hold a
 * session on (the homeserver, and each host of a guild joined from it, PROTOCOL.md §11). Saves
 * every change to IndexedDB at once, so a reload, or another tab, picks up where this left off.
 */

import { ConnectError, Code } from "@connectrpc/connect";
import type { JoinInviteResponse } from "./gen/guildhall/v1/guildhall_pb";
import { Identity } from "./identity";
import type { Imported } from "./identityfile";
import { Server, normalizeUrl, sameServer, type ServerHooks } from "./api";
import * as store from "./store";
import type { Saved, Session } from "./store";

/** The name this browser gives its device at the servers. */
export function deviceName(): string {
  const ua = globalThis.navigator?.userAgent ?? "";
  const browser = /Firefox\//.test(ua) ? "Firefox" : /Edg\//.test(ua) ? "Edge" : /Chrom/.test(ua) ? "Chromium" : /Safari\//.test(ua) ? "Safari" : "Browser";
  return `${browser} (web)`;
}

/** A server that answered the signed request made for it, as a proto session. */
function sessionOf(server: string, r: { token: string; refreshToken: string }): Session {
  return { server: normalizeUrl(server), accessToken: r.token, refreshToken: r.refreshToken };
}

export class Account implements ServerHooks {
  private readonly servers = new Map<string, Server>();

  private constructor(public saved: Saved) {}

  /** The account saved in this browser, if any. */
  static async load(): Promise<Account | null> {
    const saved = await store.load();
    return saved ? new Account(saved) : null;
  }

  private static blank(identity: Identity, homeserver: string, displayName: string): Account {
    return new Account({ identity, homeserver: normalizeUrl(homeserver), displayName, sessions: [], serverKeys: {}, lastEventIds: {}, aliases: {} });
  }

  /** A new identity, registered on `homeserver` (§6). */
  static async register(homeserver: string, displayName: string, registrationToken: string): Promise<Account> {
    const identity = await Identity.create(Date.now());
    const account = Account.blank(identity, homeserver, displayName.trim());
    const home = account.home();
    const req = await identity.register(await home.key(), displayName, deviceName(), Date.now());
    req.registrationToken = registrationToken;
    const r = await home.api.register(req);
    account.saved.displayName = r.user?.name ?? displayName;
    account.setSession(sessionOf(home.url, r));
    await account.persist();
    return account;
  }

  /**
   * A new identity that registers by joining `host`'s guild: `JoinInvite` signs a user new to the
   * server in (§3 join-invite), and the host becomes their homeserver.
   */
  static async registerByJoin(host: string, token: string, displayName: string, registrationToken: string): Promise<{ account: Account; joined: JoinInviteResponse }> {
    const identity = await Identity.create(Date.now());
    const account = Account.blank(identity, host, displayName.trim());
    const server = account.home();
    const req = await identity.joinInvite(await server.key(), token, displayName, "", Date.now());
    req.registrationToken = registrationToken;
    const joined = await server.api.joinInvite(req);
    account.setSession(sessionOf(server.url, joined));
    await account.persist();
    return { account, joined };
  }

  /** The account of an imported identity file: signs in at its homeserver and its other servers. */
  static async fromImport(imported: Imported, fallbackHome: string): Promise<{ account: Account; notes: string[] }> {
    const account = Account.blank(imported.identity, imported.homeserver || fallbackHome, "");
    const notes: string[] = [];
    await account.login(account.saved.homeserver);
    for (const url of imported.servers) {
      if (sameServer(url, account.saved.homeserver)) continue;
      try {
        await account.login(url);
      } catch (e) {
        notes.push(`${url}: ${e instanceof Error ? e.message : String(e)} (open an invite of a guild there to join from this browser)`);
      }
    }
    await account.refreshName();
    await account.persist();
    return { account, notes };
  }

  /** The account of a device just linked by the mailbox (§8.2): logs in at the homeserver. */
  static async linked(identity: Identity, homeserver: string): Promise<Account> {
    const account = Account.blank(identity, homeserver, "");
    await account.login(homeserver);
    await account.refreshName();
    await account.persist();
    return account;
  }

  get identity(): Identity {
    return this.saved.identity;
  }

  get userId(): string {
    return this.saved.identity.userId;
  }

  /**
   * The client for `url` (made once per server). A server's canonical address, when it differs
   * from the address this client dials it at, names the same client.
   */
  server(url: string): Server {
    const given = normalizeUrl(url);
    const key = this.saved.aliases[given] ?? given;
    let s = this.servers.get(key);
    if (!s) {
      s = new Server(key, this);
      s.session = this.saved.sessions.find((x) => sameServer(x.server, key)) ?? null;
      this.servers.set(key, s);
    }
    return s;
  }

  home(): Server {
    return this.server(this.saved.homeserver);
  }

  /** Every server this account holds a session on, the homeserver first. */
  sessionServers(): Server[] {
    const urls = [this.saved.homeserver, ...this.saved.sessions.map((s) => s.server)];
    const out: Server[] = [];
    for (const u of urls) {
      const s = this.server(u);
      if (s.session && !out.includes(s)) out.push(s);
    }
    return out;
  }

  private setSession(session: Session): void {
    this.saved.sessions = this.saved.sessions.filter((s) => !sameServer(s.server, session.server));
    this.saved.sessions.push(session);
    this.server(session.server).session = session;
  }

  async persist(): Promise<void> {
    await store.save(this.saved);
  }

  /** `Login` on `url` with this device (§6 step 4). */
  async login(url: string): Promise<void> {
    const server = this.server(url);
    const r = await server.api.login(await this.identity.login(await server.key(), deviceName(), Date.now()));
    if (sameServer(url, this.saved.homeserver) && r.user) this.saved.displayName = r.user.name;
    this.setSession(sessionOf(server.url, r));
    await this.persist();
  }

  /** Takes the display name the homeserver has for the user. */
  async refreshName(): Promise<void> {
    const data = await this.home().api.getMyData({});
    if (data.user) this.saved.displayName = data.user.name;
  }

  /**
   * Joins a guild with an invite of `host`: at the homeserver a local join, elsewhere a remote
   * join that names the homeserver, which vouches for the user (§11.1).
   */
  async join(host: string, token: string): Promise<JoinInviteResponse> {
    const server = this.server(host);
    const home = this.home();
    const remote = !sameServer(server.url, home.url);
    const homeserverUrl = remote ? await home.canonical() : "";
    const req = await this.identity.joinInvite(await server.key(), token, this.saved.displayName, homeserverUrl, Date.now());
    const joined = await server.api.joinInvite(req);
    this.setSession(sessionOf(server.url, joined));
    await this.persist();
    return joined;
  }

  /** Forgets this browser's account (the keys too: export the identity first). */
  async signOut(): Promise<void> {
    await store.clear();
  }

  // ServerHooks

  async latest(url: string): Promise<Session | null> {
    const saved = await store.load();
    if (!saved || saved.identity.userId !== this.userId) return null;
    return saved.sessions.find((s) => sameServer(s.server, url)) ?? null;
  }

  async sessionChanged(server: Server): Promise<void> {
    this.saved.sessions = this.saved.sessions.filter((s) => !sameServer(s.server, server.url));
    if (server.session) this.saved.sessions.push(server.session);
    await this.persist();
  }

  async relogin(server: Server): Promise<Session | null> {
    try {
      const r = await server.api.login(await this.identity.login(await server.key(), deviceName(), Date.now()));
      return sessionOf(server.url, r);
    } catch (e) {
      if (e instanceof ConnectError && e.code !== Code.Unavailable) return null;
      throw e;
    }
  }

  learned(url: string, canonical: string): void {
    if (canonical === url || this.saved.aliases[canonical] === url) return;
    // The first address a server was reached at stays the one dialled.
    if (this.servers.has(canonical) && canonical !== url) return;
    this.saved.aliases[canonical] = url;
    void this.persist();
  }

  pinned(url: string): string | undefined {
    return this.saved.serverKeys[normalizeUrl(url)];
  }

  async pin(url: string, key: string): Promise<void> {
    this.saved.serverKeys[normalizeUrl(url)] = key;
    await this.persist();
  }
}
