// The parties partyd has built in, on node's http and the `ws` package: echo
// and chat (parties/echo.c, chat.c) on the same URLs, /parties/<party>/<room>.
// No counter: ws has no storage, and a file write per message would measure
// something else than partyd's SQLite commit.
// Usage: node server.mjs [port] (0, the default, picks a free one); prints
// "listening on http://127.0.0.1:PORT" on stderr, as partyd does.
import http from "node:http";
import { WebSocketServer } from "ws";

const rooms = new Map(); // "party/room" -> Set of sockets

function route(url) {
  const path = new URL(url, "http://localhost").pathname.split("/").filter(Boolean);
  if (path.length !== 3 || path[0] !== "parties") return null;
  if (path[1] !== "echo" && path[1] !== "chat") return null;
  return { party: path[1], room: path[2] };
}

const server = http.createServer((req, res) => {
  const where = route(req.url);
  if (where === null) {
    res.writeHead(404, { "Content-Type": "text/plain" }).end("Not Found\n");
    return;
  }
  if (where.party === "echo") {
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", () => {
      res.writeHead(200, { "Content-Type": "text/plain; charset=utf-8" });
      res.end(req.method === "POST" ? Buffer.concat(chunks) : "echo\n");
    });
    return;
  }
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.writeHead(405, { Allow: "GET, HEAD" }).end();
    return;
  }
  const members = rooms.get(`${where.party}/${where.room}`);
  res.writeHead(200, { "Content-Type": "application/json" });
  res.end(JSON.stringify({ room: where.room, connections: members ? members.size : 0 }));
});

const wss = new WebSocketServer({ noServer: true });

server.on("upgrade", (req, socket, head) => {
  const where = route(req.url);
  if (where === null) {
    socket.end("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    const key = `${where.party}/${where.room}`;
    let members = rooms.get(key);
    if (members === undefined) rooms.set(key, (members = new Set()));
    members.add(ws);
    ws.on("close", () => {
      members.delete(ws);
      if (members.size === 0 && rooms.get(key) === members) rooms.delete(key);
    });
    if (where.party === "echo") {
      ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
    } else {
      ws.on("message", (data, isBinary) => {
        for (const other of members) {
          if (other !== ws && other.readyState === other.OPEN) other.send(data, { binary: isBinary });
        }
      });
    }
  });
});

server.listen(Number(process.argv[2] ?? 0), "127.0.0.1", () => {
  console.error(`listening on http://127.0.0.1:${server.address().port}`);
});
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => process.exit(0));
}
