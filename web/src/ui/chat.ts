/**
 * The chat pane: one channel's history (loaded a page at a time as the reader scrolls back), live
 * messages as they arrive, and the composer (send, reply, edit, mentions, attachments with a
 * progress bar, typing notices). Messages are drawn one element each and updated in place, so a
 * live message costs one element however long the history is.
 */

import type { Message } from "../gen/guildhall/v1/guildhall_pb";
import { ReactionType } from "../gen/guildhall/v1/guildhall_pb";
import { errorText } from "../api";
import { toHex } from "../protocol/bytes";
import * as channels from "./channels";
import { dialog, fill, h, size, toast, when } from "./dom";
import { searchDialog } from "./search";
import type { Shell } from "./shell";
import { upload } from "./upload";
import { channelKey, createdMs, displayName, idLess, plainText, putMessage, readMarks, type ChannelView, type GuildView } from "./state";

const PAGE = 50;
const QUICK_EMOJI = ["👍", "❤️", "😂", "🎉", "😮", "😢"];
const TYPING_EVERY_MS = 3000;
/** Messages kept in the page while following a busy channel (`trim`). */
const MAX_DRAWN = 400;
const KEEP_DRAWN = 300;
/** Pages of history `reveal` loads, at most, to reach a message (a search result). */
const REVEAL_PAGES = 40;

export class ChatPane {
  private cv: ChannelView | null = null;
  private readonly els = new Map<string, HTMLElement>();
  private list = h("div", { class: "messages", role: "log", "aria-label": "Messages", tabindex: "0" });
  private header = h("header", { class: "chat-header" });
  private typingLine = h("div", { class: "typing", "aria-live": "polite" });
  private composer!: HTMLFormElement;
  private input!: HTMLTextAreaElement;
  private banner = h("div", { class: "banner" });
  private progress = h("div", { class: "uploads" });
  private suggest = h("ul", { class: "suggest", role: "listbox", id: "mention-list", hidden: true });
  private replyTo: Message | null = null;
  private editing: Message | null = null;
  private lastTyping = 0;
  /** `@Name` → user id for the mentions picked in the current draft. */
  private mentions = new Map<string, string>();
  private firstUnread = "";
  /** The oldest message drawn; older ones are in memory but not in the page (null: all drawn). */
  private floor: string | null = null;
  private pending = new Map<string, Message>();
  private pendingMine = false;
  private frame = 0;

  constructor(
    private readonly app: Shell,
    private readonly root: HTMLElement,
  ) {
    this.list.addEventListener("scroll", () => this.onScroll());
    this.list.addEventListener("keydown", (e) => this.onListKey(e));
    document.addEventListener("visibilitychange", () => this.cv && this.markRead(this.cv));
    setInterval(() => this.renderTyping(), 2000);
  }

  renderEmpty(): void {
    this.cv = null;
    fill(this.root, h("div", { class: "empty" }, h("p", {}, "Pick a channel, create a guild, or join one with an invite link.")));
  }

  /** Opens `cv`: its loaded messages at once, then the first page if none was loaded. */
  async open(cv: ChannelView): Promise<void> {
    this.cv = cv;
    this.els.clear();
    this.replyTo = null;
    this.editing = null;
    this.mentions.clear();
    this.firstUnread = readMarks.get(cv);
    this.list = h("div", { class: "messages", role: "log", "aria-label": `Messages in ${cv.channel.name}`, tabindex: "0" });
    this.list.addEventListener("scroll", () => this.onScroll());
    this.list.addEventListener("keydown", (e) => this.onListKey(e));
    this.buildComposer();
    this.renderHeader();
    fill(this.root, this.header, this.list, this.typingLine, this.banner, this.progress, this.composer);
    this.renderBanner();
    this.pending.clear();
    const from = Math.max(0, cv.order.length - 2 * PAGE);
    this.floor = from === 0 ? null : cv.order[from];
    for (const id of cv.order.slice(from)) this.place(cv.msgs.get(id)!);
    this.renderStart();
    this.scrollToEnd();
    if (!cv.loaded) await this.loadOlder();
    this.markRead(cv);
    if (matchMedia("(min-width: 700px)").matches) this.input.focus();
  }

