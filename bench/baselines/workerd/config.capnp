# workerd serving PartyServer with the Echo, Chat and Counter classes of
# worker.js (bundled to dist/worker.js by bench/run.sh). bench/run.sh sets
# the listening address and the storage directory on the command line:
#   workerd serve config.capnp --socket-addr http=127.0.0.1:PORT \
#       --directory-path do-storage=/some/empty/dir
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "main", worker = .partyWorker),
    (name = "do-storage", disk = (writable = true)),
  ],
  sockets = [(name = "http", address = "127.0.0.1:8787", http = (), service = "main")],
);

const partyWorker :Workerd.Worker = (
  modules = [(name = "worker", esModule = embed "dist/worker.js")],
  compatibilityDate = "2026-01-01",
  # Durable Objects whose storage is SQLite in files under do-storage, as
  # on Cloudflare (a put is durable once its commit is).
  durableObjectNamespaces = [
    (className = "Echo", uniqueKey = "partyd-bench-echo", enableSql = true),
    (className = "Chat", uniqueKey = "partyd-bench-chat", enableSql = true),
    (className = "Counter", uniqueKey = "partyd-bench-counter", enableSql = true),
  ],
  durableObjectStorage = (localDisk = "do-storage"),
  bindings = [
    (name = "Echo", durableObjectNamespace = "Echo"),
    (name = "Chat", durableObjectNamespace = "Chat"),
    (name = "Counter", durableObjectNamespace = "Counter"),
  ],
);
