// The resume logic of followWork and followConversation against scripted
// streams (no server): cursors per conversation, dropped repeats, released
// conversations forgotten (also those released without assigned after a
// reopen), synced yielded and the cursors it leaves over forgotten,
// RetryInfo honoured, the watchdog, and the failures that end a follow.
import assert from "node:assert/strict";
import { test } from "node:test";

import { create } from "@bufbuild/protobuf";
import { BinaryWriter } from "@bufbuild/protobuf/wire";

import {
  Code,
  ConnectError,
  ConversationSchema,
  EventSchema,
  FollowWorkResponseSchema,
  OfferSchema,
  StreamStalledError,
  SubscribeResponseSchema,
  followConversation,
  followWork,
  type FollowWorkRequest,
  type FollowWorkResponse,
  type ParleyClient,
  type StreamState,
  type SubscribeRequest,
  type SubscribeResponse,
} from "../src/index.js";

/** One scripted stream: its items, then how it ends (an error, or "hang" until aborted). */
interface Script<T> {
  items: T[];
  end?: ConnectError | "hang";
}

/** Plays scripts in turn, one per opened stream, recording each request and when it came. */
function player<Req, T>(scripts: Script<T>[]) {
  const requests: { req: Req; at: number }[] = [];
  const open = (req: Req, opts: { signal?: AbortSignal }): AsyncIterable<T> => {
    requests.push({ req, at: Date.now() });
    const script = scripts.shift();
    assert.ok(script, "no more streams scripted");
    return (async function* () {
      for (const item of script.items) {
        yield item;
      }
      if (script.end === "hang") {
        await new Promise((_, reject) => {
          const cancel = () => reject(new ConnectError("aborted", Code.Canceled));
          if (opts.signal?.aborted) cancel();
          opts.signal?.addEventListener("abort", cancel, { once: true });
        });
      } else if (script.end) {
        throw script.end;
      }
    })();
  };
  return { requests, open };
}

/** A ConnectError with a RetryInfo detail of ms. */
function withRetry(code: Code, ms: number): ConnectError {
  const duration = new BinaryWriter().uint32(16).int32(ms * 1e6).finish(); // field 2, nanos
  const info = new BinaryWriter().uint32(10).bytes(duration).finish(); // field 1, retry_delay
  const err = new ConnectError("try later", code);
  err.details = [{ type: "google.rpc.RetryInfo", value: info }];
  return err;
}

const work = (conversationId: string, item: FollowWorkResponse["item"]) => create(FollowWorkResponseSchema, { conversationId, item });
const assigned = (id: string) => work(id, { case: "assigned", value: create(ConversationSchema, { id }) });
const released = (id: string) => work(id, { case: "released", value: create(ConversationSchema, { id }) });
const workEvent = (id: string, seq: number) => work(id, { case: "event", value: create(EventSchema, { seq: BigInt(seq) }) });
const heartbeat = () => work("", { case: "heartbeat", value: {} as never });
const synced = () => work("", { case: "synced", value: {} as never });
const offer = (id: string) => work(id, { case: "offer", value: create(OfferSchema, { id: `offer-${id}` }) });

/** A short description of an item of followWork, to compare. */
function describe(r: FollowWorkResponse): string {
  return r.item.case === "event" ? `${r.conversationId}#${r.item.value.seq}` : `${r.item.case} ${r.conversationId}`;
}

/** The cursors of a FollowWorkRequest, as a record. */
function cursorsOf(req: FollowWorkRequest): Record<string, number> {
  return Object.fromEntries(req.cursors.map((c) => [c.conversationId, Number(c.afterSeq)]));
}

