// One chat the agent holds: its log (events placed by seq, so a replay, a
// history page and the live stream may arrive in any order without a
// duplicate), the composer with typing signals, attachments and read
// receipts both ways.
import { timestampDate } from "@bufbuild/protobuf/wkt";

import {
  ParticipantRole,
  type Attachment,
  type Conversation,
  type Event,
  type ParleyClient,
  type ReadCursor,
  type Typing,
} from "../../src/index.js";
import { download, el, replace, uuid } from "../shared/dom.js";
import { channelName, describeError, roleName, sha256Hex, sizeName, timeOf, withRetry } from "./util.js";

/** What a chat needs from the desk that holds it. */
export interface ChatHost {
  client: ParleyClient;
  /** The signed-in agent's id. */
  agentId: string;
  /** The chat was focused or picked: it becomes the active one. */
  activate(chat: ChatView): void;
  /** The highest seq shown of the conversation moved. */
  cursor(conversationId: string, seq: number): void;
  /** The tab's unread count changed. */
  unreadChanged(chat: ChatView): void;
}

const typingRepeatMs = 3000;
const typingIdleMs = 4000;

/** A chat column: header, log, typing line and composer. */
export class ChatView {
  readonly id: string;
  conversation: Conversation;
  readonly el: HTMLElement;
  private readonly log: HTMLOListElement;
  private readonly typingLine: HTMLElement;
  private readonly input: HTMLTextAreaElement;
  private readonly file: HTMLInputElement;
  private readonly sendButton: HTMLButtonElement;
  private readonly notice: HTMLElement;
  private readonly title: HTMLElement;
  /** Shown events by seq. */
  private readonly shown = new Map<number, HTMLElement>();
  /** Messages being sent, by client_message_id. */
  private readonly pending = new Map<string, HTMLElement>();
  /** Seqs of this agent's own messages, for read receipts. */
  private readonly mine: number[] = [];
  /** Seqs of everybody else's messages, for the unread count. */
  private readonly theirs: number[] = [];
  lastSeq = 0;
  private readSent = 0;
  private customerRead = 0;
  unread = 0;
  ended = false;
  private typingSentAt = 0;
  private typingChain: Promise<void> = Promise.resolve();
  private typingIdle: ReturnType<typeof setTimeout> | undefined;
  private typingExpire: ReturnType<typeof setTimeout> | undefined;
  private readTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(private readonly host: ChatHost, conversation: Conversation) {
    this.id = conversation.id;
    this.conversation = conversation;
    const name = conversation.interaction?.name || "Customer";
    const logId = `log-${this.id}`;
    const inputId = `input-${this.id}`;
    this.title = el("h2", { id: `title-${this.id}` }, name);
    this.log = el("ol", { id: logId, class: "log", role: "log", "aria-live": "polite", "aria-label": `Messages with ${name}`, tabindex: "0" });
    this.typingLine = el("p", { class: "typing", "aria-live": "polite" });
    this.notice = el("p", { class: "notice", role: "status" });
    this.input = el("textarea", { id: inputId, rows: "2", maxlength: "4000", "aria-label": `Message to ${name}` });
    this.file = el("input", { type: "file", class: "file", "aria-label": `Attach a file for ${name}` });
    this.sendButton = el("button", { type: "submit" }, "Send");
    const form = el("form", { class: "composer", "aria-label": `Reply to ${name}` }, this.input, el("div", { class: "composer-actions" }, this.file, this.sendButton));
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      void this.submit();
    });
    this.input.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && !ev.shiftKey) {
        ev.preventDefault();
        void this.submit();
      }
    });
    this.input.addEventListener("input", () => this.typed());
    const it = conversation.interaction;
    const meta = el("p", { class: "meta" }, [channelName(it?.channel ?? 0), it?.issueType, it?.email].filter(Boolean).join(" · "));
    this.el = el("section", { class: "chat", id: `chat-${this.id}`, "aria-labelledby": `title-${this.id}`, "data-conversation": this.id },
      el("header", {}, this.title, meta), this.log, this.typingLine, this.notice, form);
    this.el.addEventListener("focusin", () => host.activate(this));
    this.el.addEventListener("click", () => host.activate(this));
  }

  /** The customer's name. */
  get name(): string {
    return this.conversation.interaction?.name || "Customer";
  }

  /** Moves the keyboard to the composer. */
  focus(): void {
    (this.ended ? this.log : this.input).focus();
  }

  /** Shows an event of the log once, in seq order. */
  addEvent(ev: Event, active: boolean): void {
    const seq = Number(ev.seq);
    if (this.shown.has(seq)) return;
    const li = this.render(ev);
    li.dataset.seq = String(seq);
    // Place it before the first shown event with a greater seq.
    let before: HTMLElement | null = null;
    for (const [s, node] of this.shown) if (s > seq && (!before || s < Number(before.dataset.seq))) before = node;
    if (ev.kind.case === "messagePosted" && ev.kind.value.clientMessageId && this.pending.has(ev.kind.value.clientMessageId)) {
      this.pending.get(ev.kind.value.clientMessageId)!.remove();
      this.pending.delete(ev.kind.value.clientMessageId);
    }
    this.log.insertBefore(li, before ?? this.firstPending());
    this.shown.set(seq, li);
    if (seq > this.lastSeq) {
      this.lastSeq = seq;
      this.host.cursor(this.id, seq);
    }
    const fromOthers = ev.sender?.role !== ParticipantRole.AGENT || ev.sender.id !== this.host.agentId;
    if (ev.kind.case === "messagePosted" && fromOthers) {
      this.theirs.push(seq);
      if (active) this.scheduleRead();
      else this.recountUnread();
    }
    if (ev.kind.case === "conversationClosed") this.end("This conversation is closed.");
    this.log.scrollTop = this.log.scrollHeight;
  }

  private firstPending(): HTMLElement | null {
    for (const node of this.pending.values()) return node;
    return null;
  }

  private render(ev: Event): HTMLElement {
    const sender = ev.sender;
    const time = ev.createTime ? el("time", { datetime: timestampDate(ev.createTime).toISOString() }, timeOf(ev.createTime)) : null;
    switch (ev.kind.case) {
      case "messagePosted": {
        const m = ev.kind.value;
        const own = sender?.role === ParticipantRole.AGENT && sender.id === this.host.agentId;
        const who = own ? "You" : sender?.displayName || roleName(sender?.role ?? 0);
        const li = el("li", { class: `msg ${own ? "own" : roleClass(sender?.role ?? 0)}` },
          el("span", { class: "who" }, who), " ", time,
          m.text ? el("p", { class: "text" }, m.text) : null);
        if (m.attachments.length) li.append(el("ul", { class: "attachments", "aria-label": "Attachments" }, ...m.attachments.map((a) => el("li", {}, this.downloadButton(a)))));
        if (m.articles.length) li.append(el("p", { class: "articles" }, `Articles: ${m.articles.map((a) => a.title).join(", ")}`));
        if (own) {
          this.mine.push(Number(ev.seq));
          if (Number(ev.seq) <= this.customerRead) li.classList.add("read");
          li.append(el("span", { class: "receipt" }, Number(ev.seq) <= this.customerRead ? "Read" : "Sent"));
        }
        return li;
      }
      default:
        return el("li", { class: "system" }, systemText(ev), " ", time);
    }
  }

  private downloadButton(a: Attachment): HTMLButtonElement {
    const b = el("button", { type: "button", class: "download" }, `Download ${a.filename} (${sizeName(a.sizeBytes)})`);
    b.addEventListener("click", () => void this.download(a, b));
    return b;
  }

  private async download(a: Attachment, b: HTMLButtonElement): Promise<void> {
    b.disabled = true;
    try {
      const res = await withRetry(() => this.host.client.messaging.getAttachment({ attachmentId: a.id }));
      const blob = new Blob([res.content as BlobPart], { type: res.attachment?.contentType || "application/octet-stream" });
      download(blob, a.filename);
    } catch (err) {
      this.say(`Could not download ${a.filename}: ${describeError(err)}`);
    } finally {
      b.disabled = false;
    }
  }

  private recountUnread(): void {
    const unread = this.theirs.filter((s) => s > this.readSent).length;
    if (unread === this.unread) return;
    this.unread = unread;
    this.host.unreadChanged(this);
  }

  /** Applies a participant's read cursor: the customer's marks this agent's messages read; the agent's own (from another tab, or before a reload) clears unread ones. */
  cursorMoved(rc: ReadCursor): void {
    const role = rc.participant?.role;
    if (role === ParticipantRole.AGENT && rc.participant?.id === this.host.agentId) {
      this.readSent = Math.max(this.readSent, Number(rc.readSeq));
      this.recountUnread();
      return;
    }
    if (role !== ParticipantRole.GUEST && role !== ParticipantRole.CUSTOMER) return;
    const read = Number(rc.readSeq);
    if (read <= this.customerRead) return;
    this.customerRead = read;
    for (const seq of this.mine) {
      if (seq > read) continue;
      const li = this.shown.get(seq);
      if (!li || li.classList.contains("read")) continue;
      li.classList.add("read");
      const r = li.querySelector(".receipt");
      if (r) r.textContent = "Read";
    }
  }

  /** Shows or hides the other side's typing indicator. */
  typing(t: Typing): void {
    clearTimeout(this.typingExpire);
    if (!t.typing) {
      this.typingLine.textContent = "";
      return;
    }
    this.typingLine.textContent = `${t.participant?.displayName || "The customer"} is typing…`;
    const until = t.expireTime ? timestampDate(t.expireTime).getTime() - Date.now() : 6000;
    this.typingExpire = setTimeout(() => (this.typingLine.textContent = ""), Math.max(1000, until));
  }

  /** The chat became the visible, active one: mark what it shows read. */
  activated(): void {
    this.scheduleRead();
  }

  private scheduleRead(): void {
    if (this.ended) {
      // Nothing to tell the server any more; only the badge goes.
      this.readSent = this.lastSeq;
      this.recountUnread();
      return;
    }
    if (this.readTimer) return;
    this.readTimer = setTimeout(() => {
      this.readTimer = undefined;
      void this.markRead();
    }, 300);
  }

  private async markRead(): Promise<void> {
    const seq = this.lastSeq;
    if (seq <= this.readSent || document.visibilityState !== "visible") return;
    this.readSent = seq;
    this.recountUnread();
    const requestId = uuid();
    try {
      await withRetry(() => this.host.client.messaging.markRead({ conversationId: this.id, requestId, readSeq: BigInt(seq) }));
    } catch {
      // A later read moves the cursor further; nothing to show.
    }
  }

  private typed(): void {
    clearTimeout(this.typingIdle);
    const now = Date.now();
    if (now - this.typingSentAt > typingRepeatMs) {
      this.typingSentAt = now;
      void this.setTyping(true);
    }
    this.typingIdle = setTimeout(() => this.stopTyping(), typingIdleMs);
  }

  private stopTyping(): void {
    clearTimeout(this.typingIdle);
    if (!this.typingSentAt) return;
    this.typingSentAt = 0;
    void this.setTyping(false);
  }

  /** Sends typing signals one after the other, so a stop never overtakes its start. */
  private setTyping(typing: boolean): Promise<void> {
    this.typingChain = this.typingChain.then(async () => {
      try {
        await this.host.client.messaging.setTyping({ conversationId: this.id, typing });
      } catch {
        // Typing is a hint: a lost one is not worth telling.
      }
    });
    return this.typingChain;
  }

  private async submit(): Promise<void> {
    if (this.ended) return;
    const text = this.input.value.trim();
    const file = this.file.files?.[0];
    if (!text && !file) return;
    this.input.value = "";
    this.file.value = "";
    this.stopTyping();
    await this.send(text, file);
  }

  /** Sends a message (with an optional file), retried with one client_message_id until it is stored. */
  async send(text: string, file?: File): Promise<void> {
    const clientMessageId = uuid();
    const status = el("span", { class: "receipt" }, "Sending…");
    const li = el("li", { class: "msg own pending", "data-client-message-id": clientMessageId },
      el("span", { class: "who" }, "You"), " ", text ? el("p", { class: "text" }, text) : null,
      file ? el("p", { class: "text" }, `Attachment: ${file.name}`) : null, status);
    this.pending.set(clientMessageId, li);
    this.log.append(li);
    this.log.scrollTop = this.log.scrollHeight;
    const uploadId = uuid();
    const attempt = async (): Promise<void> => {
      try {
        const attachmentIds: string[] = [];
        if (file) {
          status.textContent = "Uploading…";
          const content = new Uint8Array(await file.arrayBuffer());
          const sha256 = await sha256Hex(content);
          const up = await withRetry(
            () => this.host.client.messaging.uploadAttachment({
              conversationId: this.id, requestId: uploadId, filename: file.name,
              contentType: file.type || "application/octet-stream", content, sha256,
            }),
            () => (status.textContent = "Uploading… (retrying)"),
          );
          attachmentIds.push(up.attachment!.id);
        }
        status.textContent = "Sending…";
        const res = await withRetry(
          () => this.host.client.messaging.sendMessage({ conversationId: this.id, clientMessageId, text, attachmentIds }),
          () => (status.textContent = "Sending… (retrying)"),
        );
        if (res.event) this.addEvent(res.event, true);
      } catch (err) {
        status.textContent = `Not sent: ${describeError(err)} `;
        const retry = el("button", { type: "button" }, "Retry");
        retry.addEventListener("click", () => {
          retry.remove();
          void attempt();
        });
        status.append(retry);
      }
    };
    await attempt();
  }

  /** Stops the composer; the log stays readable. */
  end(why: string): void {
    if (this.ended) return;
    this.ended = true;
    this.stopTyping();
    this.el.classList.add("ended");
    this.input.disabled = true;
    this.file.disabled = true;
    this.sendButton.disabled = true;
    this.say(why);
  }

  /** Opens the composer again: the conversation is back with this agent. */
  revive(conversation: Conversation): void {
    this.conversation = conversation;
    this.ended = false;
    this.el.classList.remove("ended");
    this.input.disabled = false;
    this.file.disabled = false;
    this.sendButton.disabled = false;
    this.say("");
  }

  /** Shows a line about the chat (not part of its log). */
  say(text: string): void {
    replace(this.notice, text);
  }
}

