// The context panel of the active chat: who the customer is, their other
// conversations and cases, what the virtual agent captured, the summary,
// suggested articles; and the actions on the chat: transfer, case, close.
import { timestampDate } from "@bufbuild/protobuf/wkt";

import { Presence, type GetConversationContextResponse, type ParleyClient } from "../../src/index.js";
import type { ChatView } from "./chat.js";
import { el, replace, uuid, type Child } from "../shared/dom.js";
import { allPages, channelName, describeError, presenceName, withRetry } from "./util.js";

/** The context panel; shows one chat at a time. */
export class ContextPanel {
  private chat: ChatView | null = null;
  private load = 0;
  /** The keyboard was in the panel when it was last replaced: it goes back to the panel's heading. */
  private hadFocus = false;
  /** The keyboard was last in the panel (it stays so when the focused button is disabled or removed). */
  private focusWithin = false;

  constructor(private readonly el: HTMLElement, private readonly client: ParleyClient) {
    this.empty();
    el.addEventListener("focusin", () => (this.focusWithin = true));
    el.addEventListener("focusout", (ev) => {
      const to = ev.relatedTarget as Node | null;
      if (to && !el.contains(to)) this.focusWithin = false;
    });
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
    replace(this.el, el("h2", {}, "Context"), el("p", { class: "hint" }, "Pick a chat to see its customer, history and actions."));
  }

  /** Loads the context of the shown chat again. */
  async refresh(): Promise<void> {
    const chat = this.chat;
    if (!chat) return;
    const load = ++this.load;
    // A form of the panel (Transfer, Close) that ends the chat re-renders
    // it: the keyboard must not drop to the page.
    const ae = document.activeElement;
    if (this.el.contains(ae) || (this.focusWithin && (!ae || ae === document.body))) this.hadFocus = true;
    replace(this.el, el("h2", { tabindex: "-1" }, `Context: ${chat.name}`), el("p", { role: "status" }, "Loading…"));
    this.refocus();
    try {
      const ctx = await withRetry(() => this.client.assistant.getConversationContext({ conversationId: chat.id }));
      if (load !== this.load) return;
      this.render(chat, ctx);
    } catch (err) {
      if (load !== this.load) return;
      const again = el("button", { type: "button" }, "Try again");
      again.addEventListener("click", () => void this.refresh());
      replace(this.el, el("h2", { tabindex: "-1" }, `Context: ${chat.name}`), el("p", { role: "alert" }, `Could not load the context: ${describeError(err)}`), again);
    }
    if (load !== this.load) return;
    this.refocus();
    this.hadFocus = false;
  }

  /** Puts the keyboard on the panel's heading if it was in the panel and is now nowhere. */
  private refocus(): void {
    const ae = document.activeElement;
    if (this.hadFocus && (!ae || ae === document.body)) this.el.querySelector<HTMLElement>("h2")?.focus();
  }

