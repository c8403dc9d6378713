/**
 * The live event stream of one server (`SubscribeEvents`, docs/EVENTS.md): one stream per server
 * carries every guild's events, so a browser needs one HTTP connection per server for them.
 * When the stream breaks it reconnects, waiting 250 ms and doubling up to 30 s, and resumes after
 * the last event it handled: no gap, and an event id already handled is dropped, so no duplicate.
 * A refused token is renewed first; `OUT_OF_RANGE` (events that old are gone) tells the owner to
 * reload what it shows, and the stream follows from the present.
 */

import { ConnectError, Code } from "@connectrpc/connect";
import type { StreamResponse } from "./gen/guildhall/v1/guildhall_pb";
import type { Server } from "./api";

export type StreamState = "connecting" | "live" | "waiting" | "signed-out";

export interface StreamOwner {
  event(server: Server, ev: StreamResponse): void;
  /** Events were missed (pruned): reload history and members. */
  gap(server: Server): void;
  state(server: Server, state: StreamState, detail: string): void;
  /** Remember the last handled id (saved so a reload resumes too). */
  handled(server: Server, eventId: string): void;
}

const FIRST_WAIT_MS = 250;
const MAX_WAIT_MS = 30_000;

export class EventStream {
  private abort: AbortController | null = null;
  private stopped = false;
  private wake: (() => void) | null = null;
  /** How many times the stream was opened (the end-to-end test reads it to see reconnects). */
  connects = 0;

  constructor(
    readonly server: Server,
    private lastId: bigint | null,
    private readonly owner: StreamOwner,
  ) {}

  start(): void {
    void this.run();
  }

  stop(): void {
    this.stopped = true;
    this.abort?.abort();
    this.wake?.();
  }

  /**
   * Breaks the current connection as a dropped network would: the stream reconnects and resumes
   * after the last event it handled.
   */
  interrupt(): void {
    this.abort?.abort();
  }

  /** Reconnect now instead of waiting out the backoff (the network came back). */
  retryNow(): void {
    this.wake?.();
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.wake = done;
    });
  }

  private async run(): Promise<void> {
    let wait = FIRST_WAIT_MS;
    while (!this.stopped) {
      const session = this.server.session;
      if (!session) {
        this.owner.state(this.server, "signed-out", "no session on this server");
        return;
      }
      this.abort = new AbortController();
      this.connects++;
      this.owner.state(this.server, "connecting", "");
      try {
        const stream = this.server.api.subscribeEvents(
          { resumeFromEventId: this.lastId === null ? "" : this.lastId.toString() },
          { signal: this.abort.signal, timeoutMs: 0 },
        );
        let announced = false;
        for await (const ev of stream) {
          if (!announced) {
            this.owner.state(this.server, "live", "");
            announced = true;
          }
          wait = FIRST_WAIT_MS;
          if (this.lastId !== null && ev.eventId <= this.lastId) continue;
          this.lastId = ev.eventId;
          this.owner.event(this.server, ev);
          this.owner.handled(this.server, ev.eventId.toString());
        }
        if (this.stopped) return;
        this.owner.state(this.server, "waiting", "the stream ended");
      } catch (e) {
        if (this.stopped) return;
        const err = ConnectError.from(e);
        if (err.code === Code.Unauthenticated) {
          if (await this.server.renew(session.accessToken).catch(() => false)) continue;
          this.owner.state(this.server, "signed-out", err.rawMessage);
          if (!this.server.session) return;
        } else if (err.code === Code.OutOfRange) {
          this.lastId = null;
          this.owner.gap(this.server);
          continue;
        } else {
          this.owner.state(this.server, "waiting", err.rawMessage || "disconnected");
        }
      }
      await this.sleep(wait);
      wait = Math.min(wait * 2, MAX_WAIT_MS);
    }
  }
}
