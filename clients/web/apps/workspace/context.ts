// The context panel of the active chat: who the customer is, their other
// conversations and cases, what the virtual agent captured, the summary,
// suggested articles; and the actions on the chat: transfer, case, close.
import { timestampDate } from "@bufbuild/protobuf/wkt";

import { Presence, type GetConversationContextResponse, type ParleyClient } from "../../src/index.js";
import type { ChatView } from "./chat.js";
import { h, replace, type Child } from "./dom.js";
import { channelName, describeError, presenceName, withRetry } from "./util.js";

/** Wrap-up outcomes offered when closing; the chosen one starts the close reason. */
const outcomes = ["Resolved", "Follow-up needed", "Customer left", "Not our service", "Other"];

/** The context panel; shows one chat at a time. */
export class ContextPanel {
  private chat: ChatView | null = null;
  private load = 0;

  constructor(private readonly el: HTMLElement, private readonly client: ParleyClient) {
    this.empty();
  }

  /** The chat shown now. */
  get current(): ChatView | null {
    return this.chat;
  }

  /** Shows chat's context (or nothing). */
  show(chat: ChatView | null): void {
    if (chat === this.chat) return;
    this.chat = chat;
    if (!chat) {
      this.empty();
      return;
    }
    void this.refresh();
  }

  private empty(): void {
    replace(this.el, h("h2", {}, "Context"), h("p", { class: "hint" }, "Pick a chat to see its customer, history and actions."));
  }

  /** Loads the context of the shown chat again. */
  async refresh(): Promise<void> {
    const chat = this.chat;
    if (!chat) return;
    const load = ++this.load;
    replace(this.el, h("h2", {}, `Context: ${chat.name}`), h("p", { role: "status" }, "Loading…"));
    try {
      const ctx = await withRetry(() => this.client.assistant.getConversationContext({ conversationId: chat.id }));
      if (load !== this.load) return;
      this.render(chat, ctx);
    } catch (err) {
      if (load !== this.load) return;
      const again = h("button", { type: "button" }, "Try again");
      again.addEventListener("click", () => void this.refresh());
      replace(this.el, h("h2", {}, `Context: ${chat.name}`), h("p", { role: "alert" }, `Could not load the context: ${describeError(err)}`), again);
    }
  }

  private render(chat: ChatView, ctx: GetConversationContextResponse): void {
    const conv = ctx.conversation ?? chat.conversation;
    const it = conv.interaction;
    const refresh = h("button", { type: "button", class: "small" }, "Refresh");
    refresh.addEventListener("click", () => void this.refresh());
    const customer = section("Customer",
      dl([
        ["Name", ctx.consumer?.displayName || it?.name],
        ["Email", ctx.consumer?.email || it?.email],
        ["Record", ctx.consumer ? `Consumer since ${ctx.consumer.createTime ? timestampDate(ctx.consumer.createTime).toLocaleDateString() : "?"}` : "Guest (no consumer record)"],
        ["Channel", channelName(it?.channel ?? 0)],
        ["Issue type", it?.issueType],
        ["Language", it?.language],
        ["Tier", it?.tier],
        ...Object.entries(it?.formFields ?? {}).map(([k, v]): [string, string] => [k, v]),
      ]));
    const captured = section("Captured by the virtual agent",
      dl([["Intent", it?.intent || ctx.summary?.intent], ["Topic", ctx.summary?.topicName], ...Object.entries({ ...(ctx.summary?.slots ?? {}), ...(it?.slots ?? {}) }).map(([k, v]): [string, string] => [`Slot ${k}`, v])]));
    const s = ctx.summary;
    const summary = section("Summary", s
      ? h("div", {},
        s.reason ? h("p", {}, `Handed over: ${s.reason}`) : null,
        s.text ? h("p", { class: "pre" }, s.text) : null,
        s.generatedText ? h("p", { class: "pre" }, s.generatedText) : null,
        s.missingSlots.length ? h("p", {}, `Missing: ${s.missingSlots.join(", ")}`) : null)
      : h("p", { class: "hint" }, "No summary: the chat was not handed over by the virtual agent."));
    const history = section("Other conversations", ctx.otherConversations.length
      ? h("ul", {}, ...ctx.otherConversations.map((c) => h("li", {}, `${channelName(c.interaction?.channel ?? 0)} · ${c.interaction?.issueType ?? ""} · ${c.createTime ? timestampDate(c.createTime).toLocaleString() : ""}: ${c.interaction?.firstMessage ?? ""}`)))
      : h("p", { class: "hint" }, "None."));
    const cases = section("Cases", ctx.cases.length
      ? h("ul", { class: "cases" }, ...ctx.cases.map((c) => h("li", {}, `${c.number}: ${c.shortDescription}`)))
      : h("p", { class: "hint" }, "None."));
    const articles = section("Suggested articles", ctx.suggestedArticles.length
      ? h("ul", {}, ...ctx.suggestedArticles.map((a) => h("li", {}, h("strong", {}, a.title), h("p", { class: "snippet" }, a.snippet))))
      : h("p", { class: "hint" }, "None."),
      ctx.latestCustomerMessage ? h("p", { class: "hint" }, `For: ${ctx.latestCustomerMessage}`) : null);
    replace(this.el, h("div", { class: "context-head" }, h("h2", {}, `Context: ${chat.name}`), refresh),
      customer, captured, summary, history, cases, articles,
      chat.ended ? null : this.transferForm(chat), chat.ended ? null : this.caseForm(chat, !conv.consumerId && !ctx.consumer), chat.ended ? null : this.closeForm(chat));
  }

