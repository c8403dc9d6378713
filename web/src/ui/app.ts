/**
 * The signed-in client: the guild and channel lists, live events from every server the user has a
 * session on, and the chat pane (`chat.ts`). Dialogs for guilds, members, profile and devices are
 * in `panels.ts`. Both get the app as a `Shell` (`shell.ts`) and never import this file.
 *
 * At phone width only one pane shows at a time (`data-view` on <body>: "nav", "chat",
 * "members"); the header's buttons move between them.
 */

import { ConnectError, Code } from "@connectrpc/connect";
import type { Channel, Guild, Message, StreamResponse, User } from "../gen/guildhall/v1/guildhall_pb";
import { PresenceStatus } from "../gen/guildhall/v1/guildhall_pb";
import type { Account } from "../account";
import { errorText, sameServer, type Server } from "../api";
import { EventStream, type StreamState } from "../events";
import * as channels from "./channels";
import { ChatPane } from "./chat";
import { h, fill, toast } from "./dom";
import * as panels from "./panels";
import type { Shell } from "./shell";
import { channelKey, createdMs, guildKey, putMessage, removeMessage, unread, type ChannelView, type GuildView } from "./state";

export class App implements Shell {
  readonly guilds = new Map<string, GuildView>();
  readonly channels = new Map<string, ChannelView>();
  readonly users = new Map<string, User>();
  readonly presence = new Map<string, PresenceStatus>();
  readonly streams = new Map<string, EventStream>();
  readonly streamState = new Map<string, { state: StreamState; detail: string }>();
  current: { guild: string | null; channel: string | null } = { guild: null, channel: null };
  /** DM invites waiting for this user at their homeserver (the "DM invites" button shows it). */
  dmInvitesWaiting = 0;
  /** When (server time) each (channel, user) last sent a message, to drop typing notices that arrive late. */
  private readonly lastSent = new Map<string, number>();

  readonly nav = h("nav", { class: "nav", "aria-label": "Guilds and channels" });
  readonly main = h("main", { class: "main", id: "main" });
  readonly side = h("aside", { class: "side", "aria-label": "Members" });
  readonly status = h("div", { class: "status", role: "status", "aria-live": "polite" });
  readonly chat: ChatPane;

  constructor(readonly account: Account) {
    this.chat = new ChatPane(this, this.main);
    this.users.set(account.userId, { id: account.userId, name: account.saved.displayName } as User);
  }

  /** Shows the client and connects to every server with a session. */
  async start(root: HTMLElement, invite: { host: string; token: string } | null): Promise<void> {
    document.body.dataset.view = "nav";
    fill(root, h("div", { class: "app" }, this.nav, this.main, this.side), this.status);
    this.chat.renderEmpty();
    this.renderNav();
    for (const server of this.account.sessionServers()) this.connect(server);
    // Learn each server's canonical address (the name other servers and DM invites use for it).
    await Promise.all(this.account.sessionServers().map((s) => s.serverInfo().catch(() => undefined)));
    await Promise.all(this.account.sessionServers().map((s) => this.loadServer(s)));
    void this.account.home().api.signalOnline({}).catch(() => undefined);
    void this.countDmInvites();
    void this.account
      .refreshName()
      .then(() => this.account.persist())
      .then(() => this.renderNav())
      .catch(() => undefined);
    window.addEventListener("online", () => this.streams.forEach((s) => s.retryNow()));
    if (invite) await panels.openInvite(this, invite.host, invite.token);
    else this.openFirst();
  }

  /** Opens the stream of `server` (once). */
  connect(server: Server): void {
    if (this.streams.has(server.url)) return;
    const last = this.account.saved.lastEventIds[server.url];
    const stream = new EventStream(server, last ? BigInt(last) : null, {
      event: (s, ev) => this.onEvent(s, ev),
      gap: (s) => void this.loadServer(s).then(() => this.chat.reload()),
      state: (s, state, detail) => {
        this.streamState.set(s.url, { state, detail });
        this.renderStatus();
      },
      handled: (s, id) => this.rememberEvent(s, id),
    });
    this.streams.set(server.url, stream);
    stream.start();
  }

