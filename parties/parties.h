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

#endif
