// A TCP proxy in front of parleyd that a test can break: cut every open
// connection (both ends see a reset), or stall them (the connections stay
// open and everything sent on them is silently dropped, as on a dead
// network path). Connections opened afterwards work normally, unless the
// proxy is down (every connection cut and new ones refused until it is up).
import { createConnection, createServer, type Socket } from "node:net";

/** A running proxy. */
export interface Proxy {
  /** The proxy's base URL, to give a client instead of parleyd's. */
  url: string;
  /** How many connections clients opened through the proxy so far. */
  readonly opened: number;
  /** Destroys every open connection. */
  cut(): void;
  /** Stops forwarding anything on every open connection, keeping them open. */
  stall(): void;
  /** Cuts every open connection and refuses new ones until up. */
  down(): void;
  /** Accepts connections again after down. */
  up(): void;
  /** Closes the proxy and every connection. */
  close(): Promise<void>;
}

interface Pair {
  client: Socket;
  server: Socket;
  stalled: boolean;
}

/** Starts a proxy on a free local port forwarding to target (an http:// URL). */
export async function startProxy(target: string): Promise<Proxy> {
  const { hostname, port } = new URL(target);
  const pairs = new Set<Pair>();
  let opened = 0;
  let isDown = false;
  const srv = createServer((client) => {
    if (isDown) {
      client.resetAndDestroy();
      return;
    }
    opened++;
    const server = createConnection({ host: hostname, port: Number(port) });
    const pair: Pair = { client, server, stalled: false };
    pairs.add(pair);
    const forget = () => {
      pairs.delete(pair);
      client.destroy();
      server.destroy();
    };
    client.on("data", (chunk) => pair.stalled || server.write(chunk));
    server.on("data", (chunk) => pair.stalled || client.write(chunk));
    client.on("close", forget);
    server.on("close", forget);
    client.on("error", forget);
    server.on("error", forget);
  });
  await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", resolve));
  const { port: own } = srv.address() as { port: number };
  const cut = () => {
    for (const p of pairs) {
      p.client.resetAndDestroy();
      p.server.destroy();
    }
  };
  return {
    url: `http://127.0.0.1:${own}`,
    get opened() {
      return opened;
    },
    cut,
    down() {
      isDown = true;
      cut();
    },
    up() {
      isDown = false;
    },
    stall() {
      for (const p of pairs) {
        p.stalled = true;
      }
    },
    async close() {
      for (const p of pairs) {
        p.client.destroy();
        p.server.destroy();
      }
      await new Promise((resolve) => srv.close(resolve));
    },
  };
}
