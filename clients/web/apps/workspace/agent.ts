// The agent's desk: presence per channel, offers with their countdown, the
// chats side by side and the context panel, all fed by the agent's ONE
// stream (RoutingService.FollowWork), resumed per conversation after a
// network drop and after a reload (cursors kept in sessionStorage). Each
// time the stream (re)opens it sends the agent's work again, then synced:
// an offer or a chat the desk shows that the stream has not sent again by
// then is no longer the agent's (it expired, was withdrawn, transferred or
// closed while the desk was away), and the desk drops the offer and shows
// the chat as left.
import { timestampDate } from "@bufbuild/protobuf/wkt";

import {
  Presence,
  followWork,
  type Agent,
  type Conversation,
  type FollowWorkResponse,
  type Offer,
  type ParleyClient,
  type StreamState,
} from "../../src/index.js";
import { ChatView, type ChatHost } from "./chat.js";
import { ContextPanel } from "./context.js";
import { el, replace } from "../shared/dom.js";
import { byId, channelName, channels, clock, describeError, presenceName, withRetry } from "./util.js";

const cursorsKey = "parley.workspace.cursors";

/** What the desk remembers of the signed-in agent across reloads. */
export interface AgentInfo {
  id: string;
  displayName: string;
  presence: Record<number, Presence>;
}

/** Reads the agent's presence per channel from an Agent. */
export function agentInfo(a: Agent): AgentInfo {
  const presence: Record<number, Presence> = {};
  for (const c of channels) presence[c] = a.channelPresences.find((p) => p.channel === c)?.presence ?? a.presence;
  return { id: a.id, displayName: a.displayName, presence };
}

interface OfferRow {
  offer: Offer;
  el: HTMLElement;
  countdown: HTMLElement;
  expires: number;
  /** The agent pressed Accept or Decline on it (its buttons are disabled meanwhile). */
  acting: boolean;
}

/** The agent's desk. */
export class AgentDesk implements ChatHost {
  readonly agentId: string;
  private readonly chats = new Map<string, ChatView>();
  /** Conversations assigned to the agent since the page loaded. */
  private readonly held = new Set<string>();
  private readonly offers = new Map<string, OfferRow>();
  /** The offers the current stream sent since it (re)opened. */
  private offersSent = new Set<string>();
  /** The chats the current stream assigned or released since it (re)opened. */
  private chatsSent = new Set<string>();
  private readonly cursors: Record<string, number>;
  private readonly context: ContextPanel;
  private readonly abort = new AbortController();
  private readonly tabs = byId("chat-tabs");
  private readonly columns = byId("chats");
  private readonly offerList = byId("offers");
  private active: ChatView | null = null;
  /** The conversation of the offer the agent just accepted: its composer takes the keyboard once it is shown. */
  private focusOnAssign: string | null = null;
  private ticker: ReturnType<typeof setInterval> | undefined;

  constructor(
    readonly client: ParleyClient,
    private info: AgentInfo,
    private readonly setStatus: (state: StreamState | "offline", err?: unknown) => void,
    private readonly saveInfo: (info: AgentInfo) => void,
  ) {
    this.agentId = info.id;
    this.cursors = readCursors();
    this.context = new ContextPanel(byId("context"), client);
    this.renderPresence();
    replace(this.offerList);
    replace(this.tabs);
    replace(this.columns, el("p", { class: "hint", id: "no-chats" }, "No chats yet. Offers appear above when you are available."));
    this.tabs.addEventListener("keydown", (ev) => this.tabKeys(ev));
    this.ticker = setInterval(() => this.tick(), 1000);
    document.addEventListener("visibilitychange", this.onVisible);
  }

  private readonly onVisible = (): void => {
    if (document.visibilityState === "visible") this.active?.activated();
  };

