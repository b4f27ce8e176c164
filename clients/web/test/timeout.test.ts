// Unary calls time out: over a connection that went silent (the proxy
// stops forwarding without closing it), a call fails with DeadlineExceeded
// within callTimeoutMs instead of hanging, and streams are not timed out.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { Code, ConnectError, callTimeout, createParleyClient, isRetryable } from "../src/index.js";
import { startParleyd, type Parleyd } from "./parleyd.js";
import { startProxy, type Proxy } from "./proxy.js";

let parleyd: Parleyd;

before(async () => {
  parleyd = await startParleyd();
});

after(async () => {
  await parleyd?.stop();
});

/** A fresh proxy, closed after the test. */
async function freshProxy(t: { after(fn: () => Promise<void>): void }): Promise<Proxy> {
  const proxy = await startProxy(parleyd.baseUrl);
  t.after(() => proxy.close());
  return proxy;
}

/** Lets the client put the connection of its last call back in its pool. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 200));

for (const protocol of ["connect", "grpc-web"] as const) {
  test(`a unary call over a stalled connection fails with DeadlineExceeded (${protocol})`, async (t) => {
    const proxy = await freshProxy(t);
    const client = createParleyClient(proxy.url, { protocol, callTimeoutMs: 700 });
    // Opens the (kept-alive) connection the next call reuses.
    await client.session.getPreChatForm({});
    await settle();
    proxy.stall();
    const started = Date.now();
    const err = await client.session.getPreChatForm({}).then(
      () => assert.fail("the call over a stalled connection answered"),
      (e: unknown) => e,
    );
    const took = Date.now() - started;
    assert.ok(err instanceof ConnectError, String(err));
    assert.equal(err.code, Code.DeadlineExceeded);
    assert.ok(isRetryable(err), "a timed-out call is worth retrying");
    assert.ok(took >= 600 && took < 5000, `failed after ${took} ms`);
    assert.equal(proxy.opened, 1, "the call went over the stalled connection");
  });
}

test("the caller's own abort still cancels a call under the timeout", async (t) => {
  const proxy = await freshProxy(t);
  const client = createParleyClient(proxy.url, { callTimeoutMs: 10_000 });
  await client.session.getPreChatForm({});
  await settle();
  proxy.stall();
  const abort = new AbortController();
  setTimeout(() => abort.abort(), 200);
  const started = Date.now();
  const err = await client.session.getPreChatForm({}, { signal: abort.signal }).then(
    () => assert.fail("answered"),
    (e: unknown) => e,
  );
  assert.ok(err instanceof ConnectError, String(err));
  assert.equal(err.code, Code.Canceled);
  assert.ok(Date.now() - started < 5000);
});

test("callTimeout leaves streams alone and 0 disables it", async () => {
  let passed: AbortSignal | undefined;
  const seen = (req: { signal: AbortSignal }) => {
    passed = req.signal;
    return Promise.resolve({} as never);
  };
  const signal = new AbortController().signal;
  await callTimeout(50)(seen)({ stream: true, signal } as never);
  assert.equal(passed, signal, "a stream's signal is not replaced");
  await callTimeout(0)(seen)({ stream: false, signal } as never);
  assert.equal(passed, signal, "0 means no timeout");
  await callTimeout(50)(seen)({ stream: false, signal } as never);
  assert.notEqual(passed, signal, "a unary call gets the timeout's signal");
});