  /** Draws the channel again from scratch (after a gap in the event stream). */
  async reload(): Promise<void> {
    const cv = this.cv;
    if (!cv) return;
    cv.msgs.clear();
    cv.order = [];
    cv.loaded = false;
    cv.cursor = "";
    cv.hasMore = true;
    await this.open(cv);
  }

  renderHeader(): void {
    const cv = this.cv;
    if (!cv) return;
    const gv = this.app.guilds.get(cv.guildKey);
    const parent = this.parentOf(cv);
    const title = gv?.guild.isDm
      ? h("h1", {}, this.app.dmName(gv))
      : parent
        ? [h("h1", {}, `↳ ${cv.channel.name}`), h("button", { type: "button", class: "link", title: "Back to the channel", onclick: () => this.app.openChannel(parent.key) }, `thread in #${parent.channel.name}`)]
        : h("h1", {}, `# ${cv.channel.name}`, gv ? h("small", {}, ` ${gv.guild.name}`) : null);
    fill(
      this.header,
      h("button", { type: "button", class: "icon only-narrow", "aria-label": "Back to guilds and channels", onclick: () => (document.body.dataset.view = "nav") }, "←"),
      h("div", { class: "chat-title" }, title),
      gv && !gv.guild.isDm && gv.perms.has("channels.manage")
        ? h("button", { type: "button", class: "icon", "aria-label": `${cv.channel.isThread ? "Thread" : "Channel"} settings`, onclick: () => channels.channelSettings(this.app, gv, cv) }, "⚙")
        : null,
      h("button", { type: "button", class: "icon", "aria-label": "Search messages", onclick: () => searchDialog(this.app, cv) }, "🔍"),
      h("button", { type: "button", onclick: () => this.showPins() }, "Pinned"),
      h("button", { type: "button", class: "only-narrow", onclick: () => (document.body.dataset.view = "members") }, "Members"),
    );
  }

  /**
   * Shows older messages: first those already in memory but not drawn (see `floor`), else the
   * next page from the server.
   */
  private async loadOlder(): Promise<void> {
    const cv = this.cv;
    if (!cv || cv.loading) return;
    if (this.floor !== null) {
      this.keepOffset(() => this.drawOlderFromMemory(cv));
      return;
    }
    if (cv.loaded && !cv.hasMore) return;
    cv.loading = true;
    const wasEmpty = cv.order.length === 0;
    try {
      const page = await cv.server.api.getHistory({ channelId: cv.channel.id, cursor: cv.cursor, limit: PAGE });
      if (this.cv !== cv) return;
      this.keepOffset(() => {
        for (const m of page.messages) {
          putMessage(cv, m);
          this.place(m);
        }
        cv.cursor = page.nextCursor;
        cv.hasMore = page.hasMore;
        cv.loaded = true;
        this.renderStart();
      });
      if (wasEmpty) this.scrollToEnd();
    } catch (e) {
      this.app.fail("Loading history", e);
    } finally {
      cv.loading = false;
    }
    // A tall window may show the whole first page: keep loading until it scrolls.
    if (cv.hasMore && this.list.scrollHeight <= this.list.clientHeight + 50 && this.cv === cv) void this.loadOlder();
  }

  /**
   * Shows message `id` of the open channel, loading older pages until it is drawn (at most
   * `REVEAL_PAGES` of them), then scrolls to it, marks it and puts the focus on it.
   */
  async reveal(id: string): Promise<void> {
    const cv = this.cv;
    if (!cv) return;
    for (let i = 0; i < REVEAL_PAGES && !this.els.has(id) && this.cv === cv; i++) {
      if (cv.loading) await new Promise((r) => setTimeout(r, 100));
      else if (this.floor !== null || cv.hasMore || !cv.loaded) await this.loadOlder();
      else break;
    }
    const el = this.els.get(id);
    if (!el || this.cv !== cv) return toast("That message is too far back to show here; scroll up to find it.");
    el.scrollIntoView({ block: "center" });
    el.classList.add("found");
    el.focus();
  }