test("followWork resumes each conversation from its own last seq", async () => {
  const play = player<FollowWorkRequest, FollowWorkResponse>([
    { items: [assigned("a"), workEvent("a", 5), offer("b"), heartbeat(), workEvent("a", 6)], end: withRetry(Code.Unavailable, 120) },
    // The server repeats what it announced; a repeated event is dropped.
    { items: [assigned("a"), workEvent("a", 6), workEvent("a", 7), assigned("c"), workEvent("c", 1), released("a")], end: new ConnectError("cut", Code.Unknown) },
    { items: [assigned("c"), workEvent("c", 2)], end: new ConnectError("no longer an agent", Code.PermissionDenied) },
  ]);
  const client = { routing: { followWork: play.open } } as unknown as ParleyClient;
  const states: StreamState[] = [];
  const got: string[] = [];
  await assert.rejects(
    (async () => {
      for await (const r of followWork(client, { cursors: { a: 4, gone: 9 }, minBackoffMs: 5, maxBackoffMs: 10, onStateChange: (s) => states.push(s) })) {
        got.push(describe(r));
      }
    })(),
    (err: unknown) => ConnectError.from(err).code === Code.PermissionDenied,
  );
  assert.deepEqual(got, ["assigned a", "a#5", "offer b", "a#6", "assigned a", "a#7", "assigned c", "c#1", "released a", "assigned c", "c#2"]);
  assert.deepEqual(
    play.requests.map((r) => cursorsOf(r.req)),
    [{ a: 4, gone: 9 }, { a: 6, gone: 9 }, { gone: 9, c: 1 }],
  );
  // The server's RetryInfo is honoured over the shorter backoff.
  assert.ok(play.requests[1].at - play.requests[0].at >= 115, "waited for the retry delay");
  assert.deepEqual(states, ["connecting", "live", "retrying", "connecting", "live", "retrying", "connecting", "live", "ended"]);
});

test("followWork yields what left the agent while it was away, then released and synced, and forgets what synced leaves over", async () => {
  const cut = () => new ConnectError("cut", Code.Unavailable);
  const play = player<FollowWorkRequest, FollowWorkResponse>([
    // gone left the agent before this follow began: the rest of what the
    // agent may read, then released, with no assigned. stale is not sent at
    // all: synced says it is no longer the agent's.
    {
      items: [assigned("a"), workEvent("a", 5), workEvent("gone", 8), workEvent("gone", 9), released("gone"), assigned("b"), workEvent("b", 3), offer("x"), synced(), workEvent("a", 6), workEvent("b", 4)],
      end: cut(),
    },
    // b was transferred away while the stream was down: its events after
    // the cursor (a repeat among them), then released; a's repeat is dropped.
    {
      items: [workEvent("b", 4), workEvent("b", 5), released("b"), assigned("a"), workEvent("a", 6), workEvent("a", 7), synced()],
      end: cut(),
    },
    // A stream that breaks before its synced forgets nothing.
    { items: [offer("y")], end: cut() },
    { items: [assigned("a"), workEvent("a", 7), workEvent("a", 8), synced()], end: new ConnectError("no longer an agent", Code.PermissionDenied) },
  ]);
  const client = { routing: { followWork: play.open } } as unknown as ParleyClient;
  const got: string[] = [];
  await assert.rejects(
    (async () => {
      for await (const r of followWork(client, { cursors: { a: 4, b: 2, gone: 7, stale: 3 }, minBackoffMs: 1, maxBackoffMs: 2 })) {
        got.push(describe(r));
      }
    })(),
    (err: unknown) => ConnectError.from(err).code === Code.PermissionDenied,
  );
  assert.deepEqual(got, [
    "assigned a", "a#5", "gone#8", "gone#9", "released gone", "assigned b", "b#3", "offer x", "synced ", "a#6", "b#4",
    "b#5", "released b", "assigned a", "a#7", "synced ",
    "offer y",
    "assigned a", "a#8", "synced ",
  ]);
  assert.deepEqual(
    play.requests.map((r) => cursorsOf(r.req)),
    [{ a: 4, b: 2, gone: 7, stale: 3 }, { a: 6, b: 4 }, { a: 7 }, { a: 7 }],
  );
});

