// The workspace's allPages on a real parleyd: every page of the agent
// directory and of the queues, read one item a page, matches one big page.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { allPages } from "../apps/workspace/util.js";
import { createParleyClient } from "../src/index.js";
import { startParleyd, type Parleyd } from "./parleyd.js";

let parleyd: Parleyd;

before(async () => {
  parleyd = await startParleyd();
});

after(async () => {
  await parleyd?.stop();
});

test("allPages reads every page, and stops at maxPages", async () => {
  const beth = createParleyClient(parleyd.baseUrl, { token: "ps_demo_agent_beth" });
  const whole = await beth.routing.listAgentDirectory({ pageSize: 500 });
  assert.ok(whole.agents.length >= 2, "the demo has several agents besides Beth");
  const paged = await allPages(async (pageToken) => {
    const r = await beth.routing.listAgentDirectory({ pageSize: 1, pageToken });
    return { nextPageToken: r.nextPageToken, items: r.agents };
  });
  assert.deepEqual(paged.map((a) => a.id), whole.agents.map((a) => a.id));

  const queues = await beth.routing.listQueues({ pageSize: 500 });
  const pagedQueues = await allPages(async (pageToken) => {
    const r = await beth.routing.listQueues({ pageSize: 1, pageToken });
    return { nextPageToken: r.nextPageToken, items: r.queues };
  });
  assert.deepEqual(pagedQueues.map((q) => q.id), queues.queues.map((q) => q.id));

  const capped = await allPages(async (pageToken) => {
    const r = await beth.routing.listAgentDirectory({ pageSize: 1, pageToken });
    return { nextPageToken: r.nextPageToken, items: r.agents };
  }, 1);
  assert.equal(capped.length, 1, "one page of one, though there are more");
});