  /** Runs `change` (which adds above what the reader sees) without moving what they see. */
  private keepOffset(change: () => void): void {
    const before = this.list.scrollHeight - this.list.scrollTop;
    change();
    this.list.scrollTop = this.list.scrollHeight - before;
  }

  /** Draws up to a page of the messages in memory just above the oldest one drawn. */
  private drawOlderFromMemory(cv: ChannelView): void {
    if (this.floor === null) return;
    const at = cv.order.indexOf(this.floor);
    const from = Math.max(0, at - PAGE);
    this.floor = from === 0 ? null : cv.order[from];
    for (let i = at - 1; i >= from; i--) this.place(cv.msgs.get(cv.order[i])!);
    this.renderStart();
  }

  /**
   * Keeps at most `MAX_DRAWN` messages in the page while the reader follows the end: the oldest
   * are taken out of the page (they stay in memory and are drawn again on scrolling up), so a busy
   * channel costs the same however long it stays open.
   */
  private trim(cv: ChannelView): void {
    if (this.els.size <= MAX_DRAWN) return;
    const drawn = cv.order.filter((id) => this.els.has(id));
    const drop = drawn.slice(0, drawn.length - KEEP_DRAWN);
    for (const id of drop) {
      this.els.get(id)!.remove();
      this.els.delete(id);
    }
    this.floor = drawn[drop.length];
    this.renderStart();
  }

  private renderStart(): void {
    const cv = this.cv!;
    this.list.querySelector(".start")?.remove();
    if (cv.hasMore || this.floor !== null) return;
    const root = this.parentOf(cv)?.msgs.get(cv.channel.rootMessageId);
    const gv = this.app.guilds.get(cv.guildKey);
    const text = cv.channel.isThread
      ? root
        ? `This thread started from ${displayName(this.app.users, gv, root.senderId, root.senderName)}: “${plainText(root.text, this.app.users, gv).slice(0, 140)}”`
        : `This is the start of the thread ${cv.channel.name}.`
      : `This is the start of ${cv.channel.name ? `#${cv.channel.name}` : "the conversation"}.`;
    this.list.prepend(h("p", { class: "start" }, text));
  }

  /** A thread's parent channel (none for a channel). */
  private parentOf(cv: ChannelView): ChannelView | undefined {
    return cv.channel.isThread ? this.app.channels.get(channelKey(cv.server, cv.channel.parentChannelId)) : undefined;
  }

  /** Opens the thread started from `m` (listing the guild's channels again if it is new to us). */
  private async openThread(m: Message): Promise<void> {
    const cv = this.cv!;
    const key = channelKey(cv.server, m.threadId);
    if (!this.app.channels.has(key)) {
      const gv = this.app.guilds.get(cv.guildKey);
      if (gv) await this.app.loadChannels(gv).catch((e) => this.app.fail("Opening the thread", e));
    }
    this.app.openChannel(key);
  }

  private onScroll(): void {
    if (this.list.scrollTop < 300) void this.loadOlder();
    if (this.cv) this.markRead(this.cv);
  }

  private atBottom(): boolean {
    return this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 60;
  }

  private scrollToEnd(): void {
    this.list.scrollTop = this.list.scrollHeight;
  }

  /** Marks the channel read up to its newest message while the reader sees the end. */
  markRead(cv: ChannelView): void {
    if (cv !== this.cv || document.hidden || !this.atBottom()) return;
    const last = cv.order[cv.order.length - 1] || cv.channel.latestMessageId;
    if (!last) return;
    const before = readMarks.get(cv);
    readMarks.set(cv.server, cv.channel.id, last);
    if (before !== readMarks.get(cv)) this.app.renderNav();
  }

  /**
   * A message arrived or changed in `cv`. Drawing waits for the next frame, so a burst of
   * messages costs one layout, not one each.
   */
  upsert(cv: ChannelView, m: Message, fresh: boolean): void {
    if (cv !== this.cv) return;
    this.pending.set(m.id, m);
    if (fresh && m.senderId === this.app.account.userId) this.pendingMine = true;
    if (!this.frame) this.frame = requestAnimationFrame(() => this.flush());
  }

