// The event stream's reconnect and resume, against a fake server: no gap, no duplicate, a
// refused token renewed, and OUT_OF_RANGE reported as a gap.

import { test } from "node:test";
import assert from "node:assert/strict";
import { ConnectError, Code } from "@connectrpc/connect";
import { EventStream } from "../src/events";

type Ev = { eventId: bigint; event: { case: undefined } };
const ev = (n: number): Ev => ({ eventId: BigInt(n), event: { case: undefined } });

/** A server whose successive SubscribeEvents calls play `scripts` (events, then an error or a hang). */
function fakeServer(scripts: { events: number[]; then: Code | "hang" }[]) {
  const calls: string[] = [];
  let renewed = 0;
  const server = {
    url: "http://fake",
    session: { server: "http://fake", accessToken: "a", refreshToken: "r" },
    renew: async () => {
      renewed++;
      return true;
    },
    api: {
      subscribeEvents(req: { resumeFromEventId: string }, opts: { signal: AbortSignal }) {
        calls.push(req.resumeFromEventId);
        const script = scripts.shift() ?? { events: [], then: "hang" as const };
        return (async function* () {
          for (const n of script.events) yield ev(n);
          if (script.then === "hang") {
            await new Promise((_, reject) => opts.signal.addEventListener("abort", () => reject(new ConnectError("aborted", Code.Canceled))));
          }
          throw new ConnectError("broken", script.then as Code);
        })();
      },
    },
  };
  return { server, calls, renewed: () => renewed };
}

async function until(cond: () => boolean, ms = 5000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 10));
  }
}

test("a broken stream reconnects, resumes after the last event, and drops repeats", async () => {
  const { server, calls } = fakeServer([
    { events: [1, 2, 3], then: Code.Unavailable },
    { events: [3, 4], then: Code.Internal },
    { events: [5], then: "hang" },
  ]);
  const got: number[] = [];
  const handled: string[] = [];
  const s = new EventStream(server as never, null, {
    event: (_s, e) => got.push(Number(e.eventId)),
    gap: () => assert.fail("no gap expected"),
    state: () => {},
    handled: (_s, id) => handled.push(id),
  });
  s.start();
  await until(() => got.length === 5);
  s.stop();
  assert.deepEqual(got, [1, 2, 3, 4, 5]);
  assert.deepEqual(calls, ["", "3", "4"]);
  assert.equal(handled.at(-1), "5");
});

test("a saved position is resumed from; a refused token is renewed; OUT_OF_RANGE is a gap", async () => {
  const { server, calls, renewed } = fakeServer([
    { events: [], then: Code.Unauthenticated },
    { events: [], then: Code.OutOfRange },
    { events: [100], then: "hang" },
  ]);
  let gaps = 0;
  const got: number[] = [];
  const s = new EventStream(server as never, 41n, {
    event: (_s, e) => got.push(Number(e.eventId)),
    gap: () => gaps++,
    state: () => {},
    handled: () => {},
  });
  s.start();
  await until(() => got.length === 1);
  s.stop();
  assert.deepEqual(calls, ["41", "41", ""]);
  assert.equal(renewed(), 1);
  assert.equal(gaps, 1);
  assert.deepEqual(got, [100]);
});