  /** Follows the agent's work until stop. */
  async run(): Promise<void> {
    try {
      for await (const item of followWork(this.client, {
        signal: this.abort.signal,
        cursors: { ...this.cursors },
        onStateChange: (state, err) => {
          // Reported as each stream opens, before any of its items.
          if (state === "connecting") {
            this.offersSent = new Set();
            this.chatsSent = new Set();
          }
          this.setStatus(state, err);
        },
      })) {
        this.handle(item);
      }
    } catch (err) {
      if (this.abort.signal.aborted) return;
      this.setStatus("ended", err);
    }
  }

  /** Stops the stream and timers. */
  stop(): void {
    this.abort.abort();
    clearInterval(this.ticker);
    document.removeEventListener("visibilitychange", this.onVisible);
  }

  private handle(r: FollowWorkResponse): void {
    const item = r.item;
    switch (item.case) {
      case "offer":
        this.offersSent.add(item.value.id);
        this.addOffer(item.value);
        break;
      case "offerClosed":
        this.removeOffer(item.value.offerId);
        break;
      case "assigned":
        this.chatsSent.add(r.conversationId);
        this.assigned(item.value);
        break;
      case "released":
        this.chatsSent.add(r.conversationId);
        this.released(item.value);
        break;
      case "synced":
        this.synced();
        break;
      case "event": {
        // Also the events of a chat that left the agent while the stream
        // was down, before its released (no assigned comes first): they
        // go to its column, which released then ends.
        const chat = this.chats.get(r.conversationId);
        chat?.addEvent(item.value, chat === this.active && document.visibilityState === "visible");
        // A new case belongs in the context panel's list.
        if (item.value.kind.case === "caseLinked" && chat && this.context.current === chat) void this.context.refresh();
        break;
      }
      case "typing":
        this.chats.get(r.conversationId)?.typing(item.value);
        break;
      case "readCursor":
        this.chats.get(r.conversationId)?.cursorMoved(item.value);
        break;
      default:
        break;
    }
  }

  // --- presence ---

  private renderPresence(): void {
    const box = byId("presence");
    const rows = channels.map((c) => {
      const id = `presence-${c}`;
      const select = el("select", { id }, ...[Presence.AVAILABLE, Presence.AWAY, Presence.OFFLINE].map((p) =>
        el("option", { value: String(p), selected: this.info.presence[c] === p }, presenceName(p))));
      select.addEventListener("change", () => void this.setPresence(Number(select.value) as Presence, c, select));
      return el("div", { class: "presence-row" }, el("label", { for: id }, channelName(c)), select);
    });
    const all = el("button", { type: "button", class: "small" }, "Available everywhere");
    all.addEventListener("click", () => void this.setPresence(Presence.AVAILABLE, 0));
    replace(box, el("legend", {}, `Presence of ${this.info.displayName}`), ...rows, all, el("span", { id: "presence-status", role: "status" }));
  }

  private async setPresence(p: Presence, channel: number, select?: HTMLSelectElement): Promise<void> {
    const status = byId("presence-status");
    status.textContent = "Saving…";
    if (select) select.disabled = true;
    try {
      const res = await withRetry(() => this.client.routing.setPresence({ presence: p, channel }));
      this.info = agentInfo(res.agent!);
      this.saveInfo(this.info);
      this.renderPresence();
      byId("presence-status").textContent = "Saved.";
    } catch (err) {
      status.textContent = `Not saved: ${describeError(err)}`;
      if (select) select.disabled = false;
    }
  }

  // --- offers ---