function roleClass(r: ParticipantRole): string {
  switch (r) {
    case ParticipantRole.BOT:
      return "bot";
    case ParticipantRole.AGENT:
      return "agent";
    case ParticipantRole.SYSTEM:
      return "system-msg";
    default:
      return "customer";
  }
}

/** The sentence of an event that is not a message. */
function systemText(ev: Event): string {
  const k = ev.kind;
  switch (k.case) {
    case "participantJoined":
      return `${k.value.participant?.displayName || roleName(k.value.participant?.role ?? 0)} joined.`;
    case "participantLeft":
      return `${k.value.participant?.displayName || roleName(k.value.participant?.role ?? 0)} left.`;
    case "conversationQueued":
      return `Queued in ${k.value.queueName || "a queue"}${k.value.reason ? ` (${k.value.reason})` : ""}.`;
    case "conversationTransferred":
      return `Transferred by ${k.value.from?.displayName || "an agent"}${k.value.note ? `: ${k.value.note}` : "."}`;
    case "caseLinked":
      return `Case ${k.value.caseNumber} created${k.value.consumerId ? " with a consumer record" : ""}.`;
    case "conversationClosed":
      return `Closed${k.value.reason ? `: ${k.value.reason}` : "."}`;
    case "waitExceeded":
      return "The customer waited longer than the queue's maximum wait.";
    case "controllerChanged":
      return `Now answering: ${controllerName(k.value.controller)}${k.value.reason ? ` (${k.value.reason})` : ""}.`;
    default:
      return "Something happened.";
  }
}

function controllerName(c: number): string {
  return ["nobody", "the virtual agent", "waiting for an agent", "an agent", "closed"][c] ?? "someone";
}
