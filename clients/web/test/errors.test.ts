// The error helpers on real errors of a real parleyd, over each transport
// (the details travel in the Connect JSON body, and in gRPC-Web's
// grpc-status-details-bin trailer), and on failures that are not answers.
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { after, before, test } from "node:test";

import {
  Channel,
  Code,
  ConnectError,
  createParleyClient,
  errorReason,
  isRetryable,
  retryDelayMs,
  type ParleyClientOptions,
} from "../src/index.js";
import { startParleyd, type Parleyd } from "./parleyd.js";

let parleyd: Parleyd;

before(async () => {
  // One message a second at most, two at once: the third in a row is refused.
  parleyd = await startParleyd(["-send-rate", "1", "-send-burst", "2"]);
});

after(async () => {
  await parleyd?.stop();
});

/** Returns what promise rejects with, failing if it resolves. */
async function failure(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  assert.fail("the call succeeded");
}

const transports: [string, ParleyClientOptions][] = [
  ["Connect JSON", {}],
  ["Connect binary", { useBinaryFormat: true }],
  ["gRPC-Web", { protocol: "grpc-web" }],
];

for (const [name, options] of transports) {
  test(`reasons and retry hints of real errors over ${name}`, async () => {
    const anon = createParleyClient(parleyd.baseUrl, options);
    const started = await anon.session.startGuestChat({
      requestId: crypto.randomUUID(),
      name: "Ada",
      email: "ada@example.com",
      issueType: "billing",
      channel: Channel.WEB_PORTAL,
    });
    const conversationId = started.conversation!.id;
    const guest = createParleyClient(parleyd.baseUrl, { ...options, token: started.guestToken });

    // Sending too fast: ResourceExhausted with a reason and a retry hint.
    const send = (i: number) => guest.messaging.sendMessage({ conversationId, clientMessageId: `m-${i}`, text: `message ${i}` });
    await send(1);
    await send(2);
    const limited = await failure(send(3));
    assert.equal(ConnectError.from(limited).code, Code.ResourceExhausted);
    assert.equal(errorReason(limited), "SEND_RATE_LIMITED");
    const delay = retryDelayMs(limited);
    assert.ok(delay !== undefined && delay > 0 && delay <= 1000, `retry delay ${delay}`);
    assert.equal(isRetryable(limited), true);

    // A guest is not staff: PermissionDenied, not worth retrying.
    const denied = await failure(guest.routing.listQueues({}));
    assert.equal(ConnectError.from(denied).code, Code.PermissionDenied);
    assert.equal(errorReason(denied), "ROLE_NOT_ALLOWED");
    assert.equal(retryDelayMs(denied), undefined);
    assert.equal(isRetryable(denied), false);

    // An agent who does not hold the chat cannot read it.
    const fred = createParleyClient(parleyd.baseUrl, { ...options, token: "ps_demo_agent_fred" });
    const notYours = await failure(fred.messaging.sendMessage({ conversationId, clientMessageId: "f-1", text: "hi" }));
    assert.equal(ConnectError.from(notYours).code, Code.PermissionDenied);
    assert.ok(errorReason(notYours), "a reason is set");
    assert.equal(isRetryable(notYours), false);

    // Bad input: InvalidArgument with a reason.
    const invalid = await failure(anon.session.startGuestChat({ requestId: "not-a-uuid", name: "", email: "x", issueType: "billing" }));
    assert.equal(ConnectError.from(invalid).code, Code.InvalidArgument);
    assert.ok(errorReason(invalid));
    assert.equal(isRetryable(invalid), false);
  });
}

test("a connection that fails is retryable and has no reason", async () => {
  // A port that was just free: nothing listens there.
  const port = await new Promise<number>((resolve) => {
    const srv = createServer().listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
  const client = createParleyClient(`http://127.0.0.1:${port}`);
  const err = await failure(client.session.getPreChatForm({}));
  assert.equal(ConnectError.from(err).code, Code.Unknown);
  assert.equal(errorReason(err), undefined);
  assert.equal(retryDelayMs(err), undefined);
  assert.equal(isRetryable(err), true);
});

test("the helpers take anything", () => {
  for (const v of [undefined, null, "boom", new Error("boom"), { details: [] }]) {
    assert.equal(errorReason(v), undefined);
    assert.equal(retryDelayMs(v), undefined);
    assert.equal(isRetryable(v), false);
  }
  assert.equal(isRetryable(new ConnectError("the caller gave up", Code.Canceled)), false);
  assert.equal(isRetryable(new ConnectError("down", Code.Unavailable)), true);
  // A detail that is not valid protobuf is ignored.
  const garbled = new ConnectError("odd", Code.Internal);
  garbled.details = [
    { type: "google.rpc.ErrorInfo", value: new Uint8Array([0x0a, 0xff]) },
    { type: "google.rpc.RetryInfo", value: new Uint8Array([0x0a, 0x05, 0x08]) },
  ];
  assert.equal(errorReason(garbled), undefined);
  assert.equal(retryDelayMs(garbled), undefined);
  assert.equal(isRetryable(garbled), false);
});