  private addOffer(offer: Offer): void {
    if (this.offers.has(offer.id)) return;
    const conv = offer.conversation;
    const it = conv?.interaction;
    const s = offer.handoffSummary;
    const countdown = el("span", { class: "countdown", "aria-label": "Time left to accept" });
    const accept = el("button", { type: "button", class: "primary" }, "Accept");
    const decline = el("button", { type: "button" }, "Decline");
    const status = el("span", { role: "status" });
    const headId = `offer-${offer.id}`;
    const item = el("li", { class: "offer", "aria-labelledby": headId, "data-offer": offer.id, "data-conversation": conv?.id },
      el("h3", { id: headId }, `${it?.name || "A customer"} · ${channelName(it?.channel ?? 0)}${it?.issueType ? ` · ${it.issueType}` : ""}`),
      offer.transferredBy ? el("p", { class: "transfer" }, `Transferred by ${offer.transferredBy.displayName}${offer.transferNote ? `: ${offer.transferNote}` : ""}`) : null,
      it?.firstMessage ? el("p", { class: "first" }, it.firstMessage) : null,
      offer.summary ? el("p", { class: "summary pre" }, offer.summary) : null,
      s ? el("div", { class: "handoff" },
        s.intent || s.topicName ? el("p", {}, `Intent: ${s.topicName || s.intent}`) : null,
        Object.keys(s.slots).length ? el("p", {}, `Slots: ${Object.entries(s.slots).map(([k, v]) => `${k}=${v}`).join(", ")}`) : null,
        s.generatedText || s.text ? el("p", { class: "pre" }, s.generatedText || s.text) : null) : null,
      el("div", { class: "row" }, accept, decline, countdown, status));
    const expires = offer.expireTime ? timestampDate(offer.expireTime).getTime() : Date.now() + 30_000;
    const row: OfferRow = { offer, el: item, countdown, expires, acting: false };
    accept.addEventListener("click", async () => {
      row.acting = true;
      accept.disabled = decline.disabled = true;
      status.textContent = "Accepting…";
      if (conv) this.focusOnAssign = conv.id;
      try {
        await withRetry(() => this.client.routing.acceptOffer({ offerId: offer.id }));
        this.removeOffer(offer.id);
      } catch (err) {
        if (conv && this.focusOnAssign === conv.id) this.focusOnAssign = null;
        status.textContent = `Not accepted: ${describeError(err)}`;
        const lost = this.focusLost(row);
        row.acting = false;
        accept.disabled = decline.disabled = false;
        if (lost) accept.focus();
      }
    });
    decline.addEventListener("click", async () => {
      row.acting = true;
      accept.disabled = decline.disabled = true;
      try {
        await withRetry(() => this.client.routing.declineOffer({ offerId: offer.id }));
        this.removeOffer(offer.id);
      } catch (err) {
        status.textContent = `Not declined: ${describeError(err)}`;
        const lost = this.focusLost(row);
        row.acting = false;
        accept.disabled = decline.disabled = false;
        if (lost) decline.focus();
      }
    });
    this.offers.set(offer.id, row);
    this.offerList.append(item);
    this.updateCountdown(row);
  }

  private removeOffer(id: string): void {
    const row = this.offers.get(id);
    if (!row) return;
    // The keyboard was on this offer (or dropped to the page when its
    // buttons were disabled): it must not be left on nothing.
    const lost = this.focusLost(row);
    const next = (row.el.nextElementSibling ?? row.el.previousElementSibling) as HTMLElement | null;
    row.el.remove();
    this.offers.delete(id);
    if (!lost) return;
    const convId = row.offer.conversation?.id;
    const chat = convId ? this.chats.get(convId) : undefined;
    if (convId && this.focusOnAssign === convId) {
      // Accepted: its chat's composer, or the offers' heading until the
      // stream shows the chat (assigned then moves the keyboard on).
      if (chat && !chat.ended) this.focusChat(chat);
      else byId("offers-h").focus();
    } else if (next?.querySelector("button:not(:disabled)")) {
      // Declined, expired or withdrawn: the next offer's Accept.
      next.querySelector<HTMLElement>("button:not(:disabled)")!.focus();
    } else if (this.active && !this.active.ended) {
      this.active.focus();
    } else {
      byId("offers-h").focus();
    }
  }

  /** Whether the keyboard is on the offer, or nowhere (on the page itself) since the agent pressed one of its buttons. */
  private focusLost(row: OfferRow): boolean {
    const ae = document.activeElement;
    return row.el.contains(ae) || (row.acting && (!ae || ae === document.body));
  }