  private saveTimer = 0;
  private rememberEvent(server: Server, id: string): void {
    this.account.saved.lastEventIds[server.url] = id;
    if (!this.saveTimer) {
      this.saveTimer = window.setTimeout(() => {
        this.saveTimer = 0;
        void this.account.persist();
      }, 500);
    }
  }

  private renderStatus(): void {
    const bad = [...this.streamState.entries()].filter(([, v]) => v.state !== "live" && v.state !== "connecting");
    fill(
      this.status,
      bad.map(([url, v]) =>
        h("span", {}, v.state === "signed-out" ? `Signed out of ${url}: ${v.detail}` : `Reconnecting to ${url}… ${v.detail}`),
      ),
    );
    this.status.hidden = bad.length === 0;
  }

  /** Lists the guilds of `server` with their channels. */
  async loadServer(server: Server): Promise<void> {
    try {
      const { guilds } = await server.api.listGuilds({});
      const keep = new Set<string>();
      for (const g of guilds) {
        keep.add(this.addGuild(server, g).key);
      }
      for (const [k, gv] of this.guilds) if (gv.server === server && !keep.has(k)) this.guilds.delete(k);
      await Promise.all(guilds.map((g) => this.loadChannels(this.guilds.get(guildKey(server, g.id))!)));
    } catch (e) {
      toast(`${server.url}: ${errorText(e)}`, "error");
    }
    this.renderNav();
  }

  addGuild(server: Server, g: Guild): GuildView {
    const key = guildKey(server, g.id);
    let gv = this.guilds.get(key);
    if (gv) gv.guild = g;
    else {
      gv = { key, server, guild: g, channels: [], folders: [], members: new Map(), roles: [], perms: new Set(), membersLoaded: false };
      this.guilds.set(key, gv);
    }
    return gv;
  }

  async loadChannels(gv: GuildView): Promise<void> {
    const [{ channels }, perms, folders] = await Promise.all([
      gv.server.api.listChannels({ guildId: gv.guild.id }),
      gv.server.api.getMyPermissions({ guildId: gv.guild.id }).catch(() => ({ permissions: [] as string[] })),
      gv.guild.isDm ? { folders: [] } : gv.server.api.listFolders({ guildId: gv.guild.id }).catch(() => ({ folders: [] })),
    ]);
    gv.channels = channels.sort((a, b) => a.position - b.position);
    gv.folders = folders.folders.sort((a, b) => a.position - b.position);
    gv.perms = new Set(perms.permissions);
    for (const c of channels) this.channelView(gv, c).channel = c;
  }

  async loadMembers(gv: GuildView): Promise<void> {
    const all = [];
    for (let offset = 0; offset < 10_000; ) {
      const page = await gv.server.api.listGuildMembers({ guildId: gv.guild.id, limit: 100, offset });
      all.push(...page.members);
      offset += page.members.length;
      if (page.members.length === 0 || offset >= page.total) break;
    }
    gv.members = new Map(all.map((m) => [m.user!.id, m]));
    for (const m of all) if (m.user) this.users.set(m.user.id, m.user);
    gv.roles = (await gv.server.api.listRoles({ guildId: gv.guild.id })).roles;
    gv.membersLoaded = true;
    const ids = all.map((m) => m.user!.id).slice(0, 500);
    if (ids.length) {
      const p = await gv.server.api.getPresence({ userIds: ids }).catch(() => null);
      for (const x of p?.presence ?? []) this.presence.set(x.userId, x.status);
    }
  }

  putChannel(gv: GuildView, c: Channel): void {
    gv.channels = [...gv.channels.filter((x) => x.id !== c.id), c].sort((a, b) => a.position - b.position);
    this.channelView(gv, c).channel = c;
    // A folder made since the guild was listed (folders have no events): list the folders again.
    if (c.folderId && !gv.folders.some((f) => f.id === c.folderId)) void this.loadChannels(gv).then(() => this.renderNav());
    this.renderNav();
    if (this.current.channel === channelKey(gv.server, c.id)) this.chat.renderHeader();
    // A thread's name shows on its first message in the parent channel.
    else if (c.isThread && this.current.channel === channelKey(gv.server, c.parentChannelId)) this.chat.refreshNames();
  }

