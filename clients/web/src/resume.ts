// Streams that survive the network: a conversation's log and an agent's
// work stream, reopened from the last seq received after any retryable end,
// with exponential backoff and a heartbeat watchdog.
import { Code, ConnectError } from "@connectrpc/connect";

import type { ParleyClient } from "./client.js";
import { errorReason, isRetryable, retryDelayMs } from "./errors.js";
import type { SubscribeResponse } from "./gen/parley/v1/messaging_service_pb.js";
import type { FollowWorkResponse } from "./gen/parley/v1/routing_service_pb.js";

/**
 * Where a resumed stream is: opening ("connecting"), receiving ("live",
 * once the server answered), waiting to reopen after a failure
 * ("retrying", reported with the failure), or finished ("ended": the
 * conversation closed, the signal aborted, the consumer stopped, or a
 * non-retryable error, which is reported with it).
 */
export type StreamState = "connecting" | "live" | "retrying" | "ended";

/** Options of {@link followConversation} and {@link followWork}. */
export interface ResumeOptions {
  /** Aborting it closes the stream; the iteration then ends normally. */
  signal?: AbortSignal;
  /**
   * How long the stream may stay silent (heartbeats count) before it is
   * taken for dead and reopened. The server sends a heartbeat whenever a
   * stream has been idle for its -heartbeat interval (15s by default), so
   * this should be a few times that. Default 45000.
   */
  heartbeatTimeoutMs?: number;
  /** The first wait before reopening; it doubles after each failure in a row, with jitter. Default 250. */
  minBackoffMs?: number;
  /** The longest wait before reopening, unless the server asks for longer (RetryInfo). Default 15000. */
  maxBackoffMs?: number;
  /** Called on every change of state; err is the failure when retrying, or the error ending the stream. */
  onStateChange?: (state: StreamState, err?: unknown) => void;
}

/**
 * The failure reported (with "retrying") when a stream sent nothing, not
 * even a heartbeat, for heartbeatTimeoutMs: a connection that died
 * silently, as behind a proxy or a sleeping network.
 */
export class StreamStalledError extends Error {
  /** Creates the error for a stream silent for timeoutMs. */
  constructor(readonly timeoutMs: number) {
    super(`the stream sent nothing for ${timeoutMs} ms; reopening it`);
    this.name = "StreamStalledError";
  }
}

/** What a resumed stream does with an item. */
type Verdict = "yield" | "skip" | "last";

/** How to open one stream of a resumed follow, and what to do with its items. */
interface Follow<T> {
  /** Opens the stream again from where the follow is. */
  open(signal: AbortSignal, onHeader: () => void): AsyncIterable<T>;
  /** Updates the follow's position with item and tells what to do with it. */
  take(item: T): Verdict;
}

/** How long after a stream's headers it is reported live if nothing failed. */
const settleMs = 100;

/**
 * Tells whether a stream's failure is worth reopening it for; gotItem tells
 * whether the stream had delivered anything.
 */
function reopenable(err: unknown, gotItem: boolean): boolean {
  if (isRetryable(err)) {
    return true;
  }
  // The server may still count a stream of ours that died on the way.
  if (errorReason(err) === "TOO_MANY_STREAMS") {
    return true;
  }
  // A credential that expired while the stream was open: reopening asks
  // the token source again, which may refresh it. A refusal before the
  // stream delivered anything ends the follow.
  return gotItem && err instanceof ConnectError && err.code === Code.Unauthenticated;
}

/** Resolves after ms, or at once when signal aborts. */
function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) {
      resolve();
      return;
    }
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/**
 * Iterates items, but gives up as soon as signal aborts, throwing its
 * reason: a transport does not always end a read that waits on a silently
 * dead connection when its call is aborted (seen with Node's fetch), and
 * the watchdog must not wait on it. The abandoned read is left to the
 * transport, which ends it when the connection finally fails.
 */
async function* untilAborted<T>(items: AsyncIterable<T>, signal: AbortSignal): AsyncGenerator<T, void, undefined> {
  const it = items[Symbol.asyncIterator]();
  let onAbort = () => {};
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason);
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
  });
  aborted.catch(() => {});
  try {
    for (;;) {
      const next = it.next();
      next.catch(() => {}); // an abandoned read may fail later, unobserved
      const r = await Promise.race([next, aborted]);
      if (r.done) return;
      yield r.value;
    }
  } finally {
    signal.removeEventListener("abort", onAbort);
    // Not awaited: after an abort the transport may never answer.
    void Promise.resolve(it.return?.()).catch(() => {});
  }
}

