/**
 * Dialogs: guilds (create, settings, invites, roles, leave), joining by invite (here or on another
 * node), members (profile, roles, kick, ban, DM), DMs and DM invites, and the user's own profile,
 * devices and identity file.
 */

import { ConnectError, Code } from "@connectrpc/connect";
import { PresenceStatus } from "../gen/guildhall/v1/guildhall_pb";
import { errorText, normalizeUrl, sameServer, type Server } from "../api";
import { exportIdentityFile } from "../identityfile";
import * as link from "../link";
import { dialog, field, fill, form, h, toast } from "./dom";
import type { Shell } from "./shell";
import { upload } from "./upload";
import { channelKey, guildKey, presenceLabel, type GuildView } from "./state";

/** The link people open to join: `/invite/TOKEN` on the node that hosts the guild. */
export function inviteLink(server: Server, token: string): string {
  return `${server.url}/invite/${encodeURIComponent(token)}`;
}

/** Reads an invite link (or a bare token, for `fallbackHost`). */
export function parseInvite(text: string, fallbackHost: string): { host: string; token: string } | null {
  const t = text.trim();
  const m = /^(https?:\/\/[^/\s]+)\/invite\/([^/?#\s]+)/.exec(t);
  if (m) return { host: normalizeUrl(m[1]), token: decodeURIComponent(m[2]) };
  if (/^[A-Za-z0-9_-]{4,128}$/.test(t)) return { host: fallbackHost, token: t };
  return null;
}

export function createGuild(app: Shell): void {
  const name = h("input", { type: "text", required: true, maxlength: "100", autocomplete: "off" });
  dialog("Create a guild", (close) =>
    form(
      async () => {
        const home = app.account.home();
        try {
          const r = await home.api.createGuild({ name: name.value.trim() });
          close();
          await app.loadServer(home);
          if (r.guild) app.openGuild(guildKey(home, r.guild.id));
        } catch (e) {
          app.fail("Creating the guild", e);
        }
      },
      field("Guild name", name),
      h("p", {}, `It lives on your homeserver, ${app.account.home().url}.`),
      h("button", { type: "submit" }, "Create"),
    ),
  );
}

export function createInvite(app: Shell, gv: GuildView): void {
  const cur = app.current.channel ? app.channels.get(app.current.channel) : undefined;
  const channelId = cur && cur.guildKey === gv.key ? cur.channel.id : gv.channels[0]?.id;
  if (!channelId) return toast("This guild has no channel to invite to", "error");
  const uses = h("input", { type: "number", min: "0", max: "1000", value: "0" });
  const age = h("select", {}, h("option", { value: "3600" }, "1 hour"), h("option", { value: "86400" }, "1 day"), h("option", { value: "604800", selected: true }, "7 days"), h("option", { value: "0" }, "never"));
  const out = h("div", { class: "invite-out", "aria-live": "polite" });
  dialog("Invite people", () =>
    form(
      async () => {
        try {
          const r = await gv.server.api.generateInvite({ channelId, maxUses: Number(uses.value) || 0, maxAgeSecs: BigInt(age.value) });
          const link = inviteLink(gv.server, r.token);
          const box = h("input", { type: "text", readonly: true, value: link, "aria-label": "Invite link", class: "invite-link" });
          fill(
            out,
            field("Invite link", box, "Anyone with this link can join. People with an account on another server join from there."),
            h(
              "button",
              {
                type: "button",
                onclick: () => {
                  box.select();
                  void navigator.clipboard?.writeText(link).then(() => toast("Copied"));
                },
              },
              "Copy link",
            ),
          );
          box.select();
        } catch (e) {
          app.fail("Creating the invite", e);
        }
      },
      field("How many joins (0: unlimited)", uses),
      field("Expires after", age),
      h("button", { type: "submit" }, "Create invite link"),
      out,
    ),
  );
}

export function joinByLink(app: Shell): void {
  const link = h("input", { type: "text", required: true, autocomplete: "off", placeholder: "https://…/invite/…" });
  dialog("Join with an invite", (close) =>
    form(
      async () => {
        const inv = parseInvite(link.value, app.account.saved.homeserver);
        if (!inv) return toast("That is not an invite link", "error");
        close();
        await openInvite(app, inv.host, inv.token);
      },
      field("Invite link or code", link),
      h("button", { type: "submit" }, "Continue"),
    ),
  );
}

/** Shows what an invite leads to and joins on the person's word (a remote join if the host is not home). */
export async function openInvite(app: Shell, host: string, token: string): Promise<void> {
  const server = app.account.server(host);
  let preview;
  try {
    preview = await server.api.previewInvite({ token });
  } catch (e) {
    app.fail(`Invite on ${server.url}`, e);
    return;
  }
  const existing = app.guilds.get(guildKey(server, preview.guildId));
  if (existing) {
    toast(`You are already in ${preview.guildName}`);
    app.openChannel(channelKey(server, preview.channelId));
    return;
  }
  const remote = !sameServer(server.url, app.account.saved.homeserver);
  dialog(`Join ${preview.guildName}`, (close) =>
    form(
      async () => {
        try {
          const joined = await app.account.join(server.url, token);
          close();
          app.connect(server);
          await app.loadServer(server);
          const g = joined.guild ?? preview.guildId;
          app.openChannel(channelKey(server, preview.channelId || (typeof g === "string" ? g : g.id)));
          history.replaceState(null, "", "/");
        } catch (e) {
          app.fail(`Joining ${preview.guildName}`, e);
        }
      },
      h("p", {}, `${preview.guildName}: #${preview.channelName}, ${preview.memberCount} member${preview.memberCount === 1 ? "" : "s"}.`),
      remote ? h("p", {}, `It is hosted on ${server.url}; your homeserver ${app.account.saved.homeserver} vouches for you, and you stay signed in at home.`) : null,
      h("button", { type: "submit" }, "Join"),
    ),
  );
}

export function guildSettings(app: Shell, gv: GuildView): void {
  const isOwner = gv.guild.ownerId === app.account.userId;
  dialog(`${gv.guild.name} settings`, (close) => {
    const invites = h("div", {});
    const roles = h("div", {});
    const loadInvites = async () => {
      if (!gv.perms.has("invites.manage")) return;
      try {
        const r = await gv.server.api.listInvites({ guildId: gv.guild.id });
        fill(
          invites,
          h("h3", {}, "Invites"),
          h(
            "ul",
            {},
            r.invites.map((i) =>
              h(
                "li",
                {},
                h("code", {}, i.token),
                ` #${i.channelName}, used ${i.uses}${i.maxUses ? `/${i.maxUses}` : ""}${i.isDeactivated ? " (deactivated)" : ""} `,
                i.isDeactivated
                  ? null
                  : h(
                      "button",
                      {
                        type: "button",
                        onclick: async () => {
                          await gv.server.api.deactivateInvite({ guildId: gv.guild.id, token: i.token }).catch((e) => app.fail("Deactivating", e));
                          void loadInvites();
                        },
                      },
                      "Deactivate",
                    ),
              ),
            ),
          ),
        );
      } catch (e) {
        fill(invites, errorText(e));
      }
    };
    const loadRoles = async () => {
      const r = await gv.server.api.listRoles({ guildId: gv.guild.id }).catch(() => null);
      if (!r) return;
      gv.roles = r.roles;
      const name = h("input", { type: "text", maxlength: "100", required: true });
      fill(
        roles,
        h("h3", {}, "Roles"),
        h("ul", {}, r.roles.map((x) => h("li", {}, `${x.name}: ${x.permissions.join(", ") || "no permissions"}`))),
        gv.perms.has("roles.manage")
          ? form(
              async () => {
                try {
                  await gv.server.api.createRole({ guildId: gv.guild.id, name: name.value.trim(), permissions: ["messages.manage", "members.kick"] });
                  void loadRoles();
                } catch (e) {
                  app.fail("Creating the role", e);
                }
              },
              field("New role (may pin, delete messages and kick)", name),
              h("button", { type: "submit" }, "Create role"),
            )
          : null,
      );
    };
    void loadInvites();
    void loadRoles();
    const rename = h("input", { type: "text", value: gv.guild.name, maxlength: "100" });
    return [
      gv.perms.has("guild.manage")
        ? form(
            async () => {
              try {
                const g = await gv.server.api.updateGuild({ guildId: gv.guild.id, name: rename.value.trim() });
                app.addGuild(gv.server, g);
                app.renderNav();
              } catch (e) {
                app.fail("Renaming", e);
              }
            },
            field("Guild name", rename),
            h("button", { type: "submit" }, "Rename"),
          )
        : null,
      invites,
      roles,
      h("h3", {}, "Leave"),
      isOwner
        ? h(
            "button",
            {
              type: "button",
              class: "danger",
              onclick: async () => {
                if (!confirm(`Delete ${gv.guild.name} with all its channels and messages?`)) return;
                try {
                  await gv.server.api.deleteGuild({ guildId: gv.guild.id });
                  close();
                } catch (e) {
                  app.fail("Deleting the guild", e);
                }
              },
            },
            "Delete guild",
          )
        : h(
            "button",
            {
              type: "button",
              class: "danger",
              onclick: async () => {
                if (!confirm(`Leave ${gv.guild.name}?`)) return;
                try {
                  await gv.server.api.leaveGuild({ guildId: gv.guild.id });
                  close();
                } catch (e) {
                  app.fail("Leaving", e);
                }
              },
            },
            "Leave guild",
          ),
    ];
  });
}

export function memberDialog(app: Shell, gv: GuildView, userId: string): void {
  const m = gv.members.get(userId);
  const u = m?.user ?? app.users.get(userId);
  if (!u) return;
  const me = app.account.userId;
  dialog(m?.nick || u.name, (close) => {
    const roleBoxes = gv.perms.has("roles.manage")
      ? gv.roles
          .filter((r) => r.id !== gv.guild.id)
          .map((r) => {
            const box = h("input", { type: "checkbox", checked: m?.roles.includes(r.id) ?? false });
            box.addEventListener("change", async () => {
              try {
                if (box.checked) await gv.server.api.assignRole({ guildId: gv.guild.id, userId, roleId: r.id });
                else await gv.server.api.unassignRole({ guildId: gv.guild.id, userId, roleId: r.id });
              } catch (e) {
                box.checked = !box.checked;
                app.fail("Changing roles", e);
              }
            });
            return h("label", { class: "check" }, box, ` ${r.name}`);
          })
      : [];
    const reason = h("input", { type: "text", maxlength: "512" });
    const act = (what: "kick" | "ban") => async () => {
      if (!confirm(`${what === "kick" ? "Kick" : "Ban"} ${u.name}?`)) return;
      try {
        if (what === "kick") await gv.server.api.kickUser({ guildId: gv.guild.id, userId, reason: reason.value });
        else await gv.server.api.banUser({ guildId: gv.guild.id, userId, reason: reason.value });
        close();
      } catch (e) {
        app.fail(what === "kick" ? "Kicking" : "Banning", e);
      }
    };
    const canKick = gv.perms.has("members.kick") && userId !== me && userId !== gv.guild.ownerId;
    const canBan = gv.perms.has("members.ban") && userId !== me && userId !== gv.guild.ownerId;
    return [
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, "Name"),
        h("dd", {}, u.name),
        u.pronouns ? [h("dt", {}, "Pronouns"), h("dd", {}, u.pronouns)] : null,
        u.bio ? [h("dt", {}, "About"), h("dd", {}, u.bio)] : null,
        h("dt", {}, "Status"),
        h("dd", {}, presenceLabel(app.presence.get(userId))),
        h("dt", {}, "Homeserver"),
        h("dd", {}, u.homeserver || gv.server.url),
        h("dt", {}, "User id"),
        h("dd", {}, h("code", {}, userId)),
      ),
      roleBoxes.length ? h("fieldset", {}, h("legend", {}, "Roles"), roleBoxes) : null,
      userId !== me ? h("button", { type: "button", onclick: () => (close(), void startDm(app, userId, u.homeserver)) }, "Send a direct message") : null,
      canKick || canBan ? field("Reason (optional)", reason) : null,
      canKick ? h("button", { type: "button", class: "danger", onclick: act("kick") }, "Kick") : null,
      canBan ? h("button", { type: "button", class: "danger", onclick: act("ban") }, "Ban") : null,
    ];
  });
}