  channelView(gv: GuildView, c: Channel): ChannelView {
    const key = channelKey(gv.server, c.id);
    let cv = this.channels.get(key);
    if (!cv) {
      cv = { key, guildKey: gv.key, server: gv.server, channel: c, msgs: new Map(), order: [], cursor: "", hasMore: true, loaded: false, loading: false, typing: new Map() };
      this.channels.set(key, cv);
    }
    return cv;
  }

  private openFirst(): void {
    const first = [...this.guilds.values()].find((g) => !g.guild.isDm && g.channels.length);
    if (first) this.openChannel(channelKey(first.server, first.channels[0].id));
  }

  openGuild(key: string): void {
    const gv = this.guilds.get(key);
    if (!gv) return;
    const last = localStorage.getItem(`gh-last ${key}`);
    const c = gv.channels.find((x) => x.id === last) ?? gv.channels[0];
    if (c) this.openChannel(channelKey(gv.server, c.id));
    else {
      this.current = { guild: key, channel: null };
      this.renderNav();
      this.chat.renderEmpty();
    }
  }

  openChannel(key: string, at?: string): void {
    const cv = this.channels.get(key);
    if (!cv) return;
    this.current = { guild: cv.guildKey, channel: key };
    localStorage.setItem(`gh-last ${cv.guildKey}`, cv.channel.id);
    document.body.dataset.view = "chat";
    this.renderNav();
    void this.chat.open(cv).then(() => (at ? this.chat.reveal(at) : undefined));
    void this.renderMembers();
  }

  currentGuild(): GuildView | undefined {
    return this.current.guild ? this.guilds.get(this.current.guild) : undefined;
  }

  // ---- navigation pane ----

  renderNav(): void {
    const gs = [...this.guilds.values()];
    const rooms = gs.filter((g) => !g.guild.isDm).sort((a, b) => a.guild.name.localeCompare(b.guild.name));
    const dms = gs.filter((g) => g.guild.isDm);
    const me = this.account.saved;
    const cur = this.currentGuild();
    const guildItem = (gv: GuildView) => {
      const isCur = gv.key === this.current.guild;
      const hasUnread = gv.channels.some((c) => unread(gv.server, c));
      const remote = !sameServer(gv.server.url, me.homeserver);
      return h(
        "li",
        {},
        h(
          "button",
          {
            type: "button",
            class: `guild${isCur ? " current" : ""}${hasUnread ? " unread" : ""}`,
            "aria-current": isCur ? "true" : null,
            "data-guild": gv.guild.name,
            onclick: () => this.openGuild(gv.key),
          },
          h("span", { class: "name" }, gv.guild.isDm ? this.dmName(gv) : gv.guild.name),
          remote ? h("small", { class: "host" }, new URL(gv.server.url).host) : null,
          hasUnread ? h("span", { class: "dot", "aria-label": "unread" }) : null,
        ),
      );
    };
    fill(
      this.nav,
      h(
        "header",
        { class: "whoami" },
        h("button", { type: "button", class: "link", onclick: () => panels.openProfile(this), "aria-label": `Your profile and settings (${me.displayName})` }, me.displayName || "You"),
        h("small", {}, new URL(me.homeserver).host),
      ),
      h("h2", { id: "guilds-h" }, "Guilds"),
      h("ul", { class: "guilds", "aria-labelledby": "guilds-h" }, rooms.map(guildItem)),
      h(
        "div",
        { class: "row" },
        h("button", { type: "button", onclick: () => panels.createGuild(this) }, "New guild"),
        h("button", { type: "button", onclick: () => panels.joinByLink(this) }, "Join with invite"),
      ),
      h("h2", { id: "dms-h" }, "Direct messages"),
      h("ul", { class: "guilds", "aria-labelledby": "dms-h" }, dms.map(guildItem)),
      h("div", { class: "row" }, h("button", { type: "button", onclick: () => panels.dmInvites(this) }, this.dmInvitesWaiting ? `DM invites (${this.dmInvitesWaiting})` : "DM invites"), h("button", { type: "button", onclick: () => panels.newDm(this) }, "New DM")),
      cur ? this.channelList(cur) : null,
    );
  }

  dmName(gv: GuildView): string {
    const others = [...gv.members.keys()].filter((id) => id !== this.account.userId);
    if (others.length) return others.map((id) => this.users.get(id)?.name ?? id.slice(0, 8)).join(", ");
    return gv.guild.name || "DM";
  }

