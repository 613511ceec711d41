import { connect, createServer } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';

/**
 * A TCP link to a server that a test can cut (and keep cut) and mend: a
 * network that fails. `drop()` instead closes the client's side only, so the
 * server keeps the old connection as a ghost until its heartbeat notices.
 */
export class Link {
  private readonly clients = new Set<Socket>();
  private readonly servers = new Set<Socket>();
  private up = true;
  readonly server: Server;
  /** Bytes the clients have sent through the link. */
  sent = 0;

  private constructor(server: Server) {
    this.server = server;
  }

  static async open(upstream: number): Promise<Link> {
    const link = new Link(createServer());
    link.server.on('connection', (client) => {
      if (!link.up) {
        client.destroy();
        return;
      }
      const server = connect({ host: '127.0.0.1', port: upstream });
      link.clients.add(client);
      link.servers.add(server);
      client.pipe(server).pipe(client);
      client.on('data', (chunk: Buffer) => (link.sent += chunk.length));
      client.on('error', () => client.destroy());
      server.on('close', () => {
        link.servers.delete(server);
        client.destroy();
      });
      server.on('error', () => server.destroy());
      client.on('close', () => link.clients.delete(client));
    });
    await new Promise<void>((resolve) => link.server.listen(0, '127.0.0.1', resolve));
    return link;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** Both sides closed, and new connections refused until `mend`. */
  cut(): void {
    this.up = false;
    this.drop();
    for (const s of this.servers) s.destroy();
    this.servers.clear();
  }

  /** The clients' sides closed; the server's stay open, and new connections pass. */
  drop(): void {
    for (const c of this.clients) c.destroy();
    this.clients.clear();
  }

  mend(): void {
    this.up = true;
  }

  close(): Promise<void> {
    this.cut();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