  private flush(): void {
    this.frame = 0;
    const cv = this.cv;
    const batch = [...this.pending.values()];
    this.pending.clear();
    if (!cv) return;
    const stick = this.atBottom();
    for (const m of batch) if (cv.msgs.has(m.id)) this.place(m);
    if (stick) this.trim(cv);
    if (stick || this.pendingMine) this.scrollToEnd();
    this.pendingMine = false;
    this.markRead(cv);
  }

  removed(cv: ChannelView, id: string): void {
    if (cv !== this.cv) return;
    this.els.get(id)?.remove();
    this.els.delete(id);
  }

  /** Names changed (a profile, a nickname): draw the shown messages again. */
  refreshNames(): void {
    const cv = this.cv;
    if (!cv) return;
    for (const id of [...this.els.keys()]) {
      const m = cv.msgs.get(id);
      if (m) this.place(m);
    }
    this.renderHeader();
  }

  /** Puts `m`'s element where its id belongs (replacing an older drawing); none below `floor`. */
  private place(m: Message): void {
    const cv = this.cv!;
    const old = this.els.get(m.id);
    if (!old && this.floor !== null && idLess(m.id, this.floor)) return;
    const el = this.render(m);
    this.els.set(m.id, el);
    if (old) {
      old.replaceWith(el);
      return;
    }
    const last = cv.order[cv.order.length - 1];
    if (last === m.id) {
      this.list.append(el);
      return;
    }
    const i = cv.order.indexOf(m.id);
    for (let j = i + 1; j < cv.order.length; j++) {
      const next = this.els.get(cv.order[j]);
      if (next?.isConnected) {
        next.before(el);
        return;
      }
    }
    this.list.append(el);
  }

  private render(m: Message): HTMLElement {
    const cv = this.cv!;
    const gv = this.app.guilds.get(cv.guildKey);
    const me = this.app.account.userId;
    const mine = m.senderId === me && !m.webhookId;
    const name = m.webhookId ? `${m.senderName || "webhook"} [webhook]` : displayName(this.app.users, gv, m.senderId, m.senderName);
    const isNew = this.firstUnread !== "" && idLess(this.firstUnread, m.id) && m.senderId !== me;
    if (isNew) this.firstUnread = "";
    const canManage = gv?.perms.has("messages.manage") ?? false;
    const canThread = !!gv && !cv.channel.isThread && gv.perms.has("threads.create");
    const threadName = m.threadId ? (gv?.channels.find((c) => c.id === m.threadId)?.name ?? "thread") : "";

    if (m.action) {
      const a = m.action;
      const who = displayName(this.app.users, gv, a.targetId || a.actorId);
      const text: Record<string, string> = {
        member_joined: `${who} joined`,
        member_left: `${who} left`,
        message_pinned: `${displayName(this.app.users, gv, a.actorId)} pinned a message`,
        channel_renamed: `${displayName(this.app.users, gv, a.actorId)} renamed the channel to ${a.detail}`,
        guild_renamed: `${displayName(this.app.users, gv, a.actorId)} renamed the guild to ${a.detail}`,
      };
      return h("div", { class: "msg system", "data-id": m.id }, h("span", {}, text[a.kind] ?? a.kind), " ", h("time", {}, when(createdMs(m))));
    }

    const reply = m.replyToMessageId ? cv.msgs.get(m.replyToMessageId) : undefined;
    const el = h(
      "article",
      {
        class: `msg${mine ? " mine" : ""}${m.mentionedUserIds.includes(me) ? " mentions-me" : ""}${m.senderBlocked ? " blocked" : ""}`,
        "data-id": m.id,
        tabindex: "-1",
        "aria-label": `${name}, ${when(createdMs(m))}`,
      },
      isNew ? h("div", { class: "new-divider", role: "separator" }, "New messages") : null,
      m.replyToMessageId
        ? h("div", { class: "reply-quote" }, "↪ ", reply ? `${displayName(this.app.users, gv, reply.senderId, reply.senderName)}: ${plainText(reply.text, this.app.users, gv).slice(0, 80)}` : "a message")
        : null,
      h(
        "div",
        { class: "meta" },
        h("span", { class: "sender" }, name),
        " ",
        h("time", { datetime: new Date(createdMs(m)).toISOString() }, when(createdMs(m))),
        m.editedAt ? h("span", { class: "edited" }, " (edited)") : null,
        m.isPinned ? h("span", { class: "pinned" }, " 📌") : null,
      ),
      m.text ? h("div", { class: "text" }, this.richText(m.text)) : null,
      m.media ? this.media(m) : null,
      m.reactions.length
        ? h(
            "div",
            { class: "reactions" },
            m.reactions.map((r) => {
              const minePressed = r.userIds.includes(me);
              return h(
                "button",
                {
                  type: "button",
                  class: "reaction",
                  "aria-pressed": minePressed ? "true" : "false",
                  "aria-label": `${r.emoji} ${r.userIds.length}: ${minePressed ? "remove your reaction" : "react"}`,
                  onclick: () => this.react(m, r.emoji, !minePressed),
                },
                `${r.emoji} ${r.userIds.length}`,
              );
            }),
          )
        : null,
      m.threadId
        ? h("button", { type: "button", class: "thread-link", "aria-label": `Open thread ${threadName}`, onclick: () => void this.openThread(m) }, `🧵 ${threadName}`)
        : null,
      h(
        "div",
        { class: "actions", role: "toolbar", "aria-label": "Message actions" },
        h("button", { type: "button", onclick: () => this.startReply(m) }, "Reply"),
        h("button", { type: "button", onclick: () => this.pickReaction(m) }, "React"),
        canThread && !m.threadId ? h("button", { type: "button", onclick: () => channels.startThread(this.app, gv!, cv, m, threadTitle(plainText(m.text, this.app.users, gv))) }, "Start thread") : null,
        mine && m.text ? h("button", { type: "button", onclick: () => this.startEdit(m) }, "Edit") : null,
        mine || canManage ? h("button", { type: "button", onclick: () => this.remove(m) }, "Delete") : null,
        canManage ? h("button", { type: "button", onclick: () => this.pin(m, !m.isPinned) }, m.isPinned ? "Unpin" : "Pin") : null,
      ),
    );
    return el;
  }

