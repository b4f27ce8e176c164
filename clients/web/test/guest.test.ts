// The guest side of the anonymous-chat flow through connect-web's Connect
// transport against a real parleyd; a demo agent answers through the same
// client package.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { ConnectError, Code } from "@connectrpc/connect";

import { Channel, Presence, createParleyClient, type Event } from "../src/index.js";
import { startParleyd, type Parleyd } from "./parleyd.js";

let parleyd: Parleyd;

before(async () => {
  parleyd = await startParleyd();
});

after(async () => {
  await parleyd?.stop();
});

test("a guest chats with an agent", async () => {
  const anon = createParleyClient(parleyd.baseUrl);
  const beth = createParleyClient(parleyd.baseUrl, { token: "ps_demo_agent_beth" });
  const abort = new AbortController();

  // Beth is available and watching her work.
  await beth.routing.setPresence({ presence: Presence.AVAILABLE });
  const work = beth.routing.watchWork({}, { signal: abort.signal })[Symbol.asyncIterator]();

  // The guest fills in the pre-chat form and starts the chat.
  const form = await anon.session.getPreChatForm({});
  assert.deepEqual(form.issueTypes.map((it) => it.value), ["billing", "order", "product"]);
  const started = await anon.session.startGuestChat({
    requestId: crypto.randomUUID(),
    name: "Ada Lovelace",
    email: "ada@example.com",
    issueType: "billing",
    firstMessage: "Hello, I was charged twice.",
    channel: Channel.WEB_PORTAL,
  });
  const convId = started.conversation!.id;
  assert.ok(started.guestToken.startsWith("pg_"));
  const guest = createParleyClient(parleyd.baseUrl, { token: started.guestToken });

  // The guest subscribes from the start of the log.
  const received: Event[] = [];
  const events = guest.messaging.subscribe({ conversationId: convId, afterSeq: 0n }, { signal: abort.signal });
  const next = async (match: (e: Event) => boolean): Promise<Event> => {
    for (;;) {
      const r = await iterator.next();
      assert.ok(!r.done, "the stream ended early");
      if (r.value.item.case !== "event") continue;
      const event = r.value.item.value;
      received.push(event);
      if (match(event)) return event;
    }
  };
  const iterator = events[Symbol.asyncIterator]();
  const first = await next((e) => e.kind.case === "messagePosted");
  assert.equal(first.kind.case === "messagePosted" && first.kind.value.text, "Hello, I was charged twice.");

  // Beth gets the offer and accepts.
  let offerId = "";
  for (;;) {
    const r = await work.next();
    assert.ok(!r.done);
    if (r.value.item.case === "offer") {
      assert.equal(r.value.item.value.conversation?.id, convId);
      offerId = r.value.item.value.id;
      break;
    }
  }
  await beth.routing.acceptOffer({ offerId });

  // The guest sends (twice, as a retry would: one message) and gets the reply.
  const sent = await guest.messaging.sendMessage({ conversationId: convId, clientMessageId: "web-1", text: "Order 1042." });
  const again = await guest.messaging.sendMessage({ conversationId: convId, clientMessageId: "web-1", text: "Order 1042." });
  assert.equal(again.event!.seq, sent.event!.seq);
  await beth.messaging.sendMessage({ conversationId: convId, clientMessageId: "beth-1", text: "Refund on its way!" });
  const reply = await next((e) => e.kind.case === "messagePosted" && e.sender?.displayName === "Beth Anglin");
  assert.equal(reply.kind.case === "messagePosted" && reply.kind.value.text, "Refund on its way!");

  // Seqs are consecutive and the retried send appears once.
  received.forEach((e, i) => assert.equal(e.seq, BigInt(i + 1)));
  assert.equal(received.filter((e) => e.kind.case === "messagePosted" && e.kind.value.clientMessageId === "web-1").length, 1);

  // Closing ends the stream; the guest token no longer writes.
  await guest.session.closeConversation({ conversationId: convId, reason: "thanks" });
  const closed = await next((e) => e.kind.case === "conversationClosed");
  assert.equal(closed.kind.case === "conversationClosed" && closed.kind.value.reason, "thanks");
  assert.equal((await iterator.next()).done, true);
  await assert.rejects(
    guest.messaging.sendMessage({ conversationId: convId, clientMessageId: "web-2", text: "hello?" }),
    (err: unknown) => ConnectError.from(err).code === Code.Unauthenticated,
  );
  abort.abort();
});

