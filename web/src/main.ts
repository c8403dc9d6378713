/**
 * Entry point: reads the address (`/` or `/invite/TOKEN[?host=URL]`), then shows the client for
 * the account saved in this browser, or the welcome screen.
 */

import { Account } from "./account";
import { normalizeUrl } from "./api";
import { App } from "./ui/app";
import { welcome } from "./ui/welcome";

function inviteFromLocation(): { host: string; token: string } | null {
  const m = /^\/invite\/([^/]+)\/?$/.exec(location.pathname);
  if (!m) return null;
  const host = new URLSearchParams(location.search).get("host");
  try {
    return { host: normalizeUrl(host || location.origin), token: decodeURIComponent(m[1]) };
  } catch {
    return null;
  }
}

async function main(): Promise<void> {
  const root = document.getElementById("root")!;
  const invite = inviteFromLocation();
  const start = (account: Account, inv: typeof invite) => {
    const app = new App(account);
    (window as unknown as { guildhall: App }).guildhall = app;
    void app.start(root, inv);
  };
  const account = await Account.load();
  if (account) start(account, invite);
  else welcome(root, location.origin, invite, (a) => start(a, invite && a.saved.homeserver !== invite.host ? invite : null));
}

void main();
