// The parties partyd has built in (parties/echo.c, chat.c, counter.c),
// written for PartyServer on workerd: the same URLs (/parties/<party>/<room>,
// the party being the kebab-case name of the binding), the same replies.
// bench/run.sh bundles this with esbuild (dist/worker.js) and serves it with
// `workerd serve config.capnp`.
import { Server, routePartykitRequest } from "partyserver";

// echo: every message goes back to its sender, text as text, binary as binary.
export class Echo extends Server {
  onMessage(connection, message) {
    connection.send(message);
  }

  async onRequest(request) {
    const headers = { "Content-Type": "text/plain; charset=utf-8" };
    if (request.method === "POST") {
      return new Response(await request.arrayBuffer(), { headers });
    }
    return new Response("echo\n", { headers });
  }
}

// chat: every message goes to everyone in the room but its sender.
export class Chat extends Server {
  onMessage(connection, message) {
    this.broadcast(message, [connection.id]);
  }

  onRequest(request) {
    if (request.method !== "GET" && request.method !== "HEAD") {
      return new Response(null, { status: 405, headers: { Allow: "GET, HEAD" } });
    }
    let connections = 0;
    for (const _ of this.getConnections()) connections++;
    return Response.json({ room: this.name, connections });
  }
}

// counter: a durable counter per room; each message adds one and gets the
// new value back. The put is not awaited: the Durable Object's output gate
// holds the reply until the write is durable, as partyd holds its reply
// until the commit.
export class Counter extends Server {
  async onStart() {
    this.count = (await this.ctx.storage.get("count")) ?? 0;
  }

  onMessage(connection) {
    this.count++;
    this.ctx.storage.put("count", this.count);
    connection.send(String(this.count));
  }

  onRequest(request) {
    if (request.method !== "GET" && request.method !== "HEAD") {
      return new Response(null, { status: 405, headers: { Allow: "GET, HEAD" } });
    }
    return Response.json({ name: this.name, count: this.count });
  }
}

export default {
  async fetch(request, env) {
    return (await routePartykitRequest(request, env)) ?? new Response("Not Found", { status: 404 });
  },
};
