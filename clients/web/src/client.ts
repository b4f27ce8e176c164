// The client constructor: every Parley service behind one transport, with
// the caller's credential and interceptors.
import { Code, ConnectError, createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";

import { AccessService } from "./gen/parley/v1/access_service_pb.js";
import { AssistantService } from "./gen/parley/v1/assistant_service_pb.js";
import { CaseService } from "./gen/parley/v1/case_service_pb.js";
import { KnowledgeService } from "./gen/parley/v1/knowledge_service_pb.js";
import { MessagingService } from "./gen/parley/v1/messaging_service_pb.js";
import { RoutingService } from "./gen/parley/v1/routing_service_pb.js";
import { SessionService } from "./gen/parley/v1/session_service_pb.js";

/**
 * The credential of a client: a fixed token, or a function asked for the
 * current one before every call (including each reconnect of
 * {@link followConversation} and {@link followWork}), which is the place to
 * refresh an expiring token such as a portal JWT. A function may return
 * undefined (or an empty string) to make the call without credentials; if
 * it throws, the call fails unsent (see {@link bearer}).
 */
export type TokenSource = string | (() => string | undefined | Promise<string | undefined>);

/** Options of {@link createParleyClient}. */
export interface ParleyClientOptions {
  /**
   * Sent as "Authorization: Bearer <token>": an agent's, supervisor's or
   * admin's token, a guest token from SessionService.StartGuestChat, or a
   * signed-in customer's JWT. Omit it for public calls.
   */
  token?: TokenSource;
  /**
   * The wire protocol: "connect" (the default; plain HTTP POSTs, readable in
   * the browser's network panel) or "grpc-web" (for gRPC-Web proxies).
   */
  protocol?: "connect" | "grpc-web";
  /**
   * Encode messages in the binary protobuf format instead of JSON: smaller
   * and faster, less readable. Only for the Connect protocol; gRPC-Web is
   * always binary. Default false.
   */
  useBinaryFormat?: boolean;
  /**
   * Interceptors of every call, run after the one that sets the token (so
   * they see the Authorization header).
   */
  interceptors?: Interceptor[];
  /** A fetch implementation, for runtimes without a global one or for tests. */
  fetch?: typeof globalThis.fetch;
  /**
   * How long an ordinary (unary) call may take, in milliseconds, before it
   * is abandoned and fails with Code.DeadlineExceeded (which
   * {@link isRetryable} accepts), so that a call over a connection that went
   * silent (a Wi-Fi or NAT change that a proxy does not report) fails instead
   * of hanging forever. Default 20000; 0 for no timeout. Streams are never
   * timed out: {@link followConversation} and {@link followWork} watch them
   * with heartbeats instead.
   */
  callTimeoutMs?: number;
}

/** The default of {@link ParleyClientOptions.callTimeoutMs}. */
export const DEFAULT_CALL_TIMEOUT_MS = 20_000;

/** One client per Parley service, all sharing one transport. */
export interface ParleyClient {
  /** Guests and customers: pre-chat form, starting, reading and closing chats, settings. */
  session: Client<typeof SessionService>;
  /** Messages, the live stream of a conversation, typing, read cursors, attachments. */
  messaging: Client<typeof MessagingService>;
  /** Agents' presence, offers and work streams; queues, rules and agents for admins. */
  routing: Client<typeof RoutingService>;
  /** Consumers and cases. */
  cases: Client<typeof CaseService>;
  /** Admins: staff tokens and the sites allowed to embed the messenger. */
  access: Client<typeof AccessService>;
  /** The knowledge base the virtual agent and the agents' suggestions draw on. */
  knowledge: Client<typeof KnowledgeService>;
  /** The virtual agent's configuration and a conversation's captured context. */
  assistant: Client<typeof AssistantService>;
}

/**
 * Returns an interceptor that sets "Authorization: Bearer <token>" on every
 * call, asking token for its current value first when it is a function. No
 * header is set when the token is undefined or empty. A token function that
 * throws fails the call, unsent, with Unauthenticated (the thrown error as
 * its cause), or with the error itself if it is a ConnectError (throw one
 * with Code.Unavailable for a refresh worth retrying).
 */
export function bearer(token: TokenSource): Interceptor {
  return (next) => async (req) => {
    let value: string | undefined;
    try {
      value = typeof token === "function" ? await token() : token;
    } catch (err) {
      if (err instanceof ConnectError) {
        throw err;
      }
      throw new ConnectError(`the token source failed: ${String(err instanceof Error ? err.message : err)}`, Code.Unauthenticated, undefined, undefined, err);
    }
    if (value) {
      req.header.set("Authorization", `Bearer ${value}`);
    }
    return next(req);
  };
}

/**
 * Returns an interceptor that fails every unary call still unanswered after
 * ms milliseconds with Code.DeadlineExceeded, aborting its request (the
 * caller's own signal still aborts it too). Streams pass untouched. ms <= 0
 * (or not finite) disables it. createParleyTransport adds it by itself (see
 * {@link ParleyClientOptions.callTimeoutMs}).
 */
export function callTimeout(ms: number): Interceptor {
  return (next) => async (req) => {
    if (req.stream || !(ms > 0) || !Number.isFinite(ms)) {
      return next(req);
    }
    const expired = new ConnectError(`the call got no answer within ${ms} ms`, Code.DeadlineExceeded);
    const ctl = new AbortController();
    const outer = req.signal;
    const onAbort = () => ctl.abort(outer.reason);
    if (outer.aborted) {
      ctl.abort(outer.reason);
    } else {
      outer.addEventListener("abort", onAbort, { once: true });
    }
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      ctl.abort(expired);
    }, ms);
    // Raced with the abort as well: a transport does not always end a read
    // on a silently dead connection when its call is aborted.
    let onCtlAbort = () => {};
    const aborted = new Promise<never>((_, reject) => {
      onCtlAbort = () => reject(ctl.signal.reason);
      ctl.signal.addEventListener("abort", onCtlAbort, { once: true });
    });
    aborted.catch(() => {});
    try {
      const call = next({ ...req, signal: ctl.signal });
      call.catch(() => {}); // an abandoned call may fail later, unobserved
      return await Promise.race([call, aborted]);
    } catch (err) {
      if (timedOut && !outer.aborted) {
        throw expired;
      }
      // The caller's own abort, as the transport reports one: Canceled.
      throw ctl.signal.aborted ? ConnectError.from(err, Code.Canceled) : err;
    } finally {
      clearTimeout(timer);
      outer.removeEventListener("abort", onAbort);
      ctl.signal.removeEventListener("abort", onCtlAbort);
    }
  };
}

