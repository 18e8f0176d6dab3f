/* stored_chat: the chat party, but every message is written to the room's
 * storage before it is broadcast, so each delivery passes the output gate
 * (held until the commit). Built as a party shared object for
 * bench/gated.sh:
 *   partyd --party stored-chat=build/bench/bench/stored_chat.so
 * and driven by wsbench's broadcast mode (--party stored-chat). */
#include <party.h>

static void stored_chat_message(party_room *room, party_conn *conn, const void *data, size_t len,
                                int binary) {
    const char *exclude[1] = {party_conn_id(conn)};
    if (party_kv_put(room, "last", data, len) != 0) {
        party_conn_close(conn, 1011, "storage write failed");
        return;
    }
    party_room_broadcast(room, data, len, binary, exclude, 1, NULL);
}

static const party_def stored_chat_def = {
    PARTY_DEF_INIT,
    .name = "stored-chat",
    .on_message = stored_chat_message,
};

PARTY_MODULE(stored_chat_def);
