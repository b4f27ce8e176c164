// The supervisor view: every queue's waiting work and every agent's
// presence and load, live from RoutingService.WatchQueueStatuses (one
// stream, reopened with backoff when it drops).
import { timestampDate } from "@bufbuild/protobuf/wkt";

import { type Agent, type ParleyClient, type QueueStatus, type StreamState, isRetryable } from "../../src/index.js";
import { el, replace } from "../shared/dom.js";
import { byId, channelName, clock, presenceName, sleep } from "./util.js";

/** The live tables of queues and agents. */
export class SupervisorView {
  private readonly abort = new AbortController();
  private readonly queues = new Map<string, { status: QueueStatus; row: HTMLTableRowElement }>();
  private readonly agents = new Map<string, HTMLTableRowElement>();
  private readonly queueBody = byId("queue-rows");
  private readonly agentBody = byId("agent-rows");
  private ticker: ReturnType<typeof setInterval> | undefined;

  constructor(private readonly client: ParleyClient, private readonly setStatus: (s: StreamState, err?: unknown) => void) {
    replace(this.queueBody);
    replace(this.agentBody);
    this.ticker = setInterval(() => this.tick(), 1000);
  }

  /** Watches until stop. */
  async run(): Promise<void> {
    let backoff = 250;
    while (!this.abort.signal.aborted) {
      this.setStatus("connecting");
      try {
        for await (const r of this.client.routing.watchQueueStatuses({}, { signal: this.abort.signal })) {
          backoff = 250;
          this.setStatus("live");
          if (r.item.case === "queueStatus") this.queue(r.item.value);
          else if (r.item.case === "agent") this.agent(r.item.value);
        }
      } catch (err) {
        if (this.abort.signal.aborted) return;
        if (!isRetryable(err)) {
          this.setStatus("ended", err);
          return;
        }
        this.setStatus("retrying", err);
      }
      await sleep(backoff * (0.5 + Math.random()), this.abort.signal);
      backoff = Math.min(backoff * 2, 15_000);
    }
  }

  /** Stops watching. */
  stop(): void {
    this.abort.abort();
    clearInterval(this.ticker);
  }

  private queue(s: QueueStatus): void {
    const id = s.queue?.id ?? "";
    let entry = this.queues.get(id);
    if (!entry) {
      const row = el("tr", { "data-queue": id });
      entry = { status: s, row };
      this.queues.set(id, entry);
      this.queueBody.append(row);
    }
    entry.status = s;
    replace(entry.row, el("th", { scope: "row" }, s.queue?.displayName ?? id), el("td", { class: "waiting" }, s.waiting),
      el("td", { class: "oldest" }, oldest(s)), el("td", {}, s.availableAgents), el("td", {}, s.freeCapacity));
  }

  private agent(a: Agent): void {
    let row = this.agents.get(a.id);
    if (!row) {
      row = el("tr", { "data-agent": a.id });
      this.agents.set(a.id, row);
      this.agentBody.append(row);
    }
    const per = a.channelPresences.map((p) => `${channelName(p.channel)}: ${presenceName(p.presence)}`).join(", ");
    replace(row, el("th", { scope: "row" }, a.displayName), el("td", { class: "presence" }, presenceName(a.presence) + (per ? ` (${per})` : "")),
      el("td", { class: "load" }, `${a.load} / ${a.capacity}`));
  }

  private tick(): void {
    for (const { status, row } of this.queues.values()) {
      const cell = row.querySelector(".oldest");
      if (cell) cell.textContent = oldest(status);
    }
  }
}

function oldest(s: QueueStatus): string {
  if (!s.oldestQueueTime || s.waiting === 0) return "–";
  return clock((Date.now() - timestampDate(s.oldestQueueTime).getTime()) / 1000);
}
