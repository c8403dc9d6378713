/**
 * Searching messages (`SearchMessages`): in the open channel, or in every channel of the caller's
 * guilds on that channel's server (the API searches one channel or all of them on a server, so a
 * search never crosses servers). Results come newest first, a page at a time; choosing one opens
 * its channel at that message.
 */

import type { Message } from "../gen/guildhall/v1/guildhall_pb";
import { dialog, field, fill, form, h, when } from "./dom";
import type { Shell } from "./shell";
import { channelKey, createdMs, displayName, plainText, type ChannelView } from "./state";

const PAGE = 25;

export function searchDialog(app: Shell, cv: ChannelView): void {
  const query = h("input", { type: "search", required: true, maxlength: "256", autocomplete: "off" });
  const scope = h(
    "select",
    {},
    h("option", { value: "channel" }, cv.channel.isThread ? `This thread (${cv.channel.name})` : cv.channel.name ? `This channel (#${cv.channel.name})` : "This conversation"),
    h("option", { value: "server" }, `Everywhere on ${new URL(cv.server.url).host}`),
  );
  const summary = h("p", { role: "status" });
  const results = h("ul", { class: "results", "aria-label": "Search results" });
  const more = h("button", { type: "button", hidden: true }, "More results");
  let asked = { q: "", channelId: "", offset: 0 };

  const run = async (fresh: boolean, close: () => void): Promise<void> => {
    if (fresh) asked = { q: query.value.trim(), channelId: scope.value === "channel" ? cv.channel.id : "", offset: 0 };
    try {
      const r = await cv.server.api.searchMessages({ channelId: asked.channelId, query: asked.q, limit: PAGE, offset: asked.offset });
      if (fresh) fill(results);
      results.append(...r.messages.map((m) => result(app, cv, m, close)));
      asked.offset += r.messages.length;
      summary.textContent = r.total === 0 ? `Nothing found for “${asked.q}”.` : `${r.total} message${r.total === 1 ? "" : "s"} found, newest first.`;
      more.hidden = asked.offset >= r.total || r.messages.length === 0;
    } catch (e) {
      app.fail("Searching", e);
    }
  };

  dialog("Search messages", (close) => {
    more.addEventListener("click", () => void run(false, close));
    return [
      form(() => run(true, close), field("Search for", query, "Whole words; every word must appear."), field("Where", scope), h("button", { type: "submit" }, "Search")),
      summary,
      results,
      more,
    ];
  });
  query.focus();
}

/** One found message: who, where, when and its text; choosing it opens it in its channel. */
function result(app: Shell, from: ChannelView, m: Message, close: () => void): HTMLElement {
  const key = channelKey(from.server, m.channelId);
  const cv = app.channels.get(key);
  const gv = cv ? app.guilds.get(cv.guildKey) : undefined;
  const where = cv ? (gv?.guild.isDm ? app.dmName(gv) : `${cv.channel.isThread ? "↳ " : "#"}${cv.channel.name}`) : "";
  return h(
    "li",
    {},
    h(
      "button",
      {
        type: "button",
        class: "result",
        onclick: async () => {
          close();
          // A channel this client has not listed yet (a new thread): list the server again.
          if (!app.channels.has(key)) await app.loadServer(from.server);
          app.openChannel(key, m.id);
        },
      },
      h("span", { class: "meta" }, h("strong", {}, displayName(app.users, gv, m.senderId, m.senderName)), where ? ` in ${where}` : "", " · ", h("time", {}, when(createdMs(m)))),
      h("span", { class: "text" }, plainText(m.text, app.users, gv).slice(0, 300) || "(no text)"),
    ),
  );
}