/**
 * Opens a DM with `target` (§14.1): `CreateDM` on the homeserver, then the invite signed for the
 * target's homeserver and sent with `SendDMInvite`.
 */
export async function startDm(app: Shell, target: string, targetHome: string): Promise<void> {
  const home = app.account.home();
  try {
    const dm = await home.api.createDM({ targetUserId: target });
    const theirs = targetHome && !sameServer(targetHome, home.url) ? app.account.server(targetHome) : home;
    const invite = await app.account.identity.dmInvite(
      await theirs.key(),
      { target, token: dm.token, guildId: dm.guild!.id, hostServerUrl: await home.canonical() },
      Date.now(),
    );
    await home.api.sendDMInvite({ targetUserId: target, invite, targetHomeserverUrl: theirs === home ? "" : await theirs.canonical() });
    await app.loadServer(home);
    app.openGuild(guildKey(home, dm.guild!.id));
    toast("DM invite sent");
  } catch (e) {
    app.fail("Starting the DM", e);
  }
}

export function newDm(app: Shell): void {
  const id = h("input", { type: "text", required: true, pattern: "[0-9a-f]{64}", autocomplete: "off" });
  const hs = h("input", { type: "url", placeholder: app.account.saved.homeserver });
  dialog("New direct message", (close) =>
    form(
      async () => {
        close();
        await startDm(app, id.value.trim(), hs.value.trim());
      },
      field("Their user id", id, "64 hex characters; find it in their profile."),
      field("Their homeserver (if not yours)", hs),
      h("button", { type: "submit" }, "Send DM invite"),
    ),
  );
}

