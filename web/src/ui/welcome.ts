/**
 * The first screen, for a browser that holds no identity for this server's page: create one and
 * register (on this node, or another), import an identity file, or, opened from an invite link,
 * join as a new user here, or go to one's own homeserver's page to join from there.
 */

import { Account } from "../account";
import { bareServer, errorText, normalizeUrl } from "../api";
import { Identity, newDeviceId, newDeviceKey } from "../identity";
import * as link from "../link";
import { deviceName } from "../account";
import { importIdentityFile } from "../identityfile";
import { toHex } from "../protocol/bytes";
import { field, fill, h, toast } from "./dom";

export function welcome(root: HTMLElement, here: string, invite: { host: string; token: string } | null, started: (a: Account) => void): void {
  const err = h("p", { class: "error", role: "alert" });
  const busy = (f: HTMLFormElement, run: () => Promise<void>) => {
    f.addEventListener("submit", async (e) => {
      e.preventDefault();
      const btn = f.querySelector<HTMLButtonElement>("button[type=submit]")!;
      btn.disabled = true;
      err.textContent = "";
      try {
        await run();
      } catch (x) {
        err.textContent = errorText(x);
      } finally {
        btn.disabled = false;
      }
    });
    return f;
  };

  const name = h("input", { type: "text", required: true, maxlength: "32", autocomplete: "nickname" });
  const server = h("input", { type: "url", required: true, value: here });
  const regToken = h("input", { type: "text", autocomplete: "off" });
  const register = busy(
    h(
      "form",
      { "aria-labelledby": "reg-h" },
      h("h2", { id: "reg-h" }, invite ? "New here? Join as a new user of this server" : "Create your account"),
      field("Display name", name),
      invite ? null : field("Homeserver", server, "The server that keeps your account. Your keys stay in this browser."),
      h("details", {}, h("summary", {}, "Registration token"), field("Token from the server's admins (if it asks for one)", regToken)),
      h("button", { type: "submit" }, invite ? "Create account and join" : "Create account"),
    ),
    async () => {
      if (invite) {
        const { account } = await Account.registerByJoin(invite.host, invite.token, name.value.trim(), regToken.value.trim());
        history.replaceState(null, "", "/");
        started(account);
      } else {
        started(await Account.register(normalizeUrl(server.value), name.value.trim(), regToken.value.trim()));
      }
    },
  );

  const file = h("input", { type: "file", accept: ".json,application/json", required: true });
  const importer = busy(
    h(
      "form",
      { "aria-labelledby": "imp-h" },
      h("h2", { id: "imp-h" }, "Use an identity you have"),
      field("Identity file (identity.json from guildhall keygen or an export)", file),
      h("button", { type: "submit" }, "Import and sign in"),
    ),
    async () => {
      const f = file.files?.[0];
      if (!f) return;
      const imported = await importIdentityFile(await f.text(), Date.now());
      const { account, notes } = await Account.fromImport(imported, here);
      for (const n of notes) toast(n, "error");
      started(account);
    },
  );

  const elsewhere = invite
    ? (() => {
        const addr = h("input", { type: "url", required: true, placeholder: "https://your-homeserver.example" });
        const f = h(
          "form",
          { "aria-labelledby": "else-h" },
          h("h2", { id: "else-h" }, "Have an account on another server?"),
          h("p", {}, "Join from your homeserver's page: it keeps your keys and vouches for you here."),
          field("Your homeserver", addr),
          h("button", { type: "submit" }, "Continue there"),
        );
        f.addEventListener("submit", (e) => {
          e.preventDefault();
          try {
            const home = normalizeUrl(addr.value);
            location.href = `${home}/invite/${encodeURIComponent(invite.token)}?host=${encodeURIComponent(invite.host)}`;
          } catch (x) {
            err.textContent = errorText(x);
          }
        });
        return f;
      })()
    : null;

  const linkUser = h("input", { type: "text", required: true, pattern: "[0-9a-f]{64}", autocomplete: "off", spellcheck: "false" });
  const linkHome = h("input", { type: "url", required: true, value: here });
  const linkOut = h("div", { "aria-live": "polite" });
  const linker = busy(
    h(
      "form",
      { "aria-labelledby": "link-h" },
      h("h2", { id: "link-h" }, "Link this browser to your account"),
      h("p", {}, "Your identity key stays on the device that has it; that device certifies a new key made here."),
      field("Your user id (64 hex characters; your profile or `guildhall whoami` shows it)", linkUser),
      field("Homeserver of your account", linkHome),
      linkOut,
      h("button", { type: "submit" }, "Get a link code"),
    ),
    async () => {
      const userId = linkUser.value.trim();
      const home = bareServer(normalizeUrl(linkHome.value));
      const device = await newDeviceKey();
      const deviceId = newDeviceId();
      const code = link.newLinkCode();
      const key = toHex(device.publicKey);
      await link.put(home, `${code}-request`, link.requestPayload(key, deviceId, deviceName()));
      fill(
        linkOut,
        h("p", {}, "On the device that has your identity, approve this code (Your profile → Link a new device, or ", h("code", {}, `guildhall device link-approve ${code}`), "):"),
        h("p", { class: "link-code" }, h("code", { "aria-label": "Link code" }, code)),
        h("p", {}, "and check that it shows this fingerprint: ", h("strong", { "aria-label": "Fingerprint" }, link.requestFingerprint({ type: "guildhall.link-request.v1", device_key: key, device_id: deviceId }))),
        h("p", {}, "Waiting for it (up to 10 minutes)…"),
      );
      const answer = await link.take(home, `${code}-cert`, Date.now() + link.LINK_WAIT_MS);
      if (!answer) throw new Error("no answer came within 10 minutes; get a new code");
      const cert = link.acceptAnswer(answer, userId, key, deviceId, Date.now());
      started(await Account.linked(new Identity(userId, null, device, cert), home.url));
    },
  );

  const preview = h("div", { class: "preview", "aria-live": "polite" });
  fill(root, h("main", { class: "welcome", id: "main" }, h("h1", {}, "guildhall"), h("p", {}, `You are on ${here}.`), preview, err, register, elsewhere, importer, linker));
  if (invite) {
    void (async () => {
      try {
        const s = bareServer(invite.host);
        const p = await s.api.previewInvite({ token: invite.token });
        fill(preview, h("p", { class: "invite-card" }, `You are invited to `, h("strong", {}, p.guildName), ` (#${p.channelName}, ${p.memberCount} member${p.memberCount === 1 ? "" : "s"}) on ${invite.host}.`));
      } catch (x) {
        fill(preview, h("p", { class: "error" }, `This invite can't be used: ${errorText(x)}`));
      }
    })();
  }
}
