import { createServer, connect, type Server, type Socket } from "node:net";

/**
 * A TCP forwarder on 127.0.0.1 that a test can cut and restore, to give one
 * app a real outage of a shared server (PostgreSQL) without touching the
 * server itself. While cut, open connections are destroyed and new ones are
 * refused (nothing listens on the port), as when the server is down; while
 * silenced, new connections are accepted and never answered, as when a
 * network drops packets.
 */
export interface TcpProxy {
  /** The port the proxy listens on (stable across cut and restore). */
  readonly port: number;
  /** `url` with its host and port replaced by the proxy's. */
  rewrite(url: string): string;
  /** Destroys every forwarded connection and stops listening. */
  cut(): Promise<void>;
  /** Destroys every forwarded connection; new ones are accepted and left silent. */
  silence(): void;
  /** Listens again on the same port and forwards (after cut or silence). */
  restore(): Promise<void>;
  close(): Promise<void>;
}

export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const sockets = new Set<Socket>();
  const track = (socket: Socket): void => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  };
  let silent = false;
  const newServer = (): Server =>
    createServer((client) => {
      track(client);
      client.on("error", () => client.destroy());
      if (silent) return;
      const upstream = connect(target.port, target.host);
      track(upstream);
      client.on("error", () => upstream.destroy());
      upstream.on("error", () => client.destroy());
      client.pipe(upstream).pipe(client);
    });
  const listen = (server: Server, port: number): Promise<number> =>
    new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host: "127.0.0.1", port }, () => {
        const address = server.address();
        if (address === null || typeof address === "string") reject(new Error("no port"));
        else resolve(address.port);
      });
    });
  const stop = (server: Server): Promise<void> =>
    new Promise((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => {
        resolve();
      });
    });

  let server: Server | undefined = newServer();
  const port = await listen(server, 0);
  return {
    port,
    rewrite(url) {
      const parsed = new URL(url);
      parsed.hostname = "127.0.0.1";
      parsed.port = String(port);
      return parsed.toString();
    },
    async cut() {
      if (server === undefined) return;
      const closing = server;
      server = undefined;
      await stop(closing);
    },
    silence() {
      silent = true;
      for (const socket of sockets) socket.destroy();
    },
    async restore() {
      silent = false;
      for (const socket of sockets) socket.destroy();
      if (server !== undefined) return;
      server = newServer();
      await listen(server, port);
    },
    async close() {
      if (server !== undefined) await stop(server);
      server = undefined;
    },
  };
}