  private channelList(gv: GuildView): HTMLElement {
    const canManage = gv.perms.has("channels.manage");
    return h(
      "section",
      { class: "channels", "aria-labelledby": "channels-h" },
      h(
        "header",
        {},
        h("h2", { id: "channels-h" }, gv.guild.isDm ? this.dmName(gv) : gv.guild.name),
        gv.guild.isDm ? null : h("button", { type: "button", class: "icon", "aria-label": "Guild settings", onclick: () => panels.guildSettings(this, gv) }, "⚙"),
      ),
      this.channelTree(gv),
      canManage ? h("button", { type: "button", onclick: () => channels.createChannel(this, gv) }, "New channel") : null,
      canManage && !gv.guild.isDm ? h("button", { type: "button", onclick: () => channels.createFolder(this, gv) }, "New folder") : null,
      gv.guild.isDm ? null : h("button", { type: "button", onclick: () => panels.createInvite(this, gv) }, "Invite people"),
    );
  }

  /** Counts the DM invites waiting at the homeserver. */
  async countDmInvites(): Promise<void> {
    try {
      const { invites } = await this.account.home().api.listDMInvites({});
      this.dmInvitesWaiting = invites.filter((i) => i.status === "pending" && i.targetUserId === this.account.userId).length;
      this.renderNav();
    } catch {
      // The count is a hint; the dialog lists them again.
    }
  }

  /**
   * The guild's channels: those in no folder first, then each folder (nested folders as nested
   * lists), each channel followed by its threads.
   */
  private channelTree(gv: GuildView): HTMLElement[] {
    const canManage = gv.perms.has("channels.manage") && !gv.guild.isDm;
    const item = (c: Channel, thread: boolean): HTMLElement => {
      const key = channelKey(gv.server, c.id);
      const isCur = key === this.current.channel;
      const un = unread(gv.server, c);
      const threads = thread ? [] : gv.channels.filter((t) => t.isThread && t.parentChannelId === c.id);
      return h(
        "li",
        {},
        h(
          "button",
          {
            type: "button",
            class: `channel${thread ? " thread" : ""}${isCur ? " current" : ""}${un ? " unread" : ""}`,
            "aria-current": isCur ? "true" : null,
            "data-channel": c.name,
            onclick: () => this.openChannel(key),
          },
          gv.guild.isDm ? c.name || "chat" : thread ? `↳ ${c.name}` : `# ${c.name}`,
          un ? h("span", { class: "visually-hidden" }, " (unread)") : null,
        ),
        threads.length ? h("ul", { "aria-label": `Threads of ${c.name}` }, threads.map((t) => item(t, true))) : null,
      );
    };
    const known = new Set(gv.folders.map((f) => f.id));
    const inFolder = (folderId: string) => gv.channels.filter((c) => !c.isThread && (folderId ? c.folderId === folderId : !c.folderId || !known.has(c.folderId)));
    const folder = (parent: string): HTMLElement[] =>
      gv.folders
        .filter((f) => (parent ? f.parentFolderId === parent : !f.parentFolderId || !known.has(f.parentFolderId)))
        .map((f) =>
          h(
            "li",
            { class: "folder" },
            h(
              "div",
              { class: "folder-head" },
              h("h3", { id: `folder-${f.id}` }, f.name),
              canManage
                ? h("button", { type: "button", class: "icon", "aria-label": `Folder ${f.name} settings`, onclick: () => channels.folderSettings(this, gv, f) }, "⚙")
                : null,
            ),
            h("ul", { "aria-labelledby": `folder-${f.id}` }, inFolder(f.id).map((c) => item(c, false)), folder(f.id)),
          ),
        );
    return [h("ul", {}, inFolder("").map((c) => item(c, false)), folder(""))];
  }

  // ---- members pane ----