export async function dmInvites(app: Shell): Promise<void> {
  const home = app.account.home();
  let invites;
  try {
    invites = (await home.api.listDMInvites({})).invites.filter((i) => i.status === "pending" && i.targetUserId === app.account.userId);
  } catch (e) {
    return app.fail("DM invites", e);
  }
  dialog("DM invites", (close) =>
    invites.length
      ? h(
          "ul",
          {},
          invites.map((i) =>
            h(
              "li",
              {},
              `From ${app.users.get(i.inviterId)?.name ?? i.inviterId.slice(0, 12) + "…"} (${i.hostServerUrl}) `,
              h(
                "button",
                {
                  type: "button",
                  onclick: async () => {
                    try {
                      const a = await home.api.acceptDMInvite({ inviteId: i.inviteId });
                      const host = app.account.server(a.hostServerUrl || home.url);
                      if (!sameServer(host.url, home.url) || !app.guilds.has(guildKey(host, a.guildId))) await app.account.join(host.url, a.token).catch((e) => {
                        if (!(e instanceof ConnectError && e.code === Code.AlreadyExists)) throw e;
                      });
                      close();
                      app.connect(host);
                      await app.loadServer(host);
                      app.openGuild(guildKey(host, a.guildId));
                      void app.countDmInvites();
                    } catch (e) {
                      app.fail("Accepting", e);
                    }
                  },
                },
                "Accept",
              ),
              h(
                "button",
                {
                  type: "button",
                  onclick: async () => {
                    await home.api.rejectDMInvite({ inviteId: i.inviteId }).catch((e) => app.fail("Declining", e));
                    close();
                    void app.countDmInvites();
                  },
                },
                "Decline",
              ),
            ),
          ),
        )
      : h("p", {}, "No DM invites are waiting."),
  );
}