  /** Text with `<@id>` mentions shown as names and links made clickable; never as HTML. */
  private richText(text: string): (Node | string)[] {
    const gv = this.app.guilds.get(this.cv!.guildKey);
    const out: (Node | string)[] = [];
    const re = /<@(&?)([0-9a-f]{64}|\d+)>|(https?:\/\/[^\s<]+)/g;
    let at = 0;
    for (const m of text.matchAll(re)) {
      if (m.index! > at) out.push(text.slice(at, m.index));
      if (m[3]) out.push(h("a", { href: m[3], target: "_blank", rel: "noopener noreferrer" }, m[3]));
      else if (m[1]) {
        const role = gv?.roles.find((r) => r.id === m[2]);
        out.push(h("span", { class: "mention" }, `@${m[2] === gv?.guild.id ? "everyone" : role?.name ?? "role"}`));
      } else {
        out.push(h("span", { class: `mention${m[2] === this.app.account.userId ? " me" : ""}` }, `@${displayName(this.app.users, gv, m[2])}`));
      }
      at = m.index! + m[0].length;
    }
    if (at < text.length) out.push(text.slice(at));
    return out;
  }

  private media(m: Message): HTMLElement {
    const a = m.media!;
    const url = `${this.cv!.server.url}/media/${encodeURIComponent(a.fileId)}`;
    if (a.mimeType.startsWith("image/")) {
      const w = a.width || 320;
      const hgt = a.height || 240;
      const scale = Math.min(1, 360 / w, 280 / hgt);
      return h(
        "a",
        { href: url, target: "_blank", rel: "noopener noreferrer", class: "image" },
        h("img", { src: url, alt: `image (${a.mimeType}, ${size(Number(a.sizeBytes))})`, width: Math.round(w * scale), height: Math.round(hgt * scale), loading: "lazy" }),
      );
    }
    return h("a", { href: url, target: "_blank", rel: "noopener noreferrer", class: "file" }, `📎 ${a.mimeType} (${size(Number(a.sizeBytes))})`);
  }

