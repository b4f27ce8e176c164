// One conversation in the messenger: the log (bot, agent and the visitor's
// messages, status lines), the composer with typing and attachments, read
// receipts, the queue position, leaving a message when nobody comes, and
// the read-only transcript once the chat is closed. Everything from the
// server reaches the DOM as text.
import { timestampDate } from "@bufbuild/protobuf/wkt";
import {
  Channel,
  Code,
  ConnectError,
  Controller,
  errorReason,
  followConversation,
  isRetryable,
  retryDelayMs,
  ParticipantRole,
  type Attachment,
  type ControllerChanged,
  type Event,
  type MessagePosted,
  type Participant,
  type QueuePosition,
  type ReadCursor,
  type SubscribeResponse,
  type Typing,
} from "../../src/index.js";
import { asParleyClient, type MessengerClient } from "./api.js";
import { append, clear, download, el, formatBytes, linkify, uuid } from "../shared/dom.js";

/** What the chat tells the app around it. */
export interface ChatHooks {
  /** The visitor has seen everything up to seq (saved for the unread count after a reload). */
  seen(seq: number): void;
  /** Messages from the service team the visitor has not seen. */
  unread(count: number): void;
  /** The conversation is over (closed, or no longer readable): forget it. */
  ended(): void;
  /** The visitor wants a new chat. */
  newChat(): void;
}

const imageTypes = new Set(["image/png", "image/jpeg", "image/gif", "image/webp"]);
/** Other types a downloaded attachment keeps, so that its file gets their extension. */
const keptTypes = new Set(["text/plain", "application/pdf"]);
const typingIdleMs = 4000;
const typingRefreshMs = 5000;
/** How long a send is retried by itself before the visitor is asked to retry. */
const sendGiveUpMs = 60_000;
/** How near the bottom (in pixels) the reader counts as following the newest message. */
const followSlackPx = 80;

/** Resolves after ms, or early when signal aborts or wake is called. */
function pause(ms: number, signal: AbortSignal): { done: Promise<void>; wake(): void } {
  let wake = () => {};
  const done = new Promise<void>((resolve) => {
    const timer = setTimeout(finish, ms);
    function finish() {
      clearTimeout(timer);
      signal.removeEventListener("abort", finish);
      resolve();
    }
    signal.addEventListener("abort", finish, { once: true });
    wake = finish;
  });
  return { done, wake };
}

/** Returns who wrote, for the log and the transcript. */
function senderName(p: Participant | undefined): string {
  switch (p?.role) {
    case ParticipantRole.GUEST:
    case ParticipantRole.CUSTOMER:
      return p.displayName || "You";
    case ParticipantRole.BOT:
      return p.displayName || "Virtual assistant";
    case ParticipantRole.AGENT:
      return p.displayName || "Agent";
    default:
      return "Parley";
  }
}

const isCustomer = (p: Participant | undefined) => p?.role === ParticipantRole.GUEST || p?.role === ParticipantRole.CUSTOMER;