/**
 * Returns the transport createParleyClient uses: the protocol, token,
 * interceptors and unary call timeout of options, to the Parley server at baseUrl. With connect-es's
 * createClient it makes clients of only the services an app calls, which
 * keeps the other services' descriptors out of its bundle:
 * `createClient(MessagingService, createParleyTransport(url, { token }))`.
 */
export function createParleyTransport(baseUrl: string, options: ParleyClientOptions = {}): Transport {
  const interceptors: Interceptor[] = [];
  if (options.token !== undefined) {
    interceptors.push(bearer(options.token));
  }
  interceptors.push(...(options.interceptors ?? []));
  // Last, so that the timeout covers only the network call itself, not the
  // time the token source or the caller's interceptors take.
  interceptors.push(callTimeout(options.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS));
  if (options.protocol === "grpc-web") {
    return createGrpcWebTransport({ baseUrl, interceptors, fetch: options.fetch });
  }
  return createConnectTransport({ baseUrl, useBinaryFormat: options.useBinaryFormat ?? false, interceptors, fetch: options.fetch });
}

/**
 * Returns a client of the Parley server at baseUrl (such as
 * "https://chat.example.com" or "http://localhost:8080"; a path prefix is
 * kept). Browsers get HTTP/2, and so many streams at once, only from a
 * server speaking TLS.
 */
export function createParleyClient(baseUrl: string, options: ParleyClientOptions = {}): ParleyClient {
  const transport = createParleyTransport(baseUrl, options);
  return {
    session: createClient(SessionService, transport),
    messaging: createClient(MessagingService, transport),
    routing: createClient(RoutingService, transport),
    cases: createClient(CaseService, transport),
    access: createClient(AccessService, transport),
    knowledge: createClient(KnowledgeService, transport),
    assistant: createClient(AssistantService, transport),
  };
}