  private transferForm(chat: ChatView): HTMLElement {
    const target = h("select", { id: "transfer-target", required: true }, h("option", { value: "" }, "Loading…"));
    const note = h("textarea", { id: "transfer-note", rows: "2", maxlength: "1000" });
    const status = h("p", { role: "status" });
    const submit = h("button", { type: "submit" }, "Transfer");
    const form = h("form", { class: "action", "aria-labelledby": "transfer-h" },
      h("h3", { id: "transfer-h" }, "Transfer"),
      h("label", { for: "transfer-target" }, "To"), target,
      h("label", { for: "transfer-note" }, "Note for the next agent"), note, submit, status);
    void this.fillTargets(chat, target);
    let requestId = crypto.randomUUID();
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const [kind, id] = target.value.split(":");
      if (!id) return;
      submit.disabled = true;
      status.textContent = "Transferring…";
      try {
        await withRetry(() => this.client.routing.transferConversation({
          conversationId: chat.id, requestId, note: note.value.trim(),
          target: kind === "agent" ? { case: "agentId", value: id } : { case: "queueId", value: id },
        }));
        status.textContent = "Transferred.";
        requestId = crypto.randomUUID();
      } catch (err) {
        status.textContent = `Not transferred: ${describeError(err)}`;
      } finally {
        submit.disabled = false;
      }
    });
    return form;
  }

  private async fillTargets(chat: ChatView, select: HTMLSelectElement): Promise<void> {
    try {
      const [dir, queues] = await Promise.all([
        withRetry(() => this.client.routing.listAgentDirectory({ channel: chat.conversation.interaction?.channel ?? 0 })),
        withRetry(() => this.client.routing.listQueues({})),
      ]);
      const agents = h("optgroup", { label: "Agents" }, ...dir.agents.map((a) =>
        h("option", { value: `agent:${a.id}`, disabled: a.presence !== Presence.AVAILABLE || a.freeCapacity <= 0 },
          `${a.displayName} (${presenceName(a.presence)}, ${a.freeCapacity} free)`)));
      const qs = h("optgroup", { label: "Queues" }, ...queues.queues.map((q) => h("option", { value: `queue:${q.id}` }, q.displayName)));
      replace(select, h("option", { value: "" }, "Choose an agent or a queue"), agents, qs);
    } catch (err) {
      replace(select, h("option", { value: "" }, `Could not load: ${describeError(err)}`));
    }
  }

  private caseForm(chat: ChatView, guest: boolean): HTMLElement {
    const desc = h("input", { id: "case-desc", maxlength: "500", placeholder: "Empty: the issue type and first message" });
    const status = h("p", { role: "status" });
    const withConsumer = h("button", { type: "button" }, "Create consumer and case");
    const plain = h("button", { type: "submit" }, "Create case");
    const form = h("form", { class: "action", "aria-labelledby": "case-h" },
      h("h3", { id: "case-h" }, "Case"), h("label", { for: "case-desc" }, "Short description"), desc,
      h("div", { class: "row" }, plain, guest ? withConsumer : null), status);
    let requestId = crypto.randomUUID();
    const create = async (consumer: boolean): Promise<void> => {
      plain.disabled = withConsumer.disabled = true;
      status.textContent = "Creating…";
      const req = { conversationId: chat.id, requestId, shortDescription: desc.value.trim() };
      try {
        const number = consumer
          ? (await withRetry(() => this.client.cases.createConsumerAndCaseForGuest(req))).case?.number
          : (await withRetry(() => this.client.cases.createCaseForGuest(req))).case?.number;
        status.textContent = `Case ${number} created.`;
        requestId = crypto.randomUUID();
        desc.value = "";
      } catch (err) {
        status.textContent = `No case: ${describeError(err)}`;
      } finally {
        plain.disabled = withConsumer.disabled = false;
      }
    };
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      void create(false);
    });
    withConsumer.addEventListener("click", () => void create(true));
    return form;
  }

  private closeForm(chat: ChatView): HTMLElement {
    const outcome = h("select", { id: "wrapup-outcome" }, ...outcomes.map((o) => h("option", { value: o }, o)));
    const notes = h("textarea", { id: "wrapup-notes", rows: "2", maxlength: "450" });
    const status = h("p", { role: "status" });
    const submit = h("button", { type: "submit", class: "danger" }, "Close conversation");
    const form = h("form", { class: "action", "aria-labelledby": "close-h" },
      h("h3", { id: "close-h" }, "Close and wrap up"),
      h("label", { for: "wrapup-outcome" }, "Outcome"), outcome,
      h("label", { for: "wrapup-notes" }, "Wrap-up notes"), notes, submit, status);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      submit.disabled = true;
      status.textContent = "Closing…";
      const reason = [outcome.value, notes.value.trim()].filter(Boolean).join(": ").slice(0, 500);
      try {
        await withRetry(() => this.client.session.closeConversation({ conversationId: chat.id, reason }));
        status.textContent = "Closed.";
      } catch (err) {
        status.textContent = `Not closed: ${describeError(err)}`;
        submit.disabled = false;
      }
    });
    return form;
  }
}

function section(title: string, ...body: Child[]): HTMLElement {
  return h("section", { class: "ctx" }, h("h3", {}, title), ...body);
}

function dl(rows: [string, string | undefined][]): HTMLElement {
  const list = h("dl", {});
  for (const [k, v] of rows) if (v) list.append(h("dt", {}, k), h("dd", {}, v));
  return list;
}
