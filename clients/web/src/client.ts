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
}

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
 * Returns the transport createParleyClient uses: the protocol, token and
 * interceptors of options, to the Parley server at baseUrl. With connect-es's
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