test("followWork names at most 200 cursors, drops the repeats of a held conversation it could not name, and forgets the rest on synced", async () => {
  const cursors: Record<string, number> = {};
  for (let i = 0; i < 250; i++) cursors[`c${i}`] = 5;
  const play = player<FollowWorkRequest, FollowWorkResponse>([
    // c220 is held but was not named: its whole log is replayed.
    { items: [assigned("c220"), ...[1, 2, 3, 4, 5, 6].map((seq) => workEvent("c220", seq)), synced()], end: new ConnectError("cut", Code.Unavailable) },
    { items: [assigned("c220"), workEvent("c220", 7)], end: new ConnectError("no longer an agent", Code.PermissionDenied) },
  ]);
  const client = { routing: { followWork: play.open } } as unknown as ParleyClient;
  const got: string[] = [];
  await assert.rejects(
    (async () => {
      for await (const r of followWork(client, { cursors, minBackoffMs: 1, maxBackoffMs: 2 })) {
        got.push(describe(r));
      }
    })(),
    (err: unknown) => ConnectError.from(err).code === Code.PermissionDenied,
  );
  assert.deepEqual(got, ["assigned c220", "c220#6", "synced ", "assigned c220", "c220#7"]);
  assert.equal(play.requests[0].req.cursors.length, 200);
  assert.deepEqual(cursorsOf(play.requests[1].req), { c220: 6 });
});

test("the watchdog reopens a silent stream, but not while the consumer holds an item", async () => {
  const sub = (seq: number) => create(SubscribeResponseSchema, { item: { case: "event", value: create(EventSchema, { seq: BigInt(seq) }) } });
  const play = player<SubscribeRequest, SubscribeResponse>([
    { items: [sub(1), sub(2)], end: "hang" },
    { items: [sub(2), sub(3)], end: "hang" },
  ]);
  const client = { messaging: { subscribe: play.open } } as unknown as ParleyClient;
  const abort = new AbortController();
  const failures: unknown[] = [];
  const seqs: bigint[] = [];
  for await (const r of followConversation(client, "conv", 0, {
    signal: abort.signal,
    heartbeatTimeoutMs: 80,
    minBackoffMs: 1,
    onStateChange: (s, err) => s === "retrying" && failures.push(err),
  })) {
    assert.equal(r.item.case, "event");
    seqs.push(r.item.value.seq);
    if (seqs.length === 1) {
      // Holding an item for longer than the timeout is not silence.
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    if (seqs.length === 3) {
      abort.abort();
    }
  }
  assert.deepEqual(seqs, [1n, 2n, 3n]);
  assert.equal(failures.length, 1);
  assert.ok(failures[0] instanceof StreamStalledError);
  assert.deepEqual(
    play.requests.map((r) => r.req.afterSeq),
    [0n, 2n],
  );
});

test("a stream that ends without its closing event is reopened; a refusal before any item ends the follow", async () => {
  const closed = create(SubscribeResponseSchema, {
    item: { case: "event", value: create(EventSchema, { seq: 2n, kind: { case: "conversationClosed", value: {} } }) },
  });
  const first = create(SubscribeResponseSchema, { item: { case: "event", value: create(EventSchema, { seq: 1n }) } });
  const play = player<SubscribeRequest, SubscribeResponse>([
    { items: [first] }, // ends early, without an error
    { items: [], end: new ConnectError("token expired", Code.Unauthenticated) },
  ]);
  const client = { messaging: { subscribe: play.open } } as unknown as ParleyClient;
  const seqs: bigint[] = [];
  await assert.rejects(
    (async () => {
      for await (const r of followConversation(client, "conv", 0, { minBackoffMs: 1 })) {
        if (r.item.case === "event") seqs.push(r.item.value.seq);
      }
    })(),
    (err: unknown) => ConnectError.from(err).code === Code.Unauthenticated,
  );
  assert.deepEqual(seqs, [1n]);

  // An expired token on a stream that was working is retried once, asking
  // the token source again; the closing event then ends the follow.
  const again = player<SubscribeRequest, SubscribeResponse>([
    { items: [first], end: new ConnectError("token expired", Code.Unauthenticated) },
    { items: [first, closed], end: "hang" },
  ]);
  const refreshed = { messaging: { subscribe: again.open } } as unknown as ParleyClient;
  const all: bigint[] = [];
  for await (const r of followConversation(refreshed, "conv", 0, { minBackoffMs: 1 })) {
    if (r.item.case === "event") all.push(r.item.value.seq);
  }
  assert.deepEqual(all, [1n, 2n]);
  assert.deepEqual(
    again.requests.map((r) => r.req.afterSeq),
    [0n, 1n],
  );
});