/** Runs follow until it ends, reopening its stream after retryable failures. */
async function* resume<T>(follow: Follow<T>, opts: ResumeOptions): AsyncGenerator<T, void, undefined> {
  const { signal, onStateChange } = opts;
  const heartbeatTimeoutMs = opts.heartbeatTimeoutMs ?? 45_000;
  const minBackoffMs = opts.minBackoffMs ?? 250;
  const maxBackoffMs = Math.max(opts.maxBackoffMs ?? 15_000, minBackoffMs);
  let state: StreamState | undefined;
  const report = (next: StreamState, err?: unknown) => {
    if (next !== state || err !== undefined) {
      state = next;
      onStateChange?.(next, err);
    }
  };
  let failures = 0;
  try {
    while (!signal?.aborted) {
      report("connecting");
      const call = new AbortController();
      const stop = () => call.abort(signal?.reason);
      signal?.addEventListener("abort", stop, { once: true });
      let stalled: StreamStalledError | undefined;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const arm = () => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          stalled = new StreamStalledError(heartbeatTimeoutMs);
          call.abort(stalled);
        }, heartbeatTimeoutMs);
      };
      // The stream is live once an item arrives, or shortly after its
      // headers if no error follows them (a refusal comes with headers
      // too, at once).
      let gotItem = false;
      let settle: ReturnType<typeof setTimeout> | undefined;
      let failure: unknown;
      try {
        arm();
        const items = follow.open(call.signal, () => {
          arm();
          settle = setTimeout(() => report("live"), settleMs);
        });
        for await (const item of untilAborted(items, call.signal)) {
          // The watchdog does not run while the consumer holds an item.
          clearTimeout(timer);
          clearTimeout(settle);
          gotItem = true;
          report("live");
          failures = 0;
          const verdict = follow.take(item);
          if (verdict !== "skip") {
            yield item;
          }
          if (verdict === "last") {
            return;
          }
          arm();
        }
        failure = new ConnectError("the stream ended before its last item", Code.Unavailable);
      } catch (err) {
        failure = err;
      } finally {
        clearTimeout(timer);
        clearTimeout(settle);
        signal?.removeEventListener("abort", stop);
        call.abort();
      }
      if (signal?.aborted) {
        return;
      }
      const cause = stalled ?? failure;
      if (stalled === undefined && !reopenable(failure, gotItem)) {
        report("ended", failure);
        throw failure;
      }
      const backoff = Math.min(maxBackoffMs, minBackoffMs * 2 ** failures);
      failures++;
      const wait = Math.max(backoff / 2 + (Math.random() * backoff) / 2, retryDelayMs(failure) ?? 0);
      report("retrying", cause);
      await sleep(wait, signal);
    }
  } finally {
    report("ended");
  }
}

/**
 * Follows one conversation's stream (MessagingService.Subscribe) from
 * afterSeq (0 for the whole log): its events in seq order, and the typing,
 * read cursors and queue positions of the other participants (heartbeats
 * are consumed, not yielded). After any retryable end (network drop,
 * server restart or stream lifetime, silence longer than
 * heartbeatTimeoutMs, an expired token that the token source may refresh)
 * it reopens the stream after the last seq received, so no event is
 * yielded twice or out of order. It ends normally after the conversation's
 * closing event and when opts.signal aborts; it throws a non-retryable
 * error (PermissionDenied, Unauthenticated, NotFound, ...). It only uses
 * client.messaging.
 *
 * Closing a conversation revokes its guest token: a guest's stream that is
 * down at that moment cannot be reopened, and the follow throws
 * Unauthenticated (reason INVALID_TOKEN) instead of yielding the closing
 * event.
 */