  private render(chat: ChatView, ctx: GetConversationContextResponse): void {
    const conv = ctx.conversation ?? chat.conversation;
    const it = conv.interaction;
    const refresh = el("button", { type: "button", class: "small" }, "Refresh");
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
      ? el("div", {},
        s.reason ? el("p", {}, `Handed over: ${s.reason}`) : null,
        s.text ? el("p", { class: "pre" }, s.text) : null,
        s.generatedText ? el("p", { class: "pre" }, s.generatedText) : null,
        s.missingSlots.length ? el("p", {}, `Missing: ${s.missingSlots.join(", ")}`) : null)
      : el("p", { class: "hint" }, "No summary: the chat was not handed over by the virtual agent."));
    const history = section("Other conversations", ctx.otherConversations.length
      ? el("ul", {}, ...ctx.otherConversations.map((c) => el("li", {},
        `${channelName(c.interaction?.channel ?? 0)} · ${c.interaction?.issueType ?? ""} · ${c.createTime ? timestampDate(c.createTime).toLocaleString() : ""}: ${c.interaction?.firstMessage ?? ""}`,
        c.wrapUp?.label ? el("p", { class: "snippet" }, `Outcome: ${c.wrapUp.label}`) : null,
        c.wrapUp?.notes ? el("p", { class: "snippet pre" }, `Wrap-up notes: ${c.wrapUp.notes}`) : null)))
      : el("p", { class: "hint" }, "None."));
    const cases = section("Cases", ctx.cases.length
      ? el("ul", { class: "cases" }, ...ctx.cases.map((c) => el("li", {}, `${c.number}: ${c.shortDescription}`)))
      : el("p", { class: "hint" }, "None."));
    const articles = section("Suggested articles", ctx.suggestedArticles.length
      ? el("ul", {}, ...ctx.suggestedArticles.map((a) => el("li", {}, el("strong", {}, a.title), el("p", { class: "snippet" }, a.snippet))))
      : el("p", { class: "hint" }, "None."),
      ctx.latestCustomerMessage ? el("p", { class: "hint" }, `For: ${ctx.latestCustomerMessage}`) : null);
    replace(this.el, el("div", { class: "context-head" }, el("h2", { tabindex: "-1" }, `Context: ${chat.name}`), refresh),
      customer, captured, summary, history, cases, articles,
      chat.ended ? null : this.transferForm(chat), chat.ended ? null : this.caseForm(chat, !conv.consumerId && !ctx.consumer), chat.ended ? null : this.closeForm(chat, ctx));
  }

  private transferForm(chat: ChatView): HTMLElement {
    const target = el("select", { id: "transfer-target", required: true }, el("option", { value: "" }, "Loading…"));
    const note = el("textarea", { id: "transfer-note", rows: "2", maxlength: "1000" });
    const status = el("p", { role: "status" });
    const submit = el("button", { type: "submit" }, "Transfer");
    const form = el("form", { class: "action", "aria-labelledby": "transfer-h" },
      el("h3", { id: "transfer-h" }, "Transfer"),
      el("label", { for: "transfer-target" }, "To"), target,
      el("label", { for: "transfer-note" }, "Note for the next agent"), note, submit, status);
    void this.fillTargets(chat, target);
    let requestId = uuid();
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
        requestId = uuid();
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
      const channel = chat.conversation.interaction?.channel ?? 0;
      const [directory, queueList] = await Promise.all([
        allPages(async (pageToken) => {
          const r = await this.client.routing.listAgentDirectory({ channel, pageSize: 500, pageToken });
          return { nextPageToken: r.nextPageToken, items: r.agents };
        }),
        allPages(async (pageToken) => {
          const r = await this.client.routing.listQueues({ pageSize: 500, pageToken });
          return { nextPageToken: r.nextPageToken, items: r.queues };
        }),
      ]);
      const agents = el("optgroup", { label: "Agents" }, ...directory.map((a) =>
        el("option", { value: `agent:${a.id}`, disabled: a.presence !== Presence.AVAILABLE || a.freeCapacity <= 0 },
          `${a.displayName} (${presenceName(a.presence)}, ${a.freeCapacity} free)`)));
      const qs = el("optgroup", { label: "Queues" }, ...queueList.map((q) => el("option", { value: `queue:${q.id}` }, q.displayName)));
      replace(select, el("option", { value: "" }, "Choose an agent or a queue"), agents, qs);
    } catch (err) {
      replace(select, el("option", { value: "" }, `Could not load: ${describeError(err)}`));
    }
  }

  private caseForm(chat: ChatView, guest: boolean): HTMLElement {
    const desc = el("input", { id: "case-desc", maxlength: "500", placeholder: "Empty: the issue type and first message" });
    const status = el("p", { role: "status" });
    const withConsumer = el("button", { type: "button" }, "Create consumer and case");
    const plain = el("button", { type: "submit" }, "Create case");
    const form = el("form", { class: "action", "aria-labelledby": "case-h" },
      el("h3", { id: "case-h" }, "Case"), el("label", { for: "case-desc" }, "Short description"), desc,
      el("div", { class: "row" }, plain, guest ? withConsumer : null), status);
    let requestId = uuid();
    const create = async (consumer: boolean): Promise<void> => {
      plain.disabled = withConsumer.disabled = true;
      status.textContent = "Creating…";
      const req = { conversationId: chat.id, requestId, shortDescription: desc.value.trim() };
      try {
        const number = consumer
          ? (await withRetry(() => this.client.cases.createConsumerAndCaseForGuest(req))).case?.number
          : (await withRetry(() => this.client.cases.createCaseForGuest(req))).case?.number;
        status.textContent = `Case ${number} created.`;
        requestId = uuid();
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

  private closeForm(chat: ChatView, ctx: GetConversationContextResponse): HTMLElement {
    // The outcome and notes are the conversation's wrap-up, which only staff
    // read; the close reason the customer sees is left to the server.
    const codes = ctx.wrapUpCodes;
    const outcome = codes.length
      ? el("select", { id: "wrapup-outcome", required: ctx.wrapUpRequired },
        el("option", { value: "" }, ctx.wrapUpRequired ? "Choose an outcome" : "No outcome"),
        ...codes.map((c) => el("option", { value: c.code }, c.label)))
      : null;
    const notes = el("textarea", { id: "wrapup-notes", rows: "2", maxlength: "2000" });
    const status = el("p", { role: "status" });
    const submit = el("button", { type: "submit", class: "danger" }, "Close conversation");
    const form = el("form", { class: "action", "aria-labelledby": "close-h" },
      el("h3", { id: "close-h" }, "Close and wrap up"),
      outcome ? el("label", { for: "wrapup-outcome" }, "Outcome") : null, outcome,
      el("label", { for: "wrapup-notes" }, "Wrap-up notes (internal, never shown to the customer)"), notes, submit, status);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      submit.disabled = true;
      status.textContent = "Closing…";
      const req = { conversationId: chat.id, wrapUpCode: outcome?.value ?? "", wrapUpNotes: notes.value.trim() };
      try {
        await withRetry(() => this.client.session.closeConversation(req));
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
  return el("section", { class: "ctx" }, el("h3", {}, title), ...body);
}

function dl(rows: [string, string | undefined][]): HTMLElement {
  const list = el("dl", {});
  for (const [k, v] of rows) if (v) list.append(el("dt", {}, k), el("dd", {}, v));
  return list;
}