  private onListKey(e: KeyboardEvent): void {
    if (e.key !== "ArrowUp" && e.key !== "ArrowDown") return;
    const items = [...this.list.querySelectorAll<HTMLElement>("article.msg")];
    if (!items.length) return;
    const at = items.indexOf(document.activeElement?.closest("article.msg") as HTMLElement);
    const next = at < 0 ? items.length - 1 : Math.max(0, Math.min(items.length - 1, at + (e.key === "ArrowUp" ? -1 : 1)));
    items[next].focus();
    e.preventDefault();
  }

  renderTyping(): void {
    const cv = this.cv;
    if (!cv) return;
    const now = Date.now();
    for (const [id, until] of cv.typing) if (until < now) cv.typing.delete(id);
    const gv = this.app.guilds.get(cv.guildKey);
    const names = [...cv.typing.keys()].map((id) => displayName(this.app.users, gv, id));
    const text = names.length === 0 ? "" : names.length === 1 ? `${names[0]} is typing…` : `${names.join(", ")} are typing…`;
    if (this.typingLine.textContent !== text) this.typingLine.textContent = text;
  }

  // ---- composer ----

  private buildComposer(): void {
    const cv = this.cv!;
    const gv = this.app.guilds.get(cv.guildKey);
    const label = gv?.guild.isDm ? "Message" : cv.channel.isThread ? `Message thread ${cv.channel.name}` : `Message #${cv.channel.name}`;
    this.input = h("textarea", {
      rows: "1",
      placeholder: cv.channel.isThread ? "Message the thread" : label,
      "aria-label": label,
      "aria-autocomplete": "list",
      "aria-controls": "mention-list",
      maxlength: "4000",
    });
    this.input.addEventListener("keydown", (e) => this.onKey(e));
    this.input.addEventListener("input", () => this.onInput());
    const file = h("input", { type: "file", class: "visually-hidden", "aria-label": "Attach a file", tabindex: "-1" });
    file.addEventListener("change", () => {
      const f = file.files?.[0];
      file.value = "";
      if (f) void this.sendFile(f);
    });
    this.composer = h(
      "form",
      { class: "composer", "aria-label": "Send a message" },
      this.suggest,
      h("button", { type: "button", class: "icon", "aria-label": "Attach a file", onclick: () => file.click() }, "📎"),
      file,
      this.input,
      h("button", { type: "submit" }, "Send"),
    );
    this.composer.addEventListener("submit", (e) => {
      e.preventDefault();
      void this.submit();
    });
  }

  private renderBanner(): void {
    const gv = this.cv ? this.app.guilds.get(this.cv.guildKey) : undefined;
    const cancel = h("button", { type: "button", class: "link", onclick: () => this.cancel() }, "Cancel");
    if (this.editing) fill(this.banner, "Editing your message ", cancel);
    else if (this.replyTo) fill(this.banner, `Replying to ${displayName(this.app.users, gv, this.replyTo.senderId, this.replyTo.senderName)} `, cancel);
    else fill(this.banner);
    this.banner.hidden = !this.editing && !this.replyTo;
  }

  private cancel(): void {
    if (this.editing) this.input.value = "";
    this.editing = null;
    this.replyTo = null;
    this.renderBanner();
    this.input.focus();
  }

  private startReply(m: Message): void {
    this.editing = null;
    this.replyTo = m;
    this.renderBanner();
    this.input.focus();
  }

  private startEdit(m: Message): void {
    this.replyTo = null;
    this.editing = m;
    this.input.value = plainText(m.text, this.app.users, this.app.guilds.get(this.cv!.guildKey), this.mentions);
    this.renderBanner();
    this.input.focus();
  }