export function openProfile(app: Shell): void {
  const acc = app.account;
  const me = app.users.get(acc.userId);
  dialog("Your profile", (close) => {
    const name = h("input", { type: "text", value: acc.saved.displayName, maxlength: "32", required: true });
    const pronouns = h("input", { type: "text", value: me?.pronouns ?? "", maxlength: "40" });
    const bio = h("textarea", { maxlength: "190", rows: "3" });
    bio.value = me?.bio ?? "";
    const status = h(
      "select",
      {},
      h("option", { value: String(PresenceStatus.ONLINE) }, "Online"),
      h("option", { value: String(PresenceStatus.BUSY) }, "Busy"),
      h("option", { value: String(PresenceStatus.OFFLINE) }, "Invisible"),
    );
    status.addEventListener("change", () => {
      void acc.home().api.updatePresence({ status: Number(status.value) }).catch((e) => app.fail("Setting status", e));
    });
    const avatar = h("input", { type: "file", accept: "image/png,image/jpeg,image/gif,image/webp" });
    const avatarBar = h("progress", { value: "0", max: "1", hidden: true, "aria-label": "Avatar upload" });
    avatar.addEventListener("change", async () => {
      const f = avatar.files?.[0];
      if (!f) return;
      avatarBar.hidden = false;
      try {
        const r = await upload(acc.home(), f, (s, t) => {
          avatarBar.max = t;
          avatarBar.value = s;
        }, true);
        // Other nodes take profile changes only when signed (UPLOADS.md): sign the new avatar too.
        await acc.home().api.updateUser(await acc.identity.updateUser({ avatarUrl: r.publicUrl }, Date.now()));
        toast("Avatar changed");
      } catch (e) {
        app.fail("Avatar", e);
      } finally {
        avatarBar.hidden = true;
      }
    });
    const devices = h("div", {});
    void listDevices(app, devices);
    return [
      form(
        async () => {
          try {
            const req = await acc.identity.updateUser({ name: name.value.trim(), pronouns: pronouns.value.trim(), bio: bio.value }, Date.now());
            const u = await acc.home().api.updateUser(req);
            acc.saved.displayName = u.name;
            app.users.set(u.id, u);
            await acc.persist();
            app.renderNav();
            toast("Profile saved");
          } catch (e) {
            app.fail("Saving the profile", e);
          }
        },
        field("Display name", name),
        field("Pronouns", pronouns),
        field("About you", bio),
        h("button", { type: "submit" }, "Save profile"),
      ),
      field("Status", status),
      field("Avatar", avatar),
      avatarBar,
      h("h3", {}, "Your identity"),
      h("dl", { class: "facts" }, h("dt", {}, "User id"), h("dd", {}, h("code", {}, acc.userId)), h("dt", {}, "Homeserver"), h("dd", {}, acc.saved.homeserver), h("dt", {}, "This device"), h("dd", {}, h("code", {}, acc.identity.cert.deviceId))),
      h(
        "button",
        {
          type: "button",
          onclick: async () => {
            try {
              const file = await exportIdentityFile(acc.identity, acc.saved.homeserver, Date.now());
              const blob = new Blob([JSON.stringify(file, null, 2)], { type: "application/json" });
              const a = h("a", { href: URL.createObjectURL(blob), download: "identity.json" });
              a.click();
              URL.revokeObjectURL(a.href);
              toast("Saved identity.json: keep it safe, it is your account");
            } catch (e) {
              app.fail("Export", e);
            }
          },
        },
        "Export identity file",
      ),
      h("h3", {}, "Devices"),
      devices,
      acc.identity.idKey ? h("button", { type: "button", onclick: () => linkDevice(app) }, "Link a new device") : null,
      h("h3", {}, "This browser"),
      h(
        "button",
        {
          type: "button",
          class: "danger",
          onclick: async () => {
            if (!confirm("Forget your account in this browser? Without an exported identity file you can't sign in again.")) return;
            await acc.signOut();
            close();
            location.href = "/";
          },
        },
        "Sign out and forget keys",
      ),
    ];
  });
}

