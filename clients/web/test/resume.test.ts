// followConversation against a real parleyd behind a proxy that the tests
// break: cut connections and silently stalled ones are resumed from the
// last seq, with nothing lost, doubled or out of order.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import {
  Channel,
  Code,
  ConnectError,
  Presence,
  StreamStalledError,
  createParleyClient,
  followConversation,
  isRetryable,
  type Event,
  type ParleyClient,
  type StreamState,
  type SubscribeResponse,
} from "../src/index.js";
import { startParleyd, type Parleyd } from "./parleyd.js";
import { startProxy, type Proxy } from "./proxy.js";

let parleyd: Parleyd;
let proxy: Proxy;

before(async () => {
  // Heartbeats every second, so that a watchdog of a few seconds tells a
  // quiet stream from a dead one.
  parleyd = await startParleyd(["-heartbeat", "1s"]);
  proxy = await startProxy(parleyd.baseUrl);
});

after(async () => {
  await proxy?.close();
  await parleyd?.stop();
});

/** Drains an async iterable in the background, letting a test wait for what it received. */
function drain<T>(items: AsyncIterable<T>) {
  const got: T[] = [];
  let wake = () => {};
  let finished = false;
  const done = (async () => {
    try {
      for await (const item of items) {
        got.push(item);
        wake();
      }
    } finally {
      finished = true;
      wake();
    }
  })();
  done.catch(() => {}); // awaited by the tests that expect a failure
  return {
    got,
    done,
    /** Waits until pred holds for what was received. */
    async until(pred: (got: T[]) => boolean, what: string, timeoutMs = 20_000): Promise<void> {
      const deadline = Date.now() + timeoutMs;
      while (!pred(got)) {
        assert.ok(!finished, `the stream ended before ${what}`);
        const left = deadline - Date.now();
        assert.ok(left > 0, `timed out waiting for ${what}`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    },
  };
}

/** The events among a stream's items. */
function events(items: SubscribeResponse[]): Event[] {
  return items.flatMap((r) => (r.item.case === "event" ? [r.item.value] : []));
}

/** The texts of the messages among items. */
function texts(items: SubscribeResponse[]): string[] {
  return events(items).flatMap((e) => (e.kind.case === "messagePosted" ? [e.kind.value.text] : []));
}

/** Starts a guest chat; returns its id, its guest token and a direct client of the guest. */
async function guestChat(first: string): Promise<{ id: string; token: string; direct: ParleyClient }> {
  const started = await createParleyClient(parleyd.baseUrl).session.startGuestChat({
    requestId: crypto.randomUUID(),
    name: "Ada",
    email: "ada@example.com",
    issueType: "billing",
    firstMessage: first,
    channel: Channel.WEB_PORTAL,
  });
  const token = started.guestToken;
  return { id: started.conversation!.id, token, direct: createParleyClient(parleyd.baseUrl, { token }) };
}

/** Makes the agent of token available until signal aborts, and has them accept the chat. */
async function takeChat(token: string, conversationId: string, signal: AbortSignal): Promise<void> {
  const agent = createParleyClient(parleyd.baseUrl, { token });
  await agent.routing.setPresence({ presence: Presence.AVAILABLE });
  signal.addEventListener("abort", () => void agent.routing.setPresence({ presence: Presence.AWAY }).catch(() => {}));
  const work = agent.routing.watchWork({}, { signal });
  for await (const res of work) {
    if (res.item.case === "offer" && res.item.value.conversation?.id === conversationId) {
      await agent.routing.acceptOffer({ offerId: res.item.value.id });
      return;
    }
  }
  assert.fail("no offer of the chat");
}

/** Asserts that evs are the conversation's log from its first event: each seq once, in order. */
function assertWholeLog(evs: Event[]): void {
  evs.forEach((e, i) => assert.equal(e.seq, BigInt(i + 1), `event ${i} has seq ${e.seq}`));
}

test("a cut stream resumes from its last seq: nothing lost or doubled, the token asked again", async (t) => {
  const abort = new AbortController();
  t.after(() => abort.abort());
  const chat = await guestChat("m0");
  // Beth takes the chat and follows it. (Not the guest: closing revokes
  // the guest token, and a guest stream that is down or being re-checked
  // at that moment cannot get the closing event.)
  await takeChat("ps_demo_agent_beth", chat.id, abort.signal);
  let asked = 0;
  const viaProxy = createParleyClient(proxy.url, {
    token: () => {
      asked++;
      return "ps_demo_agent_beth";
    },
  });
  const states: [StreamState, unknown][] = [];
  const opened = proxy.opened;
  const stream = drain(
    followConversation(viaProxy, chat.id, 0, {
      signal: abort.signal,
      minBackoffMs: 20,
      maxBackoffMs: 200,
      onStateChange: (s, err) => states.push([s, err]),
    }),
  );
  const send = (text: string) => chat.direct.messaging.sendMessage({ conversationId: chat.id, clientMessageId: text, text });

  await stream.until((got) => texts(got).includes("m0"), "the first message");
  await send("m1");
  await stream.until((got) => texts(got).includes("m1"), "m1");

  // Cut while idle; what is sent meanwhile arrives after the resume.
  proxy.cut();
  await send("m2");
  await send("m3");
  await stream.until((got) => texts(got).includes("m3"), "m3 after the cut");

  // Cut again at once, and while messages are on their way.
  const sending = Promise.all([send("m4"), send("m5")]);
  proxy.cut();
  await sending;
  await stream.until((got) => texts(got).includes("m5"), "m5 after the second cut");

  // Closing ends the iteration normally, after the closing event.
  await chat.direct.session.closeConversation({ conversationId: chat.id, reason: "done" });
  await stream.done;
  const evs = events(stream.got);
  assertWholeLog(evs);
  assert.equal(evs.at(-1)?.kind.case, "conversationClosed");
  // m4 and m5 were sent at once, in either order.
  assert.deepEqual(texts(stream.got).sort(), ["m0", "m1", "m2", "m3", "m4", "m5"]);
  assert.ok(!stream.got.some((r) => r.item.case === "heartbeat"), "heartbeats are not yielded");

  const retries = states.filter(([s]) => s === "retrying");
  assert.ok(retries.length >= 2, `retried ${retries.length} times`);
  for (const [, err] of retries) {
    assert.ok(isRetryable(err), `retried after ${String(err)}`);
  }
  assert.ok(proxy.opened - opened >= 3, "each resume opened a new connection");
  assert.ok(asked >= 3, `the token was asked ${asked} times`);
  assert.deepEqual(states[0], ["connecting", undefined]);
  assert.deepEqual(states.at(-1), ["ended", undefined]);
  assert.ok(states.some(([s]) => s === "live"));
});

test("a silently stalled stream is noticed by the watchdog and resumed", async (t) => {
  const abort = new AbortController();
  t.after(() => abort.abort());
  const chat = await guestChat("s0");
  const viaProxy = createParleyClient(proxy.url, { token: chat.token });
  const states: [StreamState, unknown][] = [];
  const stream = drain(
    followConversation(viaProxy, chat.id, 0, {
      signal: abort.signal,
      heartbeatTimeoutMs: 2500,
      minBackoffMs: 20,
      maxBackoffMs: 200,
      onStateChange: (s, err) => states.push([s, err]),
    }),
  );
  await stream.until((got) => texts(got).includes("s0"), "the first message");

  // A quiet stream is not a dead one: heartbeats keep the watchdog away.
  await new Promise((resolve) => setTimeout(resolve, 3500));
  assert.ok(!states.some(([s]) => s === "retrying"), "no retry while heartbeats arrive");

  // Stalled four times over: each time the watchdog notices and the follow
  // resumes on a new connection (a transport's read on a dead connection
  // does not always end when its call is aborted; the follow must not wait
  // for it).
  for (const text of ["s1", "s2", "s3", "s4"]) {
    const stalledAt = Date.now();
    const retriesBefore = states.filter(([s]) => s === "retrying").length;
    proxy.stall();
    await chat.direct.messaging.sendMessage({ conversationId: chat.id, clientMessageId: text, text });
    await stream.until((got) => texts(got).includes(text), `${text} after the stall`).catch((err: unknown) => {
      // What the follow went through tells a slow machine from a stuck resume.
      const seen = states.map(([s, e], i) => `${i}: ${s}${e === undefined ? "" : ` (${String(e)})`}`).join("; ");
      throw new Error(`${String(err)}; states: ${seen}; proxy connections: ${proxy.opened}`);
    });
    const waited = Date.now() - stalledAt;
    assert.ok(waited >= 1400, `resumed after ${waited} ms, before the watchdog could fire`);
    const retry = states.filter(([s]) => s === "retrying")[retriesBefore];
    assert.ok(retry?.[1] instanceof StreamStalledError, `retried after ${String(retry?.[1])}`);
  }

  // Aborting ends the iteration normally.
  abort.abort();
  await stream.done;
  assertWholeLog(events(stream.got));
  assert.deepEqual(texts(stream.got), ["s0", "s1", "s2", "s3", "s4"]);
  assert.deepEqual(states.at(-1), ["ended", undefined]);
});

test("following from a seq yields only what comes after it", async (t) => {
  const abort = new AbortController();
  t.after(() => abort.abort());
  const chat = await guestChat("a0");
  await chat.direct.messaging.sendMessage({ conversationId: chat.id, clientMessageId: "a1", text: "a1" });
  const head = (await chat.direct.session.getConversation({ conversationId: chat.id })).conversation!.lastSeq;
  const stream = drain(followConversation(chat.direct, chat.id, Number(head) - 1, { signal: abort.signal }));
  await stream.until((got) => events(got).length === 1, "the last event");
  await chat.direct.messaging.sendMessage({ conversationId: chat.id, clientMessageId: "a2", text: "a2" });
  await stream.until((got) => texts(got).includes("a2"), "a2");
  abort.abort();
  await stream.done;
  assert.deepEqual(events(stream.got).map((e) => e.seq), [head, head + 1n]);
  assert.deepEqual(texts(stream.got), ["a1", "a2"]);
});

test("a non-retryable error ends the follow with that error", async (t) => {
  const abort = new AbortController();
  t.after(() => abort.abort());
  const chat = await guestChat("x0");
  const other = await guestChat("y0");
  const stranger = createParleyClient(proxy.url, { token: other.token });
  const states: [StreamState, unknown][] = [];
  const stream = drain(followConversation(stranger, chat.id, 0, { signal: abort.signal, onStateChange: (s, err) => states.push([s, err]) }));
  await assert.rejects(stream.done, (err: unknown) => {
    assert.equal(ConnectError.from(err).code, Code.PermissionDenied);
    return true;
  });
  assert.deepEqual(
    states.map(([s]) => s),
    ["connecting", "ended"],
  );
  assert.equal(ConnectError.from(states[1][1]).code, Code.PermissionDenied);
});
