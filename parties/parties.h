/* The built-in parties that partyd serves with no configuration. Each is one
 * small file that doubles as an example. */
#ifndef PARTY_PARTIES_H
#define PARTY_PARTIES_H

#include "party.h"

/* echo: every message goes back to its sender, text as text, binary as
 * binary. */
const party_def *party_builtin_echo(void);
/* chat: every message goes to everyone in the room but its sender; GET
 * answers {"room": name, "connections": n}. */
const party_def *party_builtin_chat(void);

/* counter: a durable counter per room; each message adds one and gets the
 * new value back; GET answers {"name": room, "count": n}. */
const party_def *party_builtin_counter(void);

/* reminder: schedules and the room's alarm over HTTP (POST ?in=, ?every=,
 * ?cron=, ?alarm_in=; DELETE ?id=; GET lists schedules and what fired). */
const party_def *party_builtin_reminder(void);

/* demo: the browser demo's room (web/): a chat that keeps its last 50
 * messages in storage and sends them to newcomers, presence from each
 * connection's name (its state) and relayed cursors. JSON messages. */
const party_def *party_builtin_demo(void);

/* yjs: a Yjs document per room for y-partyserver's YProvider and stock
 * y-websocket clients (see docs/yjs.md). Updates are stored in the room's
 * database before they are relayed; awareness is forwarded to everyone;
 * `__YPS:` text messages are relayed to the other connections. Hibernates. */
const party_def *party_builtin_yjs(void);

/* todos: a to-do list per room as synced state {"items":[{id,text,done}]}
 * with RPC add(text), toggle(id), remove(id), count(), export() (streamed);
 * for Cloudflare's AgentClient at /agents/todos/<room>. ?readonly=1 makes
 * a connection readonly. GET answers the list. Hibernates. */
const party_def *party_builtin_todos(void);

/* The yjs party's pieces, for a party of your own built on it: use these
 * callbacks in your party_def (hibernate = 1), and wrap on_message or
 * connection_tags to change what they decide. */

/* Tag that makes a connection read-only (it syncs, its updates are
 * dropped). The default connection_tags gives it for ?readonly=1 or
 * ?readonly=true; a connection_tags of your own decides otherwise. */
#define PARTY_YJS_READONLY_TAG "readonly"

/* Receives a custom message: the text after "__YPS:" (len bytes, valid
 * during the call, NUL-terminated), from conn. */
typedef void (*party_yjs_custom_cb)(party_room *room, party_conn *conn, const char *message,
                                    size_t len);

int party_yjs_on_start(party_room *room, const char *props);
void party_yjs_on_connect(party_room *room, party_conn *conn, const party_request *req);
/* on_message with the default custom-message handling (relay to the others). */
void party_yjs_on_message(party_room *room, party_conn *conn, const void *data, size_t len,
                          int binary);
/* The same, with custom messages given to custom instead (NULL: relay). */
void party_yjs_on_message_with(party_room *room, party_conn *conn, const void *data, size_t len,
                               int binary, party_yjs_custom_cb custom);
void party_yjs_on_close(party_room *room, party_conn *conn, int code, const char *reason,
                        int was_clean);
int party_yjs_connection_tags(party_room *room, party_conn *conn, const party_request *req,
                              const char **tags, size_t max);
void party_yjs_free_state(void *state);
/* 1 if conn carries PARTY_YJS_READONLY_TAG. */
int party_yjs_conn_readonly(party_conn *conn);
/* Sends "__YPS:" + message (len bytes of UTF-8) to conn, or to every
 * connection but except (NULL: all). Results as party_conn_send /
 * party_room_broadcast. */
int party_yjs_send_custom(party_conn *conn, const char *message, size_t len);
int party_yjs_broadcast_custom(party_room *room, const char *message, size_t len,
                               party_conn *except);

#endif
