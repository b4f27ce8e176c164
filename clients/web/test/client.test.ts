// The client against a real parleyd: every service answers, over each of
// the three transports, and the token source and interceptors run on every
// call.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import {
  Channel,
  Code,
  ConnectError,
  isRetryable,
  SessionService,
  StaffRole,
  createClient,
  createParleyClient,
  createParleyTransport,
  type Interceptor,
  type ParleyClientOptions,
} from "../src/index.js";
import { startParleyd, type Parleyd } from "./parleyd.js";

let parleyd: Parleyd;

before(async () => {
  parleyd = await startParleyd();
});

after(async () => {
  await parleyd?.stop();
});

const transports: [string, ParleyClientOptions][] = [
  ["Connect JSON", {}],
  ["Connect binary", { useBinaryFormat: true }],
  ["gRPC-Web", { protocol: "grpc-web" }],
];

/** Records the content type of every request, to tell the transports apart. */
function contentTypes(into: string[]): Interceptor {
  return (next) => async (req) => {
    into.push(req.header.get("Content-Type") ?? "");
    return next(req);
  };
}

for (const [name, options] of transports) {
  test(`every service answers over ${name}`, async () => {
    const sent: string[] = [];
    const interceptors = [contentTypes(sent)];
    const anon = createParleyClient(parleyd.baseUrl, { ...options, interceptors });
    const admin = createParleyClient(parleyd.baseUrl, { ...options, interceptors, token: "ps_demo_admin_token" });

    const form = await anon.session.getPreChatForm({});
    assert.deepEqual(form.issueTypes.map((it) => it.value), ["billing", "order", "product"]);
    const started = await anon.session.startGuestChat({
      requestId: crypto.randomUUID(),
      name: "Ada",
      email: "ada@example.com",
      issueType: "order",
      firstMessage: `over ${name}`,
      channel: Channel.WEB_PORTAL,
    });
    const guest = createParleyClient(parleyd.baseUrl, { ...options, interceptors, token: started.guestToken });
    const log = await guest.messaging.listEvents({ conversationId: started.conversation!.id });
    const posted = log.events.find((e) => e.kind.case === "messagePosted");
    assert.equal(posted?.kind.case === "messagePosted" && posted.kind.value.text, `over ${name}`);

    const queues = await admin.routing.listQueues({});
    assert.ok(queues.queues.some((q) => q.displayName === "Order Support"));
    const cases = await admin.cases.listCases({});
    assert.ok(Array.isArray(cases.cases));
    const tokens = await admin.access.listTokens({});
    assert.ok(tokens.tokens.some((t) => t.role === StaffRole.ADMIN));
    const articles = await admin.knowledge.listArticles({});
    assert.ok(articles.articles.length > 0, "the demo knowledge base has articles");
    const bot = await admin.assistant.getBotConfig({});
    assert.match(bot.yaml, /topics/);

    // A server stream too, over the same transport.
    const abort = new AbortController();
    for await (const res of guest.messaging.subscribe({ conversationId: started.conversation!.id, afterSeq: 0n }, { signal: abort.signal })) {
      if (res.item.case === "event") {
        assert.equal(res.item.value.seq, 1n);
        break;
      }
    }
    abort.abort();

    const expected =
      options.protocol === "grpc-web"
        ? /^application\/grpc-web\+proto$/
        : options.useBinaryFormat
          ? /^application\/(connect\+)?proto$/
          : /^application\/(connect\+)?json$/;
    assert.ok(sent.length >= 9);
    for (const ct of sent) {
      assert.match(ct, expected);
    }
  });
}

test("a transport for the services an app uses", async () => {
  const transport = createParleyTransport(parleyd.baseUrl, { useBinaryFormat: true });
  const session = createClient(SessionService, transport);
  const form = await session.getPreChatForm({});
  assert.ok(form.issueTypes.length > 0);
});

test("a token callback is asked before every call, and a refreshed token is used", async () => {
  // A token the admin issues and then revokes stands for an expired one.
  const admin = createParleyClient(parleyd.baseUrl, { token: "ps_demo_admin_token" });
  const issued = await admin.access.issueToken({ role: StaffRole.ADMIN, label: "refresh test" });
  let current = issued.token;
  let asked = 0;
  const seen: string[] = [];
  const client = createParleyClient(parleyd.baseUrl, {
    token: async () => {
      asked++;
      await Promise.resolve();
      return current;
    },
    interceptors: [
      (next) => async (req) => {
        seen.push(req.header.get("Authorization") ?? "");
        return next(req);
      },
    ],
  });
  await client.access.listTokens({});
  await client.routing.listQueues({});
  assert.equal(asked, 2);
  assert.deepEqual(seen, [`Bearer ${issued.token}`, `Bearer ${issued.token}`]);

  await admin.access.revokeToken({ tokenId: issued.info!.id });
  await assert.rejects(client.access.listTokens({}), /unauthenticated/i);
  current = "ps_demo_admin_token";
  await client.access.listTokens({});
  assert.equal(asked, 4);
  assert.equal(seen.at(-1), "Bearer ps_demo_admin_token");

  // A token source that fails: the call fails unsent, Unauthenticated,
  // and is not retryable unless the source says so.
  let reached = 0;
  const failing = createParleyClient(parleyd.baseUrl, {
    token: () => {
      throw new Error("the portal session ended");
    },
    interceptors: [(next) => (req) => (reached++, next(req))],
  });
  const err = ConnectError.from(await failing.routing.listQueues({}).catch((e: unknown) => e));
  assert.equal(err.code, Code.Unauthenticated);
  assert.match(err.rawMessage, /the token source failed: the portal session ended/);
  assert.equal((err.cause as Error).message, "the portal session ended");
  assert.equal(isRetryable(err), false);
  assert.equal(reached, 0);
  const flaky = createParleyClient(parleyd.baseUrl, {
    token: () => {
      throw new ConnectError("the identity provider is down", Code.Unavailable);
    },
  });
  assert.equal(isRetryable(await flaky.routing.listQueues({}).catch((e: unknown) => e)), true);

  // No token at all: the call goes out without the header.
  const anonymous = createParleyClient(parleyd.baseUrl, { token: () => undefined });
  await assert.rejects(anonymous.access.listTokens({}), /unauthenticated/i);
});
