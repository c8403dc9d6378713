/**
 * What the chat pane (`chat.ts`) and the dialogs (`panels.ts`) may ask of the signed-in client:
 * its state, navigation, and reporting errors. `App` (`app.ts`) implements it and hands itself to
 * them, so they depend on this interface and never on `app.ts`: imports run one way, app → chat,
 * panels → shell → state.
 */

import type { Channel, Guild, PresenceStatus, User } from "../gen/guildhall/v1/guildhall_pb";
import type { Account } from "../account";
import type { Server } from "../api";
import type { ChannelView, GuildView } from "./state";

export interface Shell {
  readonly account: Account;
  /** Guilds and channels by `guildKey` / `channelKey` (state.ts). */
  readonly guilds: Map<string, GuildView>;
  readonly channels: Map<string, ChannelView>;
  readonly users: Map<string, User>;
  readonly presence: Map<string, PresenceStatus>;
  /** The open guild and channel (keys), if any. */
  readonly current: { readonly guild: string | null; readonly channel: string | null };

  /** A DM's name: the other people in it. */
  dmName(gv: GuildView): string;
  /** Reports a failed call to the person (a toast), saying so if they were signed out. */
  fail(what: string, e: unknown): void;

  /** Draws the guild and channel lists again. */
  renderNav(): void;
  /** Opens a channel (by key), at message `at` if given; or a guild at its last-open channel. */
  openChannel(key: string, at?: string): void;
  openGuild(key: string): void;

  /** Opens the event stream of a server the account has a session on now (once per server). */
  connect(server: Server): void;
  /** Lists a server's guilds and their channels again. */
  loadServer(server: Server): Promise<void>;
  /** Adds or updates a guild in what the client knows. */
  addGuild(server: Server, g: Guild): GuildView;
  /** Lists a guild's channels, folders and the caller's permissions again. */
  loadChannels(gv: GuildView): Promise<void>;
  /** Adds or updates a channel or thread of a guild and draws the lists again. */
  putChannel(gv: GuildView, c: Channel): void;
  /** Counts the DM invites waiting at the homeserver again. */
  countDmInvites(): Promise<void>;
}
