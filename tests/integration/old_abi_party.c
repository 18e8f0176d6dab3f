/* old_abi: a party built against party.h 0.1, kept verbatim in
 * tests/fixtures/party-0.1/party.h. That header had no ABI number and a
 * party_def without the abi field, so the object exports party_module but
 * no party_abi: partyd must refuse to load it rather than misread its
 * definition. */
#include <party.h>

static void old_message(party_room *room, party_conn *conn, const void *data, size_t len,
                        int binary) {
    (void)room;
    party_conn_send(conn, data, len, binary);
}

static const party_def old_def = {
    .name = "old",
    .on_message = old_message,
};

const party_def *party_module(void) {
    return &old_def;
}
