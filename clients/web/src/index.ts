// The TypeScript client of Parley for browsers and Node: the generated
// service descriptors behind one constructor that sets the base URL and the
// bearer token, over connect-web's Connect transport.
import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";

import { CaseService } from "./gen/parley/v1/case_service_pb.js";
import { MessagingService } from "./gen/parley/v1/messaging_service_pb.js";
import { RoutingService } from "./gen/parley/v1/routing_service_pb.js";
import { SessionService } from "./gen/parley/v1/session_service_pb.js";

export * from "./gen/parley/v1/resources_pb.js";
export * from "./gen/parley/v1/session_service_pb.js";
export * from "./gen/parley/v1/messaging_service_pb.js";
export * from "./gen/parley/v1/routing_service_pb.js";
export * from "./gen/parley/v1/case_service_pb.js";

/** Options of {@link createParleyClient}. */
export interface ParleyClientOptions {
  /** Sent as "Authorization: Bearer <token>"; omit for public calls. */
  token?: string;
  /** Use the binary protobuf format instead of JSON (smaller, less readable). */
  useBinaryFormat?: boolean;
  /** A fetch implementation, for runtimes without a global one. */
  fetch?: typeof globalThis.fetch;
}

/** One client per Parley service, sharing a transport. */
export interface ParleyClient {
  session: Client<typeof SessionService>;
  messaging: Client<typeof MessagingService>;
  routing: Client<typeof RoutingService>;
  cases: Client<typeof CaseService>;
}

/** Returns an interceptor that authenticates every call with token. */
export function bearer(token: string): Interceptor {
  return (next) => (req) => {
    req.header.set("Authorization", `Bearer ${token}`);
    return next(req);
  };
}

/** Returns a client of the Parley server at baseUrl (e.g. http://localhost:8080). */
export function createParleyClient(baseUrl: string, options: ParleyClientOptions = {}): ParleyClient {
  const transport: Transport = createConnectTransport({
    baseUrl,
    useBinaryFormat: options.useBinaryFormat ?? false,
    interceptors: options.token ? [bearer(options.token)] : [],
    fetch: options.fetch,
  });
  return {
    session: createClient(SessionService, transport),
    messaging: createClient(MessagingService, transport),
    routing: createClient(RoutingService, transport),
    cases: createClient(CaseService, transport),
  };
}