  private onKey(e: KeyboardEvent): void {
    if (!this.suggest.hidden) {
      const items = [...this.suggest.querySelectorAll<HTMLElement>("li")];
      const at = items.findIndex((x) => x.getAttribute("aria-selected") === "true");
      if (e.key === "ArrowDown" || e.key === "ArrowUp") {
        const next = (at + (e.key === "ArrowDown" ? 1 : items.length - 1)) % items.length;
        items.forEach((x, i) => x.setAttribute("aria-selected", i === next ? "true" : "false"));
        this.input.setAttribute("aria-activedescendant", items[next].id);
        e.preventDefault();
        return;
      }
      if ((e.key === "Enter" || e.key === "Tab") && at >= 0) {
        items[at].click();
        e.preventDefault();
        return;
      }
      if (e.key === "Escape") {
        this.suggest.hidden = true;
        e.preventDefault();
        return;
      }
    }
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      void this.submit();
    } else if (e.key === "Escape" && (this.editing || this.replyTo)) {
      this.cancel();
    } else if (e.key === "ArrowUp" && this.input.value === "" && this.cv) {
      const me = this.app.account.userId;
      const last = [...this.cv.order].reverse().map((id) => this.cv!.msgs.get(id)!).find((m) => m.senderId === me && m.text);
      if (last) {
        e.preventDefault();
        this.startEdit(last);
      }
    }
  }

  private onInput(): void {
    const cv = this.cv;
    if (!cv) return;
    this.input.style.height = "auto";
    this.input.style.height = `${Math.min(this.input.scrollHeight, 160)}px`;
    if (this.input.value && Date.now() - this.lastTyping > TYPING_EVERY_MS && !this.editing) {
      this.lastTyping = Date.now();
      void cv.server.api.sendMessage({ channelId: cv.channel.id, typing: { isTyping: true } }).catch(() => undefined);
    }
    const before = this.input.value.slice(0, this.input.selectionStart);
    const m = /(^|\s)@([^\s@]{0,32})$/.exec(before);
    const gv = this.app.guilds.get(cv.guildKey);
    if (!m || !gv) {
      this.suggest.hidden = true;
      return;
    }
    const q = m[2].toLowerCase();
    const hits = [...gv.members.values()].filter((x) => (x.nick || x.user?.name || "").toLowerCase().startsWith(q)).slice(0, 6);
    if (!hits.length) {
      this.suggest.hidden = true;
      return;
    }
    fill(
      this.suggest,
      hits.map((x, i) => {
        const name = x.nick || x.user!.name;
        return h(
          "li",
          {
            role: "option",
            id: `mention-${i}`,
            "aria-selected": i === 0 ? "true" : "false",
            onclick: () => {
              const start = before.length - m[2].length - 1;
              const label = `@${name}`;
              this.mentions.set(label, x.user!.id);
              this.input.value = this.input.value.slice(0, start) + label + " " + this.input.value.slice(this.input.selectionStart);
              this.suggest.hidden = true;
              this.input.focus();
            },
          },
          name,
        );
      }),
    );
    this.suggest.hidden = false;
  }

  /** The draft with each picked `@Name` written as the `<@id>` the server parses. */
  private encode(text: string): string {
    const names = [...this.mentions.keys()].sort((a, b) => b.length - a.length);
    for (const n of names) text = text.split(n).join(`<@${this.mentions.get(n)}>`);
    return text;
  }

  private async submit(): Promise<void> {
    const cv = this.cv;
    if (!cv) return;
    const text = this.encode(this.input.value.trim());
    if (!text) return;
    const editing = this.editing;
    const replyTo = this.replyTo;
    this.input.value = "";
    this.input.style.height = "auto";
    this.editing = null;
    this.replyTo = null;
    this.mentions.clear();
    this.renderBanner();
    try {
      if (editing) {
        const m = await cv.server.api.editMessage({ channelId: cv.channel.id, messageId: editing.id, text });
        putMessage(cv, m);
        this.upsert(cv, m, false);
      } else {
        const r = await cv.server.api.sendMessage({
          channelId: cv.channel.id,
          text,
          idempotencyKey: toHex(crypto.getRandomValues(new Uint8Array(16))),
          replyToMessageId: replyTo?.id ?? "",
        });
        if (r.message && this.cv === cv) this.upsert(cv, r.message, putMessage(cv, r.message));
      }
      this.lastTyping = 0;
    } catch (e) {
      this.input.value = this.input.value || text;
      this.app.fail(editing ? "Editing" : "Sending", e);
    }
  }

  private async sendFile(f: File): Promise<void> {
    const cv = this.cv;
    if (!cv) return;
    const abort = new AbortController();
    const bar = h("progress", { max: String(f.size || 1), value: "0", "aria-label": `Uploading ${f.name}` });
    const row = h("div", { class: "upload" }, h("span", {}, `${f.name} (${size(f.size)}) `), bar, h("button", { type: "button", class: "link", onclick: () => abort.abort() }, "Cancel"));
    this.progress.append(row);
    try {
      const done = await upload(cv.server, f, (sent) => (bar.value = sent), false, abort.signal);
      const text = this.encode(this.input.value.trim());
      this.input.value = "";
      const r = await cv.server.api.sendMessage({
        channelId: cv.channel.id,
        text,
        mediaFileId: done.fileId,
        idempotencyKey: toHex(crypto.getRandomValues(new Uint8Array(16))),
      });
      if (r.message && this.cv === cv) this.upsert(cv, r.message, putMessage(cv, r.message));
    } catch (e) {
      if (!abort.signal.aborted) this.app.fail(`Uploading ${f.name}`, e);
    } finally {
      row.remove();
    }
  }

  private async react(m: Message, emoji: string, add: boolean): Promise<void> {
    const cv = this.cv!;
    try {
      await cv.server.api.sendMessage({
        channelId: cv.channel.id,
        reaction: { messageId: m.id, emoji, type: add ? ReactionType.ADD : ReactionType.REMOVE },
      });
    } catch (e) {
      this.app.fail("Reacting", e);
    }
  }

  private pickReaction(m: Message): void {
    dialog("Add a reaction", (close) => {
      const custom = h("input", { type: "text", "aria-label": "Any emoji", maxlength: "32", placeholder: "or type one" });
      const pick = (emoji: string) => {
        close();
        void this.react(m, emoji, true);
      };
      const form = h("form", {}, custom, h("button", { type: "submit" }, "React"));
      form.addEventListener("submit", (e) => {
        e.preventDefault();
        if (custom.value.trim()) pick(custom.value.trim());
      });
      return [h("div", { class: "emoji-row" }, QUICK_EMOJI.map((x) => h("button", { type: "button", class: "emoji", "aria-label": `React ${x}`, onclick: () => pick(x) }, x))), form];
    });
  }

  private async remove(m: Message): Promise<void> {
    if (!confirm("Delete this message? This can't be undone.")) return;
    const cv = this.cv!;
    try {
      await cv.server.api.deleteMessage({ channelId: cv.channel.id, messageId: m.id });
    } catch (e) {
      this.app.fail("Deleting", e);
    }
  }

  private async pin(m: Message, pin: boolean): Promise<void> {
    const cv = this.cv!;
    try {
      if (pin) await cv.server.api.pinMessage({ channelId: cv.channel.id, messageId: m.id });
      else await cv.server.api.unpinMessage({ channelId: cv.channel.id, messageId: m.id });
    } catch (e) {
      this.app.fail(pin ? "Pinning" : "Unpinning", e);
    }
  }

  private async showPins(): Promise<void> {
    const cv = this.cv;
    if (!cv) return;
    try {
      const { messages } = await cv.server.api.getPinnedMessages({ channelId: cv.channel.id });
      const gv = this.app.guilds.get(cv.guildKey);
      dialog("Pinned messages", () =>
        messages.length
          ? h("ul", { class: "pins" }, messages.map((m) => h("li", {}, h("strong", {}, displayName(this.app.users, gv, m.senderId, m.senderName)), ": ", plainText(m.text, this.app.users, gv))))
          : h("p", {}, "Nothing is pinned here."),
      );
    } catch (e) {
      toast(`Pinned messages: ${errorText(e)}`, "error");
    }
  }
}

/** A thread name suggested from its first message: its first line, cut at a word near 40 characters. */
function threadTitle(text: string): string {
  const line = text.split("\n")[0].trim();
  if (line.length <= 40) return line || "Thread";
  const cut = line.slice(0, 40);
  const space = cut.lastIndexOf(" ");
  return `${space > 20 ? cut.slice(0, space) : cut}…`;
}