  async renderMembers(): Promise<void> {
    const gv = this.currentGuild();
    if (!gv) {
      fill(this.side);
      return;
    }
    if (!gv.membersLoaded) {
      try {
        await this.loadMembers(gv);
      } catch (e) {
        fill(this.side, h("p", {}, errorText(e)));
        return;
      }
      this.renderNav();
      this.chat.refreshNames();
    }
    if (gv !== this.currentGuild()) return;
    const members = [...gv.members.values()].sort((a, b) => (a.nick || a.user?.name || "").localeCompare(b.nick || b.user?.name || ""));
    const roleName = new Map(gv.roles.map((r) => [r.id, r.name]));
    fill(
      this.side,
      h("header", {}, h("h2", {}, `Members (${members.length})`), h("button", { type: "button", class: "icon only-narrow", "aria-label": "Back to chat", onclick: () => (document.body.dataset.view = "chat") }, "←")),
      h(
        "ul",
        { class: "members" },
        members.map((m) => {
          const u = m.user!;
          const p = this.presence.get(u.id) ?? PresenceStatus.OFFLINE;
          const label = `${m.nick || u.name}, ${p === PresenceStatus.ONLINE ? "online" : p === PresenceStatus.BUSY ? "busy" : "offline"}`;
          return h(
            "li",
            {},
            h(
              "button",
              { type: "button", class: "member", "aria-label": label, onclick: () => panels.memberDialog(this, gv, u.id) },
              h("span", { class: `presence p${p}`, "aria-hidden": "true" }),
              h("span", {}, m.nick || u.name),
              u.id === gv.guild.ownerId ? h("small", {}, " owner") : null,
              m.roles.filter((r) => r !== gv.guild.id).map((r) => h("small", { class: "role" }, roleName.get(r) ?? "")),
            ),
          );
        }),
      ),
    );
  }

  // ---- events ----

  private onEvent(server: Server, ev: StreamResponse): void {
    const e = ev.event;
    switch (e.case) {
      case "messageCreated":
      case "messageUpdated": {
        const m = e.value.message;
        if (!m) return;
        if (m.typing) {
          this.onTyping(server, m);
          return;
        }
        this.onMessage(server, m, e.case === "messageCreated");
        return;
      }
      case "messageDeleted": {
        const cv = this.channels.get(channelKey(server, e.value.channelId));
        if (!cv) return;
        removeMessage(cv, e.value.messageId);
        this.chat.removed(cv, e.value.messageId);
        return;
      }
      case "memberJoined": {
        const u = e.value.user;
        if (!u) return;
        this.users.set(u.id, u);
        const gv = this.guilds.get(guildKey(server, e.value.guildId));
        if (!gv) {
          if (u.id === this.account.userId) void this.loadServer(server);
          return;
        }
        if (gv.membersLoaded && !gv.members.has(u.id)) gv.members.set(u.id, { user: u, roles: [], nick: "" } as never);
        if (gv === this.currentGuild()) void this.renderMembers();
        return;
      }
      case "memberRemoved": {
        const gv = this.guilds.get(guildKey(server, e.value.guildId));
        if (!gv) return;
        if (e.value.userId === this.account.userId) {
          this.guilds.delete(gv.key);
          if (this.current.guild === gv.key) {
            this.current = { guild: null, channel: null };
            this.chat.renderEmpty();
            fill(this.side);
          }
          toast(`You are no longer in ${gv.guild.name}`);
          this.renderNav();
          return;
        }
        gv.members.delete(e.value.userId);
        if (gv === this.currentGuild()) void this.renderMembers();
        return;
      }
      case "memberUpdated": {
        const gv = this.guilds.get(guildKey(server, e.value.guildId));
        const m = e.value.member;
        if (!gv || !m?.user) return;
        gv.members.set(m.user.id, m);
        if (m.user.id === this.account.userId) void this.loadChannels(gv).then(() => this.renderNav());
        if (gv === this.currentGuild()) {
          void this.renderMembers();
          this.chat.refreshNames();
        }
        return;
      }
      case "folderUpdated": {
        const gv = this.guilds.get(guildKey(server, e.value.guildId));
        const folder = e.value.folder;
        if (!gv || !folder) return;
        gv.folders = gv.folders.filter((f) => f.id !== folder.id);
        if (!e.value.deleted) {
          gv.folders.push(folder);
          gv.folders.sort((a, b) => a.position - b.position);
        }
        this.renderNav();
        return;
      }
      case "roleUpdated": {
        // What members may do follows from roles: this user's permissions (and the channels
        // they may see) are worked out again, and the role's name or removal shows in the list.
        const gv = this.guilds.get(guildKey(server, e.value.guildId));
        const role = e.value.role;
        if (!gv || !role) return;
        gv.roles = gv.roles.filter((r) => r.id !== role.id);
        if (e.value.deleted) {
          for (const m of gv.members.values()) m.roles = m.roles.filter((r) => r !== role.id);
        } else {
          gv.roles.push(role);
        }
        void this.loadChannels(gv).then(() => {
          this.renderNav();
          if (gv === this.currentGuild()) void this.renderMembers();
        });
        return;
      }
      case "userUpdated": {
        const u = e.value.user;
        if (!u) return;
        this.users.set(u.id, u);
        for (const gv of this.guilds.values()) {
          const m = gv.members.get(u.id);
          if (m) m.user = u;
        }
        if (u.id === this.account.userId && sameServer(server.url, this.account.saved.homeserver)) {
          this.account.saved.displayName = u.name;
          void this.account.persist();
          this.renderNav();
        }
        this.chat.refreshNames();
        void this.renderMembers();
        return;
      }
      case "presence": {
        this.presence.set(e.value.userId, e.value.status);
        void this.renderMembers();
        return;
      }
      case "channelCreated":
      case "channelUpdated": {
        const gv = this.guilds.get(guildKey(server, e.value.guildId));
        const c = e.value.channel;
        if (!gv || !c) return;
        this.putChannel(gv, c);
        return;
      }
      case "channelDeleted": {
        const gv = this.guilds.get(guildKey(server, e.value.guildId));
        if (!gv) return;
        gv.channels = gv.channels.filter((x) => x.id !== e.value.channelId);
        const key = channelKey(server, e.value.channelId);
        this.channels.delete(key);
        if (this.current.channel === key) this.openGuild(gv.key);
        this.renderNav();
        return;
      }
      case "guildUpdated": {
        if (e.value.guild) this.addGuild(server, e.value.guild);
        this.renderNav();
        return;
      }
      case "dmInvite": {
        const inv = e.value;
        if (inv.status === "pending") toast(`New DM invite from ${this.users.get(inv.inviterId)?.name ?? inv.inviterId.slice(0, 8) + "…"} (open "DM invites")`);
        else if (inv.status === "rejected") toast(`A DM invite you sent was declined`);
        void this.countDmInvites();
        return;
      }
      case "deviceAdded": {
        toast(`A new device signed in to your account: ${e.value.deviceName || e.value.deviceId}. If it is not yours, revoke it in your profile.`);
        return;
      }
      default:
        return;
    }
  }

