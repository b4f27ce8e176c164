// followWork against a real parleyd behind a proxy that the test breaks:
// an agent's chats, on one stream, carried through a cut and a silent stall
// with every event of every chat yielded once and in order; chats that left
// the agent while its stream was down (transferred, closed) get the rest of
// what it may read and released when it reopens, then synced.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import {
  Channel,
  Presence,
  StreamStalledError,
  createParleyClient,
  followWork,
  isRetryable,
  type FollowWorkResponse,
  type StreamState,
} from "../src/index.js";
import { startParleyd, type Parleyd } from "./parleyd.js";
import { startProxy, type Proxy } from "./proxy.js";

let parleyd: Parleyd;
let proxy: Proxy;

before(async () => {
  parleyd = await startParleyd(["-heartbeat", "1s"]);
  proxy = await startProxy(parleyd.baseUrl);
});

after(async () => {
  await proxy?.close();
  await parleyd?.stop();
});

/** The items received so far, and a way to wait for more. */
function drain(items: AsyncIterable<FollowWorkResponse>) {
  const got: FollowWorkResponse[] = [];
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
  done.catch(() => {});
  return {
    got,
    done,
    /** Waits until pred holds for what was received. */
    async until(pred: (got: FollowWorkResponse[]) => boolean, what: string, timeoutMs = 20_000): Promise<void> {
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

/** The texts of the messages of conversation id among items. */
function texts(items: FollowWorkResponse[], id: string): string[] {
  return items.flatMap((r) =>
    r.conversationId === id && r.item.case === "event" && r.item.value.kind.case === "messagePosted" ? [r.item.value.kind.value.text] : [],
  );
}

test("an agent's chats on one stream survive a cut and a stall: every event once, in order", async (t) => {
  const abort = new AbortController();
  t.after(() => abort.abort());
  let asked = 0;
  const beth = createParleyClient(proxy.url, {
    token: () => {
      asked++;
      return "ps_demo_agent_beth";
    },
  });
  const direct = createParleyClient(parleyd.baseUrl, { token: "ps_demo_agent_beth" });
  const states: [StreamState, unknown][] = [];
  const stream = drain(
    followWork(beth, {
      signal: abort.signal,
      heartbeatTimeoutMs: 3000,
      minBackoffMs: 20,
      maxBackoffMs: 200,
      onStateChange: (s, err) => states.push([s, err]),
    }),
  );
  await direct.routing.setPresence({ presence: Presence.AVAILABLE });
  t.after(() => direct.routing.setPresence({ presence: Presence.AWAY }));

  // Two guests start chats; Beth accepts both offers from the stream.
  const chats: { id: string; guest: ReturnType<typeof createParleyClient> }[] = [];
  for (const first of ["a0", "b0"]) {
    const started = await createParleyClient(parleyd.baseUrl).session.startGuestChat({
      requestId: crypto.randomUUID(),
      name: "Ada",
      email: "ada@example.com",
      issueType: "billing",
      firstMessage: first,
      channel: Channel.WEB_PORTAL,
    });
    const id = started.conversation!.id;
    chats.push({ id, guest: createParleyClient(parleyd.baseUrl, { token: started.guestToken }) });
    await stream.until((got) => got.some((r) => r.item.case === "offer" && r.item.value.conversation?.id === id), `the offer of ${first}`);
    const offer = stream.got.flatMap((r) => (r.item.case === "offer" && r.item.value.conversation?.id === id ? [r.item.value] : []))[0];
    await direct.routing.acceptOffer({ offerId: offer.id });
  }
  const [a, b] = chats;
  const send = (chat: (typeof chats)[number], text: string) =>
    chat.guest.messaging.sendMessage({ conversationId: chat.id, clientMessageId: text, text });
  await stream.until((got) => texts(got, a.id).includes("a0") && texts(got, b.id).includes("b0"), "both first messages");
  assert.ok(stream.got.some((r) => r.item.case === "assigned" && r.conversationId === a.id));

  // A cut, with messages sent while the stream is down.
  proxy.cut();
  await send(a, "a1");
  await send(b, "b1");
  await stream.until((got) => texts(got, a.id).includes("a1") && texts(got, b.id).includes("b1"), "a1 and b1 after the cut");

  // A silent stall: the watchdog notices and the stream resumes.
  proxy.stall();
  await send(a, "a2");
  await stream.until((got) => texts(got, a.id).includes("a2"), "a2 after the stall");
  assert.ok(states.some(([s, err]) => s === "retrying" && err instanceof StreamStalledError), "the watchdog fired");

  // a's guest closes: a's closing event, then released; b goes on.
  await a.guest.session.closeConversation({ conversationId: a.id, reason: "thanks" });
  await stream.until((got) => got.some((r) => r.item.case === "released" && r.conversationId === a.id), "a released");
  await send(b, "b2");
  await stream.until((got) => texts(got, b.id).includes("b2"), "b2");

  abort.abort();
  await stream.done;
  for (const chat of chats) {
    const seqs = stream.got.flatMap((r) => (r.conversationId === chat.id && r.item.case === "event" ? [r.item.value.seq] : []));
    seqs.forEach((seq, i) => assert.equal(seq, BigInt(i + 1), `event ${i} of ${chat.id} has seq ${seq}`));
  }
  assert.deepEqual(texts(stream.got, a.id), ["a0", "a1", "a2"]);
  assert.deepEqual(texts(stream.got, b.id), ["b0", "b1", "b2"]);
  const ofA = stream.got.filter((r) => r.conversationId === a.id && (r.item.case === "event" || r.item.case === "released"));
  assert.equal(ofA.at(-1)?.item.case, "released");
  const lastEvent = ofA.at(-2);
  assert.equal(lastEvent?.item.case === "event" && lastEvent.item.value.kind.case, "conversationClosed");
  assert.ok(!stream.got.some((r) => r.item.case === "heartbeat"), "heartbeats are not yielded");
  for (const [s, err] of states) {
    if (s === "retrying" && !(err instanceof StreamStalledError)) {
      assert.ok(isRetryable(err), `retried after ${String(err)}`);
    }
  }
  assert.ok(asked >= 3, `the token was asked ${asked} times`);
  assert.deepEqual(states.at(-1), ["ended", undefined]);
});

/** Starts a guest chat and has agent accept its offer from stream. */
async function takeNewChat(stream: ReturnType<typeof drain>, agent: ReturnType<typeof createParleyClient>, first: string) {
  const started = await createParleyClient(parleyd.baseUrl).session.startGuestChat({
    requestId: crypto.randomUUID(),
    name: "Ada",
    email: "ada@example.com",
    issueType: "billing",
    firstMessage: first,
    channel: Channel.WEB_PORTAL,
  });
  const id = started.conversation!.id;
  await stream.until((got) => got.some((r) => r.item.case === "offer" && r.item.value.conversation?.id === id), `the offer of ${first}`);
  const offer = stream.got.flatMap((r) => (r.item.case === "offer" && r.item.value.conversation?.id === id ? [r.item.value] : []))[0];
  await agent.routing.acceptOffer({ offerId: offer.id });
  await stream.until((got) => texts(got, id).includes(first), first);
  return { id, guest: createParleyClient(parleyd.baseUrl, { token: started.guestToken }) };
}

test("chats that left the agent while its stream was down get the rest, then released, then synced", async (t) => {
  const abort = new AbortController();
  t.after(() => abort.abort());
  // An agent of its own, with room for every chat, in every queue.
  const admin = createParleyClient(parleyd.baseUrl, { token: "ps_demo_admin_token" });
  const { queues } = await admin.routing.listQueues({});
  const { token } = await admin.routing.createAgent({ displayName: "Olga Away", capacity: 10, queueIds: queues.map((q) => q.id) });
  const beth = createParleyClient(proxy.url, { token });
  const direct = createParleyClient(parleyd.baseUrl, { token });
  const fred = createParleyClient(parleyd.baseUrl, { token: "ps_demo_agent_fred" });
  // Where each stream's items start in got.
  const opens: number[] = [];
  let stream: ReturnType<typeof drain> | undefined;
  stream = drain(
    followWork(beth, {
      signal: abort.signal,
      heartbeatTimeoutMs: 3000,
      minBackoffMs: 20,
      maxBackoffMs: 200,
      onStateChange: (s) => s === "connecting" && opens.push(stream?.got.length ?? 0),
    }),
  );
  await direct.routing.setPresence({ presence: Presence.AVAILABLE });
  t.after(() => direct.routing.setPresence({ presence: Presence.AWAY }));
  await stream.until((got) => got.some((r) => r.item.case === "synced"), "the first synced");
  const a = await takeNewChat(stream, direct, "moving");
  const b = await takeNewChat(stream, direct, "closing");
  const kept = await takeNewChat(stream, direct, "staying");

  // Beth's stream goes down. a gets a message, then is transferred to Fred,
  // who accepts (Beth leaves it); b's guest closes; kept gets a message.
  proxy.down();
  await a.guest.messaging.sendMessage({ conversationId: a.id, clientMessageId: "a-away", text: "a while away" });
  const { agent: fredAgent } = await fred.routing.setPresence({ presence: Presence.AVAILABLE });
  t.after(() => fred.routing.setPresence({ presence: Presence.AWAY }));
  const moved = await direct.routing.transferConversation({ conversationId: a.id, requestId: crypto.randomUUID(), target: { case: "agentId", value: fredAgent!.id }, note: "yours" });
  await fred.routing.acceptOffer({ offerId: moved.offerId });
  await fred.messaging.sendMessage({ conversationId: a.id, clientMessageId: "fred-1", text: "fred took it" });
  await b.guest.session.closeConversation({ conversationId: b.id, reason: "thanks" });
  await kept.guest.messaging.sendMessage({ conversationId: kept.id, clientMessageId: "kept-away", text: "kept while away" });
  const opened = opens.length;
  proxy.up();

  await stream.until((got) => opens.length > opened && got.slice(opens.at(-1)).some((r) => r.item.case === "synced"), "synced after the reopen");
  await stream.until((got) => texts(got, kept.id).includes("kept while away"), "kept's message");
  const reopened = stream.got.slice(opens.at(-1));
  const syncedAt = reopened.findIndex((r) => r.item.case === "synced");
  const before = reopened.slice(0, syncedAt);
  // a: the rest up to Beth leaving, then released, with no assigned; none
  // of Fred's messages.
  const ofA = before.filter((r) => r.conversationId === a.id);
  assert.ok(!ofA.some((r) => r.item.case === "assigned"), "a is not assigned again");
  assert.equal(ofA.at(-1)?.item.case, "released");
  assert.ok(texts(ofA, a.id).includes("a while away"));
  assert.ok(!texts(stream.got, a.id).includes("fred took it"), "nothing after Beth left");
  const released = ofA.at(-1)!.item;
  assert.equal(released.case === "released" && released.value.agentId, fredAgent!.id);
  // b: its closing event, then released.
  const ofB = before.filter((r) => r.conversationId === b.id && (r.item.case === "event" || r.item.case === "released" || r.item.case === "assigned"));
  assert.deepEqual(ofB.slice(-2).map((r) => (r.item.case === "event" ? r.item.value.kind.case : r.item.case)), ["conversationClosed", "released"]);
  // kept: announced again before synced.
  assert.ok(before.some((r) => r.item.case === "assigned" && r.conversationId === kept.id));
  assert.equal(reopened.filter((r) => r.item.case === "synced").length, 1);

  // Every event of each chat once, in order, across both streams.
  for (const chat of [a, b, kept]) {
    const seqs = stream.got.flatMap((r) => (r.conversationId === chat.id && r.item.case === "event" ? [r.item.value.seq] : []));
    seqs.forEach((seq, i) => assert.equal(seq, BigInt(i + 1), `event ${i} of ${chat.id} has seq ${seq}`));
  }

  // The next reopen names kept only: released chats are forgotten.
  const requests = opens.length;
  proxy.cut();
  await stream.until(() => opens.length > requests, "another reopen");
  await stream.until((got) => got.slice(opens.at(-1)).some((r) => r.item.case === "synced"), "synced after the second reopen");
  const again = stream.got.slice(opens.at(-1));
  assert.ok(!again.some((r) => r.conversationId === a.id || r.conversationId === b.id), "a and b are not sent again");
  await kept.guest.session.closeConversation({ conversationId: kept.id, reason: "done" });
  await stream.until((got) => got.some((r) => r.item.case === "released" && r.conversationId === kept.id), "kept released");
});
