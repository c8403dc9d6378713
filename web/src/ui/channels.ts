/**
 * Dialogs for a guild's channels, folders and threads: create a channel (in a folder or none),
 * create a folder (nested in another, or at the top), a folder's settings (rename, move, delete:
 * its channels and folders move up), a channel's settings (rename, move to a folder, delete), and
 * start a thread from a message. All but threads need `channels.manage`; threads need
 * `threads.create`.
 */

import type { Folder, Message } from "../gen/guildhall/v1/guildhall_pb";

import { dialog, field, form, h } from "./dom";
import type { Shell } from "./shell";
import { channelKey, type ChannelView, type GuildView } from "./state";

/** A folder's name with its parents': "Workshop / Lathes". */
function folderPath(gv: GuildView, folderId: string): string {
  const byId = new Map(gv.folders.map((f) => [f.id, f]));
  const names: string[] = [];
  for (let f = byId.get(folderId); f && names.length < 16; f = byId.get(f.parentFolderId)) names.unshift(f.name);
  return names.join(" / ");
}

/** A <select> of the guild's folders; its value is the folder id, "" for none. */
function folderSelect(gv: GuildView, selected: string, none: string): HTMLSelectElement {
  return h(
    "select",
    {},
    h("option", { value: "", selected: selected === "" }, none),
    gv.folders.map((f) => h("option", { value: f.id, selected: f.id === selected }, folderPath(gv, f.id))),
  );
}

export function createChannel(app: Shell, gv: GuildView, folderId = ""): void {
  const name = h("input", { type: "text", required: true, maxlength: "100", autocomplete: "off" });
  const folder = folderSelect(gv, folderId, "No folder");
  dialog("Create a channel", (close) =>
    form(
      async () => {
        try {
          const c = await gv.server.api.createChannel({ guildId: gv.guild.id, name: name.value.trim(), folderId: folder.value });
          close();
          app.putChannel(gv, c);
          app.openChannel(channelKey(gv.server, c.id));
        } catch (e) {
          app.fail("Creating the channel", e);
        }
      },
      field("Channel name", name),
      gv.folders.length ? field("Folder", folder) : null,
      h("button", { type: "submit" }, "Create"),
    ),
  );
}

export function createFolder(app: Shell, gv: GuildView): void {
  const name = h("input", { type: "text", required: true, maxlength: "100", autocomplete: "off" });
  const parent = folderSelect(gv, "", "None (top level)");
  dialog("Create a folder", (close) =>
    form(
      async () => {
        try {
          await gv.server.api.createFolder({ guildId: gv.guild.id, name: name.value.trim(), parentFolderId: parent.value });
          close();
          await app.loadChannels(gv);
          app.renderNav();
        } catch (e) {
          app.fail("Creating the folder", e);
        }
      },
      field("Folder name", name),
      gv.folders.length ? field("Inside folder", parent) : null,
      h("p", {}, "Put channels in it from a channel's settings (⚙ in the channel's header), or make them there."),
      h("button", { type: "submit" }, "Create folder"),
    ),
  );
}

/** Renames a folder, moves it into another (not into itself or one inside it), or deletes it. */
export function folderSettings(app: Shell, gv: GuildView, f: Folder): void {
  const name = h("input", { type: "text", required: true, maxlength: "100", value: f.name, autocomplete: "off" });
  // Folders the folder may move into: not itself, nor any folder inside it.
  const inside = new Set([f.id]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const x of gv.folders) {
      if (!inside.has(x.id) && inside.has(x.parentFolderId)) {
        inside.add(x.id);
        grew = true;
      }
    }
  }
  const parent = folderSelect({ ...gv, folders: gv.folders.filter((x) => !inside.has(x.id)) }, f.parentFolderId, "None (top level)");
  dialog(`${f.name} settings`, (close) => [
    form(
      async () => {
        const newName = name.value.trim();
        try {
          await gv.server.api.updateFolder({
            guildId: gv.guild.id,
            folderId: f.id,
            name: newName !== f.name ? newName : undefined,
            parentFolderId: parent.value !== f.parentFolderId ? parent.value : undefined,
          });
          close();
        } catch (e) {
          app.fail("Changing the folder", e);
        }
      },
      field("Folder name", name),
      field("Inside folder", parent),
      h("button", { type: "submit" }, "Save"),
    ),
    h(
      "button",
      {
        type: "button",
        class: "danger",
        onclick: async () => {
          if (!confirm(`Delete the folder ${f.name}? Its channels and folders move up a level; nothing in them is lost.`)) return;
          try {
            await gv.server.api.deleteFolder({ guildId: gv.guild.id, folderId: f.id });
            close();
          } catch (e) {
            app.fail("Deleting the folder", e);
          }
        },
      },
      "Delete folder",
    ),
  ]);
}

/** Renames a channel or thread, moves a channel to a folder, or deletes it. */
export function channelSettings(app: Shell, gv: GuildView, cv: ChannelView): void {
  const c = cv.channel;
  const what = c.isThread ? "thread" : "channel";
  const name = h("input", { type: "text", required: true, maxlength: "100", value: c.name, autocomplete: "off" });
  const folder = folderSelect(gv, c.folderId, "No folder");
  dialog(`${c.isThread ? "↳" : "#"} ${c.name} settings`, (close) => [
    form(
      async () => {
        const newName = name.value.trim();
        try {
          const updated = await gv.server.api.updateChannel({
            channelId: c.id,
            name: newName !== c.name ? newName : undefined,
            folderId: !c.isThread && folder.value !== c.folderId ? folder.value : undefined,
          });
          close();
          app.putChannel(gv, updated);
        } catch (e) {
          app.fail(`Changing the ${what}`, e);
        }
      },
      field(c.isThread ? "Thread name" : "Channel name", name),
      c.isThread ? null : field("Folder", folder),
      h("button", { type: "submit" }, "Save"),
    ),
    h(
      "button",
      {
        type: "button",
        class: "danger",
        onclick: async () => {
          if (!confirm(`Delete ${c.name}${c.isThread ? "" : " and its threads"}, with every message in it?`)) return;
          try {
            await gv.server.api.deleteChannel({ channelId: c.id });
            close();
          } catch (e) {
            app.fail(`Deleting the ${what}`, e);
          }
        },
      },
      `Delete ${what}`,
    ),
  ]);
}

/** Starts a thread rooted at `m` (one per message) and opens it. */
export function startThread(app: Shell, gv: GuildView, cv: ChannelView, m: Message, suggested: string): void {
  const name = h("input", { type: "text", required: true, maxlength: "100", value: suggested, autocomplete: "off" });
  dialog("Start a thread", (close) =>
    form(
      async () => {
        try {
          const t = await cv.server.api.createThread({ parentChannelId: cv.channel.id, rootMessageId: m.id, name: name.value.trim() });
          close();
          app.putChannel(gv, t);
          app.openChannel(channelKey(cv.server, t.id));
        } catch (e) {
          app.fail("Starting the thread", e);
        }
      },
      field("Thread name", name),
      h("button", { type: "submit" }, "Start thread"),
    ),
  );
}