function clock(d: Date): string {
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

/** Chat is the view of one conversation. */
export class Chat {
  readonly root: HTMLElement;
  private readonly log = el("ol", { class: "log", role: "log", "aria-live": "polite", "aria-label": "Messages", tabindex: 0 });
  private readonly head = el("p", { class: "chat-head" });
  /** Who the visitor chats as, from the server's record of the conversation (never from the host page). */
  private readonly identity = el("p", { class: "chat-identity" });
  private readonly newer = el("button", { type: "button", class: "newer", hidden: true }, "New messages ↓");
  private readonly connection = el("p", { class: "connection", role: "status" });
  private readonly queueInfo = el("p", { class: "queue", role: "status" });
  private readonly typingLine = el("p", { class: "typing", "aria-live": "off" });
  private readonly composer: HTMLFormElement;
  private readonly input = el("textarea", { id: "compose", rows: 2, maxlength: 4000, placeholder: "Write a message…" });
  private readonly fileInput = el("input", { type: "file", id: "attach", class: "visually-hidden" });
  private readonly notice = el("p", { class: "notice", role: "alert" });
  private readonly leaveOffer = el("div", { class: "leave-offer", hidden: true });
  private readonly leavePanel = el("form", { class: "leave", hidden: true, novalidate: true, "aria-labelledby": "leave-title" });
  private readonly endButton = el("button", { type: "button", class: "link" }, "End chat");
  private readonly ended = el("div", { class: "ended", hidden: true });
  private readonly readMark = el("span", { class: "read-mark" }, "Read");

  private readonly abort = new AbortController();
  private lastSeq = 0;
  private controller = Controller.UNSPECIFIED;
  private closed = false;
  private agentName = "";
  private agentReadSeq = 0;
  private readSent = 0;
  private seenSeq: number;
  private unreadCount = 0;
  private shown = false;
  private suggestions: HTMLElement | undefined;
  private position: QueuePosition | undefined;
  private readonly mine: { seq: number; node: HTMLElement }[] = [];
  private readonly pending = new Map<string, HTMLElement>();
  private readonly typers = new Map<string, { name: string; timer: ReturnType<typeof setTimeout> }>();
  private readonly blobs = new Map<string, Promise<Blob>>();
  private readonly transcript: string[] = [];
  private typingOn = false;
  private typingSentAt = 0;
  private typingStop: ReturnType<typeof setTimeout> | undefined;
  private leaveRequestId = uuid();
  private ending = false;
  /** The case a left message became. */
  private leftCase = "";
  /** Whether the log follows the newest message (the reader is at, or near, its bottom). */
  private following = true;
  /** Why the connection line shows "Reconnecting…": the stream retries, the browser is offline. */
  private streamRetrying = false;
  private offline = typeof navigator !== "undefined" && navigator.onLine === false;
  /** Sends waiting to retry, woken when the browser comes back online. */
  private readonly retryWaits = new Set<() => void>();
  private readonly onOnline = () => {
    this.offline = false;
    this.showConnection();
    for (const wake of [...this.retryWaits]) wake();
  };
  private readonly onOffline = () => {
    this.offline = true;
    this.showConnection();
  };

  constructor(
    private readonly client: MessengerClient,
    readonly conversationId: string,
    seenSeq: number,
    private readonly hooks: ChatHooks,
  ) {
    this.seenSeq = seenSeq;
    this.endButton.addEventListener("click", () => void this.end());
    this.composer = el(
      "form",
      { class: "composer" },
      el("label", { for: "compose", class: "visually-hidden" }, "Message"),
      this.input,
      el("div", { class: "composer-actions" }, this.fileInput, el("label", { for: "attach", class: "button secondary" }, "Attach file"), el("button", { type: "submit", class: "primary" }, "Send")),
    );
    this.fileInput.setAttribute("aria-label", "Attach a file");
    this.composer.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const text = this.input.value.trim();
      if (!text) return;
      this.input.value = "";
      void this.send(text);
    });
    this.input.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        this.composer.requestSubmit();
      }
    });
    this.input.addEventListener("input", () => this.typing());
    this.fileInput.addEventListener("change", () => {
      const f = this.fileInput.files?.[0];
      this.fileInput.value = "";
      if (f) void this.attach(f);
    });
    this.buildLeave();
    this.root = el(
      "section",
      { class: "chat", "aria-label": "Chat" },
      el("div", { class: "chat-bar" }, el("div", { class: "chat-title" }, this.head, this.identity), this.endButton),
      this.connection,
      this.log,
      this.newer,
      this.typingLine,
      this.queueInfo,
      this.leaveOffer,
      this.leavePanel,
      this.notice,
      this.composer,
      this.ended,
    );
    this.head.textContent = "Chat";
    this.identity.hidden = true;
    this.log.addEventListener("scroll", () => {
      this.following = this.atBottom();
      if (this.following) this.newer.hidden = true;
    });
    this.newer.addEventListener("click", () => {
      this.following = true;
      this.toBottom();
      this.log.focus();
    });
    // The log gets its size only once the panel is shown (a resumed chat's
    // history may render while it is hidden): keep the newest message in view.
    if (typeof ResizeObserver !== "undefined") {
      new ResizeObserver(() => {
        if (this.following) this.toBottom();
      }).observe(this.log);
    }
    window.addEventListener("online", this.onOnline);
    window.addEventListener("offline", this.onOffline);
    this.showConnection();
  }

  /** Shows "Reconnecting…" while the stream retries or the browser is offline. */
  private showConnection(): void {
    if (this.connection.querySelector("button")) return; // "The connection was lost" stays
    const on = (this.streamRetrying || this.offline) && !this.closed;
    this.connection.textContent = on ? "Reconnecting…" : "";
    this.connection.classList.toggle("visible", on);
  }

  /** Says who the visitor chats as, from the conversation the server returns. */
  private async showIdentity(): Promise<void> {
    try {
      const r = await this.client.session.getConversation({ conversationId: this.conversationId }, { signal: this.abort.signal });
      const c = r.conversation;
      const name = c?.interaction?.name || c?.interaction?.email || "";
      if (!c) return;
      this.identity.textContent = c.consumerId ? `Signed in as ${name || "a customer"}` : name ? `Chatting as ${name} (guest)` : "Chatting as a guest";
      this.identity.hidden = false;
    } catch {
      // Only a hint: the chat works without it.
    }
  }

  /** Follows the conversation from its start (the replay renders the history) until it closes. */
  async run(): Promise<void> {
    void this.showIdentity();
    try {
      for await (const r of followConversation(asParleyClient(this.client), this.conversationId, 0, {
        signal: this.abort.signal,
        onStateChange: (state) => {
          this.streamRetrying = state === "retrying";
          this.showConnection();
        },
      })) {
        this.handle(r);
      }
    } catch (err) {
      if (this.abort.signal.aborted) return;
      const code = ConnectError.from(err).code;
      if (code === Code.Unauthenticated || code === Code.PermissionDenied || code === Code.NotFound) {
        // The token no longer reads the chat: it was closed while we were away.
        this.finish("This chat is no longer available.");
        return;
      }
      this.connection.textContent = "The connection was lost. ";
      this.connection.classList.add("visible");
      this.connection.append(el("button", { type: "button", class: "link", onclick: () => location.reload() }, "Reload"));
    }
  }

  /** Stops following (the view is being replaced). */
  stop(): void {
    this.abort.abort();
    window.removeEventListener("online", this.onOnline);
    window.removeEventListener("offline", this.onOffline);
    clearTimeout(this.typingStop);
    for (const t of this.typers.values()) clearTimeout(t.timer);
  }

  /** Says whether the visitor can see the panel: seen messages are marked read, the others counted. */
  setShown(shown: boolean): void {
    this.shown = shown;
    if (shown && this.following) this.toBottom();
    this.noteSeen();
  }

  /** Focuses the first useful control. */
  focus(): void {
    if (!this.closed) this.input.focus();
    else this.ended.querySelector("button")?.focus();
  }

  private handle(r: SubscribeResponse): void {
    switch (r.item.case) {
      case "event":
        this.onEvent(r.item.value);
        break;
      case "typing":
        this.onTyping(r.item.value);
        break;
      case "readCursor":
        this.onCursor(r.item.value);
        break;
      case "queuePosition":
        this.onPosition(r.item.value);
        break;
    }
  }

  private onEvent(ev: Event): void {
    const seq = Number(ev.seq);
    if (seq <= this.lastSeq) return;
    this.lastSeq = seq;
    const k = ev.kind;
    const who = ev.sender?.displayName || "";
    switch (k.case) {
      case "messagePosted":
        this.message(ev, seq, k.value);
        break;
      case "participantJoined":
        if (k.value.participant?.role === ParticipantRole.AGENT) {
          this.agentName = k.value.participant.displayName || "An agent";
          this.head.textContent = `Chatting with ${this.agentName}`;
          this.line(ev, `${this.agentName} joined the chat`);
        }
        break;
      case "participantLeft":
        if (k.value.participant?.role === ParticipantRole.AGENT) {
          this.line(ev, `${k.value.participant.displayName || "The agent"} left the chat`);
        }
        break;
      case "conversationQueued":
        this.line(ev, k.value.reason === "transfer" ? `Transferring you to ${k.value.queueName || "another team"}` : `Waiting for ${k.value.queueName || "the next available person"}`);
        break;
      case "conversationTransferred":
        this.line(ev, k.value.toAgentId ? "Your chat was passed to a colleague" : "Your chat was transferred");
        break;
      case "caseLinked":
        this.line(ev, `Case ${k.value.caseNumber} was opened for your request`);
        break;
      case "waitExceeded":
        this.line(ev, "Nobody is available to take your chat right now.");
        this.offerLeave(true);
        break;
      case "controllerChanged":
        this.onController(ev, k.value);
        break;
      case "conversationClosed":
        this.line(ev, who && ev.sender?.role === ParticipantRole.AGENT ? `${who} ended the chat` : "The chat has ended");
        this.finish("This chat has ended.");
        break;
    }
    this.noteSeen();
  }

  /** Appends a short status line (not a message) to the log and the transcript. */
  private line(ev: Event | undefined, text: string): void {
    this.log.append(el("li", { class: "status-line" }, text));
    this.record(ev, "", text);
    this.scroll();
  }

  private record(ev: Event | undefined, who: string, text: string): void {
    const at = ev?.createTime ? timestampDate(ev.createTime) : new Date();
    const stamp = at.toISOString().slice(0, 16).replace("T", " ");
    this.transcript.push(who ? `[${stamp}] ${who}: ${text}` : `[${stamp}] -- ${text}`);
  }

  private onController(ev: Event, c: ControllerChanged): void {
    this.controller = c.controller;
    const waiting = c.controller === Controller.PENDING_AGENT;
    this.onPosition(waiting ? this.position : undefined);
    if (!waiting) this.offerLeave(false);
    switch (c.controller) {
      case Controller.BOT:
        this.head.textContent = "Virtual assistant";
        if (c.reason === "handed_back") this.line(ev, "The virtual assistant is back");
        break;
      case Controller.PENDING_AGENT:
        this.head.textContent = "Waiting for a person";
        this.line(ev, "Connecting you to a person…");
        this.offerLeave(false, true);
        break;
      case Controller.AGENT:
        this.head.textContent = this.agentName ? `Chatting with ${this.agentName}` : "Chatting with an agent";
        break;
    }
  }

  /** Keeps the latest queue position (it may come just before the hand-off event) and shows it while waiting. */
  private onPosition(p: QueuePosition | undefined): void {
    this.position = p;
    if (!p || this.controller !== Controller.PENDING_AGENT || this.closed) {
      this.queueInfo.textContent = "";
      return;
    }
    let text = p.position <= 1 ? "You are next in line." : `You are number ${p.position} in line.`;
    if (p.estimatedWait) {
      const min = Math.max(1, Math.round(Number(p.estimatedWait.seconds) / 60));
      text += ` Estimated wait: about ${min} minute${min === 1 ? "" : "s"}.`;
    }
    this.queueInfo.textContent = text;
  }

  private message(ev: Event, seq: number, m: MessagePosted): void {
    const mine = isCustomer(ev.sender);
    if (mine && m.clientMessageId) {
      this.pending.get(m.clientMessageId)?.remove();
      this.pending.delete(m.clientMessageId);
    }
    this.suggestions?.remove();
    this.suggestions = undefined;
    const role = ev.sender?.role;
    const who = senderName(ev.sender);
    const at = ev.createTime ? timestampDate(ev.createTime) : new Date();
    const li = el(
      "li",
      { class: `msg ${mine ? "mine" : role === ParticipantRole.BOT ? "bot" : role === ParticipantRole.AGENT ? "agent" : "system"}`, "data-seq": seq },
      el("p", { class: "meta" }, el("span", { class: "who" }, who), " ", el("time", { datetime: at.toISOString() }, clock(at))),
      m.text && el("p", { class: "text" }, ...linkify(m.text)),
    );
    this.record(ev, who, m.text);
    if (m.attachments.length) {
      const list = el("ul", { class: "files", "aria-label": "Attachments" });
      for (const a of m.attachments) {
        list.append(this.attachment(a));
        this.record(ev, who, `[attachment] ${a.filename} (${formatBytes(Number(a.sizeBytes))})`);
      }
      li.append(list);
    }
    if (m.articles.length) {
      li.append(el("p", { class: "articles-title" }, "From our help articles:"));
      const list = el("ul", { class: "articles" });
      for (const a of m.articles) list.append(el("li", {}, a.title));
      li.append(list);
    }
    this.log.append(li);
    if (!mine && m.suggestedReplies.length && !this.closed) {
      this.suggestions = el("li", { class: "suggestions" });
      const group = el("div", { role: "group", "aria-label": "Suggested replies" });
      for (const s of m.suggestedReplies) {
        group.append(el("button", { type: "button", class: "chip", onclick: () => void this.send(s) }, s));
      }
      this.suggestions.append(group);
      this.log.append(this.suggestions);
    }
    if (mine) {
      this.mine.push({ seq, node: li });
      this.placeReadMark();
    } else if (seq > this.seenSeq && !this.shown) {
      this.unreadCount++;
      this.hooks.unread(this.unreadCount);
    }
    this.scroll();
  }

  private attachment(a: Attachment): HTMLElement {
    const label = `${a.filename} (${formatBytes(Number(a.sizeBytes))})`;
    const button = el("button", { type: "button", class: "file" }, label);
    button.setAttribute("aria-label", `Download ${label}`);
    button.addEventListener("click", async () => {
      try {
        download(await this.blob(a), a.filename);
      } catch (err) {
        this.say(`Could not download ${a.filename}: ${ConnectError.from(err).rawMessage}`);
      }
    });
    const item = el("li", {}, button);
    if (imageTypes.has(a.contentType)) {
      this.blob(a).then(
        (b) => item.prepend(el("img", { src: URL.createObjectURL(b), alt: a.filename, class: "thumb" })),
        () => undefined, // the download button still offers the file
      );
    }
    return item;
  }

  /**
   * Returns an attachment's content, once per attachment. Only allowed image
   * types (to show in an <img>), plain text and PDF keep their content type
   * (which names the downloaded file's extension); everything else is an
   * opaque download, so no blob: URL ever renders HTML or SVG here.
   */
  private blob(a: Attachment): Promise<Blob> {
    let b = this.blobs.get(a.id);
    if (!b) {
      b = this.client.messaging.getAttachment({ attachmentId: a.id }).then(
        (r) => new Blob([r.content as BlobPart], { type: imageTypes.has(a.contentType) || keptTypes.has(a.contentType) ? a.contentType : "application/octet-stream" }),
      );
      b.catch(() => this.blobs.delete(a.id));
      this.blobs.set(a.id, b);
    }
    return b;
  }

  private onTyping(t: Typing): void {
    const p = t.participant;
    if (!p || isCustomer(p)) return;
    const key = `${p.role}:${p.id}`;
    const prev = this.typers.get(key);
    if (prev) clearTimeout(prev.timer);
    this.typers.delete(key);
    if (t.typing) {
      const until = t.expireTime ? timestampDate(t.expireTime).getTime() - Date.now() : typingIdleMs;
      const timer = setTimeout(() => {
        this.typers.delete(key);
        this.showTypers();
      }, Math.max(0, Math.min(until, 30_000)));
      this.typers.set(key, { name: senderName(p), timer });
    }
    this.showTypers();
  }

  private showTypers(): void {
    const names = [...this.typers.values()].map((t) => t.name);
    this.typingLine.textContent = names.length ? `${names.join(", ")} ${names.length === 1 ? "is" : "are"} typing…` : "";
  }

  private onCursor(c: ReadCursor): void {
    if (c.participant?.role !== ParticipantRole.AGENT) return;
    const read = Number(c.readSeq);
    if (read > this.agentReadSeq) {
      this.agentReadSeq = read;
      this.placeReadMark();
    }
  }

  /** Shows "Read" under the visitor's last message an agent has read. */
  private placeReadMark(): void {
    let target: HTMLElement | undefined;
    for (const m of this.mine) if (m.seq <= this.agentReadSeq) target = m.node;
    if (target) target.append(this.readMark);
  }

  /** Marks what the visitor can see as read, and tells the host how many messages wait unseen. */
  private noteSeen(): void {
    if (!this.shown) return;
    if (this.unreadCount) {
      this.unreadCount = 0;
      this.hooks.unread(0);
    }
    if (this.lastSeq > this.seenSeq) {
      this.seenSeq = this.lastSeq;
      if (!this.closed) this.hooks.seen(this.lastSeq); // a closed chat stays forgotten
    }
    if (!this.closed && this.lastSeq > this.readSent) {
      const seq = this.lastSeq;
      this.readSent = seq;
      this.client.messaging
        .markRead({ conversationId: this.conversationId, requestId: uuid(), readSeq: BigInt(seq) })
        .catch(() => {
          if (this.readSent === seq) this.readSent = 0; // try again with the next event
        });
    }
  }

  /**
   * Sends a message. A retryable failure (the network, a timeout, a rate
   * limit) is retried by itself with a growing backoff, honouring the
   * server's retry hint, while the bubble says "Sending…"; the visitor is
   * asked to retry only after a non-retryable error or a minute of
   * failures. Every try keeps the client_message_id, so it is posted once.
   */
  private async send(text: string, attachmentIds: string[] = [], cmid = uuid(), bubble?: HTMLElement): Promise<void> {
    if (this.closed) return;
    this.stopTyping();
    if (!bubble) {
      bubble = el("li", { class: "msg mine pending" }, el("p", { class: "meta" }, el("span", { class: "who" }, "You"), " ", el("span", { class: "state" }, "Sending…")), text && el("p", { class: "text" }, text));
      this.pending.set(cmid, bubble);
      this.log.append(bubble);
      this.scroll();
    }
    const state = bubble.querySelector(".state")!;
    state.textContent = "Sending…";
    const started = Date.now();
    let backoff = 1000;
    for (;;) {
      try {
        await this.client.messaging.sendMessage({ conversationId: this.conversationId, clientMessageId: cmid, text, attachmentIds, channel: Channel.MESSENGER });
        return;
      } catch (err) {
        if (!this.pending.has(cmid) || this.abort.signal.aborted) return; // it arrived after all, or the view is gone
        if (!this.closed && isRetryable(err) && Date.now() - started < sendGiveUpMs) {
          const hint = retryDelayMs(err) ?? 0;
          const wait = Math.max(backoff / 2 + (Math.random() * backoff) / 2, hint);
          backoff = Math.min(backoff * 2, 15_000);
          const p = pause(Math.min(wait, Math.max(0, sendGiveUpMs - (Date.now() - started)) + 1), this.abort.signal);
          // Coming back online retries at once, unless the server asked for a pause.
          const wake = () => hint === 0 && p.wake();
          this.retryWaits.add(wake);
          await p.done;
          this.retryWaits.delete(wake);
          if (!this.pending.has(cmid) || this.abort.signal.aborted) return;
          continue;
        }
        if (this.closed) return;
        state.textContent = `Not sent (${ConnectError.from(err).rawMessage}) — `;
        state.append(
          el("button", { type: "button", class: "link", onclick: () => void this.send(text, attachmentIds, cmid, bubble) }, "Retry"),
        );
        return;
      }
    }
  }

  private typing(): void {
    if (this.closed) return;
    clearTimeout(this.typingStop);
    if (this.input.value.trim() === "") {
      this.stopTyping();
      return;
    }
    const now = Date.now();
    if (!this.typingOn || now - this.typingSentAt > typingRefreshMs) {
      this.typingOn = true;
      this.typingSentAt = now;
      this.client.messaging.setTyping({ conversationId: this.conversationId, typing: true }).catch(() => undefined);
    }
    this.typingStop = setTimeout(() => this.stopTyping(), typingIdleMs);
  }

  private stopTyping(): void {
    clearTimeout(this.typingStop);
    if (!this.typingOn) return;
    this.typingOn = false;
    this.client.messaging.setTyping({ conversationId: this.conversationId, typing: false }).catch(() => undefined);
  }

  /** Uploads a file (with its SHA-256, computed here) and sends it as a message. */
  private async attach(file: File): Promise<void> {
    const filename = file.name.replace(/[/\\\x00-\x1f]/g, "_").slice(-255) || "file";
    this.say(`Uploading ${filename}…`);
    try {
      if (!crypto.subtle) throw new Error("attachments need a secure (HTTPS) connection");
      const content = new Uint8Array(await file.arrayBuffer());
      const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", content));
      const sha256 = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
      const res = await this.client.messaging.uploadAttachment({
        conversationId: this.conversationId,
        requestId: uuid(),
        filename,
        contentType: file.type || "application/octet-stream",
        content,
        sha256,
      });
      this.say("");
      await this.send("", [res.attachment!.id]);
    } catch (err) {
      this.say(`Could not send ${filename}: ${ConnectError.from(err).rawMessage}`);
    }
  }

  private say(text: string): void {
    this.notice.textContent = text;
  }

  /** Closes the chat (the closing event then ends the view). The button keeps the focus meanwhile, so it is not disabled. */
  private async end(): Promise<void> {
    if (this.ending) return;
    this.ending = true;
    try {
      await this.client.session.closeConversation({ conversationId: this.conversationId, reason: "the customer ended the chat" });
    } catch (err) {
      if (errorReason(err) !== "CONVERSATION_CLOSED") this.say(`Could not end the chat: ${ConnectError.from(err).rawMessage}`);
    } finally {
      this.ending = false;
    }
  }

  private buildLeave(): void {
    const text = el("textarea", { id: "leave-text", rows: 4, maxlength: 4000, required: true, "aria-describedby": "leave-error" });
    const error = el("p", { id: "leave-error", class: "field-error" });
    const button = el("button", { type: "submit", class: "primary" }, "Send message");
    append(
      this.leavePanel,
      el("h2", { id: "leave-title" }, "Leave us a message"),
      el("p", { class: "note" }, "We will reply by email. The chat ends when you send it."),
      el("label", { for: "leave-text" }, "Your message ", el("span", { class: "req", "aria-hidden": "true" }, "*")),
      text,
      error,
      el("div", { class: "row" }, button, el("button", { type: "button", class: "secondary", onclick: () => this.showLeave(false) }, "Keep waiting")),
    );
    let busy = false; // aria-disabled meanwhile, so the button keeps the focus
    this.leavePanel.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      if (busy) return;
      const value = text.value.trim();
      if (!value) {
        error.textContent = "Write your message first.";
        text.setAttribute("aria-invalid", "true");
        text.focus();
        return;
      }
      error.textContent = "";
      text.removeAttribute("aria-invalid");
      busy = true;
      button.setAttribute("aria-disabled", "true");
      try {
        const r = await this.client.session.leaveMessage({ conversationId: this.conversationId, requestId: this.leaveRequestId, text: value });
        this.leftCase = r.caseNumber;
        this.finish("");
        const status = this.ended.querySelector("[role=status]");
        if (status) status.textContent = this.endText("");
      } catch (err) {
        error.textContent = errorReason(err) === "CONVERSATION_NOT_WAITING" ? ConnectError.from(err).rawMessage : `Could not send your message: ${ConnectError.from(err).rawMessage}`;
        if (errorReason(err) === "CONVERSATION_NOT_WAITING") this.leaveRequestId = uuid();
      } finally {
        busy = false;
        button.removeAttribute("aria-disabled");
      }
    });
  }

  /** Shows (or hides) the offer to leave a message; urgent when the queue's wait ran out. */
  private offerLeave(show: boolean, quiet = false): void {
    clear(this.leaveOffer);
    this.leaveOffer.hidden = !show && !quiet;
    if (this.leaveOffer.hidden || this.closed) return;
    append(
      this.leaveOffer,
      show ? el("p", {}, "You can leave a message and we will get back to you by email.") : null,
      el("button", { type: "button", class: show ? "primary" : "link", onclick: () => this.showLeave(true) }, show ? "Leave a message" : "Leave a message instead"),
    );
  }

  private showLeave(show: boolean): void {
    this.leavePanel.hidden = !show;
    this.composer.hidden = show;
    this.leaveOffer.hidden = show;
    if (show) this.leavePanel.querySelector("textarea")!.focus();
    else this.input.focus();
  }

  /** Ends the view: the log stays, read-only, with the transcript to download and a new chat to start. */
  private finish(message: string): void {
    if (this.closed) return;
    this.closed = true;
    // Hiding the composer drops the focus: it moves to the new buttons if it was in the chat.
    const focused = this.root.contains(document.activeElement);
    this.stopTyping();
    for (const t of this.typers.values()) clearTimeout(t.timer);
    this.typers.clear();
    this.showTypers();
    this.suggestions?.remove();
    this.composer.hidden = true;
    this.leavePanel.hidden = true;
    this.leaveOffer.hidden = true;
    this.queueInfo.textContent = "";
    this.endButton.hidden = true;
    this.head.textContent = "Chat ended";
    this.streamRetrying = false;
    this.showConnection();
    clear(this.ended);
    append(
      this.ended,
      el("p", { role: "status" }, this.endText(message)),
      el("div", { class: "row" },
        el("button", { type: "button", class: "secondary", onclick: () => this.downloadTranscript() }, "Download transcript"),
        el("button", { type: "button", class: "primary", onclick: () => this.hooks.newChat() }, "Start a new chat"),
      ),
    );
    this.ended.hidden = false;
    if (focused) this.ended.querySelector("button")!.focus();
    this.hooks.ended();
  }

  private endText(message: string): string {
    return this.leftCase ? `Thank you. Your message was saved as case ${this.leftCase}; we will get back to you by email.` : message;
  }

  private downloadTranscript(): void {
    const head = [`Chat transcript`, `Conversation: ${this.conversationId}`, `Downloaded: ${new Date().toISOString()}`, ""];
    const body = [...head, ...this.transcript, ""].join("\n");
    download(new Blob([body], { type: "text/plain;charset=utf-8" }), `chat-transcript-${new Date().toISOString().slice(0, 10)}.txt`);
  }

  /**
   * Keeps the newest message in view while the reader follows the log (at,
   * or near, its bottom); a reader who scrolled up to read older messages
   * stays where they are, with a button to jump to the new ones.
   */
  private scroll(): void {
    if (this.following) this.toBottom();
    else this.newer.hidden = false;
  }

  private toBottom(): void {
    this.log.scrollTop = this.log.scrollHeight;
    this.newer.hidden = true;
  }

  private atBottom(): boolean {
    return this.log.scrollTop + this.log.clientHeight >= this.log.scrollHeight - followSlackPx;
  }
}