export function followConversation(
  client: Pick<ParleyClient, "messaging">,
  conversationId: string,
  afterSeq: number | bigint,
  opts: ResumeOptions = {},
): AsyncGenerator<SubscribeResponse, void, undefined> {
  let last = BigInt(afterSeq);
  return resume<SubscribeResponse>(
    {
      open: (signal, onHeader) => client.messaging.subscribe({ conversationId, afterSeq: last }, { signal, onHeader }),
      take(res) {
        switch (res.item.case) {
          case "heartbeat":
            return "skip";
          case "event": {
            const event = res.item.value;
            if (event.seq <= last) {
              return "skip";
            }
            last = event.seq;
            return event.kind.case === "conversationClosed" ? "last" : "yield";
          }
        }
        return "yield";
      },
    },
    opts,
  );
}

/** The most cursors a FollowWorkRequest may carry. */
const maxCursors = 200;

/**
 * Follows the calling agent's multiplexed stream (RoutingService.FollowWork):
 * offers and their ends, the conversations the agent holds (assigned, then
 * their events, typing and read cursors), those that leave them (the rest
 * of what the agent may read, then released) and, once per stream, synced;
 * heartbeats are consumed, not yielded.
 *
 * opts.cursors gives the last seq already received of conversations the
 * caller has (say, from storage after a reload); held conversations not
 * named are replayed from their start. After any retryable end it reopens
 * the stream with the last seq received of each conversation (at most 200;
 * the others held are replayed and their repeats dropped) and drops events
 * already yielded, so none is yielded twice or out of order within its
 * conversation.
 *
 * Every stream, the first and each reopened one, starts with a snapshot:
 * the pending offers and held conversations again (handle offer and
 * assigned idempotently), and for each conversation with a cursor that
 * left the agent while the stream was down (transferred, closed), the
 * events after the cursor that the agent may still read, then released,
 * with no assigned before them in that stream. Then comes synced: an offer
 * or a conversation the caller still shows from before that this stream
 * has not sent (offer, assigned or released) since it opened is no longer
 * the agent's, and should be dropped or shown as left. onStateChange
 * reports "connecting" as each stream opens, before any of its items, so
 * a caller can tell what the current stream has sent.
 *
 * It forgets a conversation's cursor on released, and on synced the
 * cursor of every conversation that stream neither announced nor
 * released; a conversation that comes back to the agent in a later stream
 * is replayed from its start. It ends when opts.signal aborts, and throws
 * a non-retryable error (PermissionDenied for a caller who is not an
 * agent, Unauthenticated, ...). It only uses client.routing.
 */
export function followWork(
  client: Pick<ParleyClient, "routing">,
  opts: ResumeOptions & { cursors?: Record<string, number | bigint> } = {},
): AsyncGenerator<FollowWorkResponse, void, undefined> {
  const cursors = new Map<string, bigint>();
  for (const [id, seq] of Object.entries(opts.cursors ?? {})) {
    cursors.set(id, BigInt(seq));
  }
  // The conversations the current stream announced as held.
  let announced = new Set<string>();
  return resume<FollowWorkResponse>(
    {
      open(signal, onHeader) {
        announced = new Set();
        const resumeAt = [...cursors].slice(0, maxCursors).map(([conversationId, afterSeq]) => ({ conversationId, afterSeq }));
        return client.routing.followWork({ cursors: resumeAt }, { signal, onHeader });
      },
      take(res) {
        const id = res.conversationId;
        switch (res.item.case) {
          case "heartbeat":
            return "skip";
          case "assigned":
            announced.add(id);
            if (!cursors.has(id)) {
              cursors.set(id, 0n);
            }
            return "yield";
          case "released":
            // Possibly without assigned in this stream: a conversation that
            // left the agent while the stream was down.
            announced.delete(id);
            cursors.delete(id);
            return "yield";
          case "event": {
            // Held conversations' events, and those of a conversation that
            // left the agent while the stream was down, before its released.
            const seq = res.item.value.seq;
            if (seq <= (cursors.get(id) ?? 0n)) {
              return "skip";
            }
            cursors.set(id, seq);
            return "yield";
          }
          case "synced":
            // Every held conversation has been announced and every gone one
            // released: a cursor left over (a conversation beyond the ones
            // the request could name, or one that left without a released)
            // is no longer the agent's.
            for (const id of cursors.keys()) {
              if (!announced.has(id)) {
                cursors.delete(id);
              }
            }
            return "yield";
        }
        return "yield";
      },
    },
    opts,
  );
}