  /** Shows chat and moves the keyboard to its composer. */
  private focusChat(chat: ChatView): void {
    this.focusOnAssign = null;
    this.activate(chat);
    chat.focus();
  }

  /** The chat of the offer just accepted is shown: its composer takes the keyboard if nothing else has it. */
  private focusAssigned(chat: ChatView): void {
    if (this.focusOnAssign !== chat.id) return;
    const ae = document.activeElement;
    const offer = this.offerList.querySelector(`li.offer[data-conversation="${CSS.escape(chat.id)}"]`);
    if (!ae || ae === document.body || ae.id === "offers-h" || offer?.contains(ae)) this.focusChat(chat);
    else this.focusOnAssign = null;
  }

  private updateCountdown(row: OfferRow): void {
    const left = (row.expires - Date.now()) / 1000;
    row.countdown.textContent = left > 0 ? `Expires in ${clock(left)}` : "Expired";
    row.el.classList.toggle("urgent", left < 10);
  }

  private tick(): void {
    for (const row of this.offers.values()) this.updateCountdown(row);
  }

  // --- chats ---

  private assigned(conv: Conversation): void {
    const existing = this.chats.get(conv.id);
    const again = this.held.has(conv.id);
    this.held.add(conv.id);
    if (existing && !existing.ended) {
      existing.conversation = conv;
      this.focusAssigned(existing);
      return;
    }
    if (existing) {
      // Back on the desk (a transfer to a queue came back to this agent).
      existing.revive(conv);
      existing.el.querySelector("button.dismiss")?.remove();
      this.tabFor(conv.id)?.classList.remove("ended");
      // The context panel showed it as ended (no Transfer, Case or Close).
      if (this.context.current === existing) void this.context.refresh();
      void this.loadHistory(existing, Infinity);
      this.focusAssigned(existing);
      return;
    }
    byId("chats").querySelector("#no-chats")?.remove();
    const chat = new ChatView(this, conv);
    this.chats.set(conv.id, chat);
    this.columns.append(chat.el);
    const tab = el("button", { type: "button", id: `tab-${conv.id}`, "aria-controls": chat.el.id, "data-conversation": conv.id },
      chat.name, el("span", { class: "badge" }));
    tab.addEventListener("click", () => {
      this.activate(chat);
      chat.focus();
    });
    this.tabs.append(tab);
    if (!this.active) this.activate(chat);
    this.focusAssigned(chat);
    // The stream replays a conversation's log only from where this page's
    // stream stood: after a reload, the history before the stored cursor,
    // and for a chat that left the desk and came back, all of it, comes
    // from ListEvents (events are placed by seq, so overlaps do no harm).
    const after = this.cursors[conv.id] ?? 0;
    if (again) void this.loadHistory(chat, Infinity);
    else if (after > 0) void this.loadHistory(chat, after);
  }

  private async loadHistory(chat: ChatView, upTo: number): Promise<void> {
    let pageToken = "";
    try {
      do {
        const page = await withRetry(() => this.client.messaging.listEvents({ conversationId: chat.id, pageSize: 500, pageToken }));
        for (const ev of page.events) if (Number(ev.seq) <= upTo) chat.addEvent(ev, false);
        const last = page.events.at(-1);
        pageToken = last && Number(last.seq) < upTo ? page.nextPageToken : "";
      } while (pageToken);
    } catch (err) {
      chat.say(`Earlier messages could not be loaded: ${describeError(err)}`);
    }
  }

  private released(conv: Conversation): void {
    delete this.cursors[conv.id];
    writeCursors(this.cursors);
    const chat = this.chats.get(conv.id);
    if (!chat) return;
    chat.end(conv.agentId && conv.agentId !== this.agentId ? "Transferred: you no longer hold this chat." : "You no longer hold this chat.");
    const tab = this.tabFor(conv.id);
    tab?.classList.add("ended");
    if (!chat.el.querySelector("button.dismiss")) {
      const dismiss = el("button", { type: "button", class: "small dismiss" }, "Remove from desk");
      dismiss.addEventListener("click", () => this.dismiss(chat));
      chat.el.querySelector("header")?.append(dismiss);
    }
    if (this.context.current === chat) void this.context.refresh();
  }

