// The messenger's API client: the two services it calls (sessions and
// messaging) over Connect on the page's own origin. It is built from the
// package's pieces rather than with createParleyClient, which carries all
// seven services' descriptors (about 7 KB more, gzipped, for nothing here).
import { createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { bearer, callTimeout, DEFAULT_CALL_TIMEOUT_MS, MessagingService, SessionService, type ParleyClient, type TokenSource } from "../../src/index.js";

/** The services the messenger uses; the same shape as ParleyClient's. */
export interface MessengerClient {
  session: Client<typeof SessionService>;
  messaging: Client<typeof MessagingService>;
}

/** Returns the client of the Parley API at baseUrl, authenticated by token. */
export function messengerClient(baseUrl: string, token: TokenSource): MessengerClient {
  // The timeout createParleyTransport puts on unary calls (20 s), so that a
  // send over a connection that went silent fails, and is retried, instead
  // of staying "Sending…" forever. (createParleyTransport itself would bring
  // the gRPC-Web transport into the bundle too.)
  const transport = createConnectTransport({ baseUrl, interceptors: [bearer(token), callTimeout(DEFAULT_CALL_TIMEOUT_MS)] });
  return { session: createClient(SessionService, transport), messaging: createClient(MessagingService, transport) };
}

/**
 * Returns c as the ParleyClient followConversation takes; it only calls
 * c.messaging. (A narrower parameter type in the package would remove this.)
 */
export function asParleyClient(c: MessengerClient): ParleyClient {
  return c as unknown as ParleyClient;
}
