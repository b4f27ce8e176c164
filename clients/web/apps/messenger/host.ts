// The messenger's side of the host page protocol: postMessage to the
// parent origin named in the page's URL, and only messages from that origin
// and from window.parent are believed. Nothing but the protocol's small
// objects crosses: never message text, never the guest token.

type Handler = (data: Record<string, unknown>) => void;

/** Host is the bridge to the page that embeds the messenger. */
export interface Host {
  /** Whether a parent page is there to talk to (false when opened on its own). */
  readonly embedded: boolean;
  /** Sends {type, ...data} to the parent origin. */
  send(type: string, data?: Record<string, unknown>): void;
  /** Calls handler for each message of type from the host. */
  on(type: string, handler: Handler): void;
  /**
   * Asks the host page for the signed-in customer's JWT (parley:token-request);
   * resolves to undefined if the visitor is not signed in or the host does
   * not answer within timeoutMs. Concurrent asks share one request.
   */
  requestToken(timeoutMs?: number): Promise<string | undefined>;
}

/** Returns the origin of a parent URL parameter, or undefined unless it is an http(s) origin. */
export function parentOrigin(param: string | null): string | undefined {
  if (!param) return undefined;
  try {
    const u = new URL(param);
    return u.protocol === "http:" || u.protocol === "https:" ? u.origin : undefined;
  } catch {
    return undefined;
  }
}

/** Returns the bridge to window.parent at origin (inert when there is no parent). */
export function connectHost(origin: string | undefined): Host {
  const embedded = origin !== undefined && window.parent !== window;
  const handlers = new Map<string, Handler[]>();
  let nextId = 1;
  const waiting = new Map<string, (token: string | undefined) => void>();
  let inflight: Promise<string | undefined> | undefined;

  window.addEventListener("message", (ev: MessageEvent) => {
    if (!embedded || ev.origin !== origin || ev.source !== window.parent) return;
    const data = ev.data;
    if (typeof data !== "object" || data === null || typeof data.type !== "string") return;
    if (data.type === "parley:token") {
      const done = waiting.get(String(data.id));
      if (done) {
        waiting.delete(String(data.id));
        done(typeof data.token === "string" && data.token !== "" ? data.token : undefined);
      }
      return;
    }
    for (const h of handlers.get(data.type) ?? []) h(data);
  });

  const host: Host = {
    embedded,
    send(type, data = {}) {
      if (embedded) window.parent.postMessage({ ...data, type }, origin!);
    },
    on(type, handler) {
      handlers.set(type, [...(handlers.get(type) ?? []), handler]);
    },
    requestToken(timeoutMs = 10_000) {
      if (!embedded) return Promise.resolve(undefined);
      inflight ??= new Promise<string | undefined>((resolve) => {
        const id = String(nextId++);
        const timer = setTimeout(() => {
          waiting.delete(id);
          resolve(undefined);
        }, timeoutMs);
        waiting.set(id, (token) => {
          clearTimeout(timer);
          resolve(token);
        });
        host.send("parley:token-request", { id });
      }).finally(() => {
        inflight = undefined;
      });
      return inflight;
    },
  };
  return host;
}
