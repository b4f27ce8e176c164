// Small helpers shared by the workspace's views: the page skeleton, retries
// of idempotent writes, error wording, names of enum values. The DOM helpers
// (el, append, replace, uuid, download...) are apps/shared/dom.ts, shared
// with the messenger.
import { ConnectError } from "@connectrpc/connect";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";

import { Channel, ParticipantRole, Presence, errorReason, isRetryable, retryDelayMs } from "../../src/index.js";

/** Returns the element with the id, or throws: the page's skeleton is fixed. */
export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`workspace: #${id} is missing from index.html`);
  return el as T;
}

/** Formats a duration in seconds as m:ss. */
export function clock(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

/** Resolves after ms, or at once when signal aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(t);
      resolve();
    }, { once: true });
  });
}

/**
 * Calls fn until it succeeds or fails with an error not worth retrying.
 * Only for calls that are safe to repeat: reads, and writes carrying an
 * idempotency key that stays the same across attempts. onRetry is told of
 * each failure that will be retried. Waits the server's RetryInfo delay,
 * else doubles from 250 ms up to 5 s; a browser coming back online cuts
 * the wait short.
 */
export async function withRetry<T>(fn: () => Promise<T>, onRetry?: (err: unknown) => void, signal?: AbortSignal): Promise<T> {
  let backoff = 250;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (signal?.aborted || !isRetryable(err)) throw err;
      onRetry?.(err);
      const wait = retryDelayMs(err) ?? backoff;
      backoff = Math.min(backoff * 2, 5000);
      const online = new AbortController();
      await Promise.race([
        sleep(wait, signal),
        new Promise<void>((resolve) => window.addEventListener("online", () => resolve(), { once: true, signal: online.signal })),
      ]);
      online.abort();
    }
  }
}

/**
 * Every item of a paged list: fetches pages of 500 (each with withRetry)
 * until the server gives no next page token, or maxPages pages.
 */
export async function allPages<T>(
  page: (pageToken: string) => Promise<{ nextPageToken: string; items: T[] }>,
  maxPages = 20,
): Promise<T[]> {
  const out: T[] = [];
  let token = "";
  for (let i = 0; i < maxPages; i++) {
    const { nextPageToken, items } = await withRetry(() => page(token));
    out.push(...items);
    if (!nextPageToken) break;
    token = nextPageToken;
  }
  return out;
}

/** A sentence for a person about a failed call. */
export function describeError(err: unknown): string {
  const ce = ConnectError.from(err);
  const reason = errorReason(err);
  return reason ? `${ce.rawMessage} (${reason})` : ce.rawMessage;
}

/** The wording of a channel. */
export function channelName(c: Channel): string {
  switch (c) {
    case Channel.WEB_PORTAL:
      return "Web portal";
    case Channel.MESSENGER:
      return "Messenger";
    case Channel.MOBILE:
      return "Mobile";
    default:
      return "Any channel";
  }
}

/** The channels an agent has a presence on. */
export const channels: Channel[] = [Channel.WEB_PORTAL, Channel.MESSENGER, Channel.MOBILE];

/** The wording of a presence. */
export function presenceName(p: Presence): string {
  switch (p) {
    case Presence.AVAILABLE:
      return "Available";
    case Presence.AWAY:
      return "Away";
    case Presence.OFFLINE:
      return "Offline";
    default:
      return "Unknown";
  }
}

/** The wording of a participant role. */
export function roleName(r: ParticipantRole): string {
  switch (r) {
    case ParticipantRole.GUEST:
      return "Guest";
    case ParticipantRole.CUSTOMER:
      return "Customer";
    case ParticipantRole.AGENT:
      return "Agent";
    case ParticipantRole.BOT:
      return "Virtual agent";
    case ParticipantRole.SYSTEM:
      return "System";
    default:
      return "Someone";
  }
}

/** The local time of a timestamp, hours and minutes, or "" when unset. */
export function timeOf(ts: Timestamp | undefined): string {
  if (!ts) return "";
  return timestampDate(ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

/** The hex SHA-256 of bytes, by WebCrypto. */
export async function sha256Hex(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A size in bytes for people. */
export function sizeName(n: bigint | number): string {
  const b = Number(n);
  if (b < 1024) return `${b} B`;
  if (b < 1024 * 1024) return `${(b / 1024).toFixed(1)} KB`;
  return `${(b / 1024 / 1024).toFixed(1)} MB`;
}