  private onMessage(server: Server, m: Message, created: boolean): void {
    const cv = this.channels.get(channelKey(server, m.channelId));
    if (!cv) {
      // A channel we don't know yet (a new DM, a thread): list the guilds again.
      if (created) void this.loadServer(server);
      return;
    }
    if (created && (!cv.channel.latestMessageId || cv.channel.latestMessageId.length < m.id.length || (cv.channel.latestMessageId.length === m.id.length && cv.channel.latestMessageId < m.id))) {
      cv.channel.latestMessageId = m.id;
    }
    if (m.senderId && created && !m.action) {
      cv.typing.delete(m.senderId);
      this.lastSent.set(`${cv.key} ${m.senderId}`, createdMs(m));
      this.chat.renderTyping();
    }
    if (cv.loaded || cv.key === this.current.channel) {
      const fresh = putMessage(cv, m);
      this.chat.upsert(cv, m, fresh);
    }
    if (m.senderId === this.account.userId && created) this.chat.markRead(cv);
    this.renderNav();
  }

  private onTyping(server: Server, m: Message): void {
    const t = m.typing!;
    const cv = this.channels.get(channelKey(server, t.channelId || m.channelId));
    if (!cv || t.userId === this.account.userId) return;
    // A typing notice sent just before the message it announced can arrive after it: drop a
    // notice the server stamped no later than the sender's last message.
    const sent = this.lastSent.get(`${cv.key} ${t.userId}`) ?? 0;
    if (t.isTyping && createdMs(m) > sent) cv.typing.set(t.userId, Date.now() + 6000);
    else cv.typing.delete(t.userId);
    this.chat.renderTyping();
  }

  /** Reports an error from a call to a person. */
  fail(what: string, e: unknown): void {
    const session = e instanceof ConnectError && e.code === Code.Unauthenticated ? " (signed out: reload to sign in again)" : "";
    toast(`${what}: ${errorText(e)}${session}`, "error");
  }
}