test("bad input gets a readable InvalidArgument", async () => {
  const anon = createParleyClient(parleyd.baseUrl);
  await assert.rejects(
    anon.session.startGuestChat({ requestId: crypto.randomUUID(), name: "", email: "not-an-email", issueType: "billing" }),
    (err: unknown) => {
      const ce = ConnectError.from(err);
      assert.equal(ce.code, Code.InvalidArgument);
      assert.match(ce.rawMessage, /name: must be at least 1 characters/);
      assert.match(ce.rawMessage, /email: must be a valid email address/);
      return true;
    },
  );
});

test("typing, read cursors and resuming a dropped stream", async () => {
  const anon = createParleyClient(parleyd.baseUrl);
  const beth = createParleyClient(parleyd.baseUrl, { token: "ps_demo_agent_beth" });
  const abort = new AbortController();
  await beth.routing.setPresence({ presence: Presence.AVAILABLE });
  const work = beth.routing.watchWork({}, { signal: abort.signal })[Symbol.asyncIterator]();
  const started = await anon.session.startGuestChat({
    requestId: crypto.randomUUID(), name: "Grace", email: "grace@example.com", issueType: "billing",
  });
  const convId = started.conversation!.id;
  const guest = createParleyClient(parleyd.baseUrl, { token: started.guestToken });
  for (;;) {
    const r = await work.next();
    assert.ok(!r.done);
    if (r.value.item.case === "offer" && r.value.item.value.conversation?.id === convId) {
      await beth.routing.acceptOffer({ offerId: r.value.item.value.id });
      break;
    }
  }
  // Subscribing one event back proves the stream is open once that event
  // arrives (streams start lazily, and typing is not replayed).
  const head = (await guest.session.getConversation({ conversationId: convId })).conversation!.lastSeq;
  const bethItems = beth.messaging.subscribe({ conversationId: convId, afterSeq: head - 1n }, { signal: abort.signal })[Symbol.asyncIterator]();
  const replayed = await bethItems.next();
  assert.equal(!replayed.done && replayed.value.item.case === "event" && replayed.value.item.value.seq, head);
  const nextSignal = async () => {
    for (;;) {
      const r = await bethItems.next();
      assert.ok(!r.done);
      if (r.value.item.case === "typing" || r.value.item.case === "readCursor") return r.value.item;
    }
  };

  // Beth sees the guest typing, then reading her message.
  await guest.messaging.setTyping({ conversationId: convId, typing: true });
  const typing = await nextSignal();
  assert.equal(typing.case, "typing");
  const hello = await beth.messaging.sendMessage({ conversationId: convId, clientMessageId: "b-1", text: "Hi Grace!" });
  await guest.messaging.markRead({ conversationId: convId, requestId: crypto.randomUUID(), readSeq: hello.event!.seq });
  const cursor = await nextSignal();
  assert.equal(cursor.case === "readCursor" && cursor.value.readSeq, hello.event!.seq);

  // The guest's stream drops; resuming from the last seq it had gets the
  // rest, with no repeat.
  const first = new AbortController();
  const stream = guest.messaging.subscribe({ conversationId: convId, afterSeq: 0n }, { signal: first.signal })[Symbol.asyncIterator]();
  let last = 0n;
  while (last < hello.event!.seq) {
    const r = await stream.next();
    assert.ok(!r.done);
    if (r.value.item.case === "event") last = r.value.item.value.seq;
  }
  first.abort();
  await beth.messaging.sendMessage({ conversationId: convId, clientMessageId: "b-2", text: "Still there?" });
  const resumed = guest.messaging.subscribe({ conversationId: convId, afterSeq: last }, { signal: abort.signal })[Symbol.asyncIterator]();
  for (;;) {
    const r = await resumed.next();
    assert.ok(!r.done);
    if (r.value.item.case !== "event") continue;
    assert.equal(r.value.item.value.seq, last + 1n);
    assert.equal(r.value.item.value.kind.case === "messagePosted" && r.value.item.value.kind.value.text, "Still there?");
    break;
  }
  await beth.session.closeConversation({ conversationId: convId });
  abort.abort();
});