  /**
   * The stream has sent the agent's pending offers and held chats, and
   * released those that left while it was down: what the desk still shows
   * from before that it has not sent again is no longer the agent's.
   */
  private synced(): void {
    for (const id of [...this.offers.keys()]) if (!this.offersSent.has(id)) this.removeOffer(id);
    for (const [id, chat] of this.chats) {
      if (!chat.ended && !this.chatsSent.has(id)) this.released(chat.conversation);
    }
    let changed = false;
    for (const id of Object.keys(this.cursors)) {
      if (!this.chatsSent.has(id)) {
        delete this.cursors[id];
        changed = true;
      }
    }
    if (changed) writeCursors(this.cursors);
  }

  private dismiss(chat: ChatView): void {
    chat.el.remove();
    this.tabFor(chat.id)?.remove();
    this.chats.delete(chat.id);
    if (this.active === chat) {
      this.active = null;
      const next = this.chats.values().next().value as ChatView | undefined;
      if (next) this.activate(next);
      else this.context.show(null);
    }
  }

  private tabFor(id: string): HTMLElement | null {
    return document.getElementById(`tab-${id}`);
  }

  /** Makes chat the active one (tab selected, context shown, read). */
  activate(chat: ChatView): void {
    if (this.active === chat) {
      chat.activated();
      return;
    }
    this.active = chat;
    for (const [id, c] of this.chats) {
      const tab = this.tabFor(id);
      if (c === chat) tab?.setAttribute("aria-current", "true");
      else tab?.removeAttribute("aria-current");
      c.el.classList.toggle("active", c === chat);
    }
    this.context.show(chat);
    chat.activated();
  }

  private tabKeys(ev: KeyboardEvent): void {
    const tabs = Array.from(this.tabs.querySelectorAll<HTMLElement>("button"));
    const i = tabs.indexOf(document.activeElement as HTMLElement);
    if (i < 0) return;
    let j = -1;
    if (ev.key === "ArrowRight") j = (i + 1) % tabs.length;
    else if (ev.key === "ArrowLeft") j = (i - 1 + tabs.length) % tabs.length;
    else if (ev.key === "Home") j = 0;
    else if (ev.key === "End") j = tabs.length - 1;
    if (j < 0) return;
    ev.preventDefault();
    tabs[j].focus();
    const chat = this.chats.get(tabs[j].dataset.conversation!);
    if (chat) this.activate(chat);
  }

  cursor(conversationId: string, seq: number): void {
    if ((this.cursors[conversationId] ?? 0) >= seq) return;
    this.cursors[conversationId] = seq;
    writeCursors(this.cursors);
  }

  unreadChanged(chat: ChatView): void {
    const badge = this.tabFor(chat.id)?.querySelector(".badge");
    if (badge) badge.textContent = chat.unread ? ` ${chat.unread} unread` : "";
  }
}

function readCursors(): Record<string, number> {
  try {
    const raw = JSON.parse(sessionStorage.getItem(cursorsKey) ?? "{}") as unknown;
    const out: Record<string, number> = {};
    if (raw && typeof raw === "object") {
      for (const [k, v] of Object.entries(raw)) if (typeof v === "number" && Number.isSafeInteger(v) && v >= 0) out[k] = v;
    }
    return out;
  } catch {
    return {};
  }
}

function writeCursors(c: Record<string, number>): void {
  sessionStorage.setItem(cursorsKey, JSON.stringify(c));
}

/** Forgets the stored cursors (sign-out). */
export function clearCursors(): void {
  sessionStorage.removeItem(cursorsKey);
}