async function listDevices(app: Shell, box: HTMLElement): Promise<void> {
  const acc = app.account;
  try {
    const data = await acc.home().api.getMyData({});
    fill(
      box,
      h(
        "ul",
        {},
        data.deviceCertificates.map((d) =>
          h(
            "li",
            {},
            `${d.name || "device"} `,
            h("code", {}, d.id.slice(0, 12)),
            d.id === acc.identity.cert.pubkey ? " (this browser)" : "",
            d.lastSeenAt ? ` last seen ${new Date(Number(d.lastSeenAt)).toLocaleString()}` : "",
            d.id !== acc.identity.cert.pubkey && acc.identity.idKey
              ? h(
                  "button",
                  {
                    type: "button",
                    class: "danger",
                    onclick: async () => {
                      if (!confirm("Revoke this device? It is signed out everywhere and can't sign in again.")) return;
                      try {
                        await acc.home().api.revokeDevice(await acc.identity.revokeDevice(d.id, Date.now()));
                        void listDevices(app, box);
                      } catch (e) {
                        app.fail("Revoking", e);
                      }
                    },
                  },
                  "Revoke",
                )
              : null,
          ),
        ),
      ),
    );
  } catch (e) {
    fill(box, errorText(e));
  }
}

/** The existing device's side of linking (§8.2 step 2): take the request, compare, certify. */
function linkDevice(app: Shell): void {
  const acc = app.account;
  const code = h("input", { type: "text", required: true, pattern: "[0-9a-f]{32}", autocomplete: "off", spellcheck: "false" });
  const out = h("div", { "aria-live": "polite" });
  dialog("Link a new device", (close) =>
    form(
      async () => {
        const home = acc.home();
        const c = code.value.trim();
        if (!link.isLinkCode(c)) return toast("A link code is 32 hex characters", "error");
        try {
          fill(out, h("p", {}, "Looking for the request…"));
          const payload = await link.take(home, `${c}-request`, Date.now() + 60_000);
          if (!payload) return void fill(out, h("p", { class: "error" }, "No request with that code (it lasts 10 minutes); check the code."));
          const req = link.parseRequest(payload);
          const answer = async (ok: boolean) => {
            try {
              await link.put(home, `${c}-cert`, ok ? await link.certPayload(acc.identity.idKey!, req, Date.now()) : link.refusalPayload());
              toast(ok ? "Device linked: it signs in by itself now" : "Refused");
              close();
              if (ok) void listDevices(app, document.createElement("div"));
            } catch (e) {
              app.fail("Linking", e);
            }
          };
          fill(
            out,
            h("p", {}, `Device "${req.device_name || req.device_id}" asks to be linked. Its fingerprint:`),
            h("p", {}, h("strong", {}, link.requestFingerprint(req))),
            h("p", {}, "Link it only if the new device shows the same fingerprint."),
            h("button", { type: "button", onclick: () => answer(true) }, "They match: link it"),
            h("button", { type: "button", class: "danger", onclick: () => answer(false) }, "They differ: refuse"),
          );
        } catch (e) {
          app.fail("Linking", e);
        }
      },
      field("Link code shown on the new device", code),
      h("button", { type: "submit" }, "Find the device"),
      out,
    ),
  );
}
