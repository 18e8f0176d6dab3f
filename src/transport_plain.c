/* transport_plain: the plaintext transport of every connection without a
 * transport state (transport.h). Bytes are read straight into the place
 * the connection wants them; the send queue is written as it is, up to
 * WRITE_IOV_MAX buffers per sendmsg, until the socket is full. */
#include "transport.h"

#define WRITE_IOV_MAX 64

static int plain_flush(party_conn *conn) {
    uv_buf_t iov[WRITE_IOV_MAX];

    for (;;) {
        size_t n = party__conn_peek(conn, iov, WRITE_IOV_MAX);
        ssize_t r;

        if (n == 0)
            return PARTY__FLUSH_DONE;
        r = party__conn_write_some(conn, iov, n);
        if (r < 0)
            return (int)r;
        if (r == 0)
            return PARTY__FLUSH_BLOCKED;
        party__conn_consume(conn, (size_t)r);
    }
}

const party__transport_ops party__transport_plain = {
    .name = "plaintext",
    .accept = NULL,
    .read_space = party__conn_input_space,
    .on_bytes = party__conn_input,
    .resume = NULL,
    .flush = plain_flush,
    .start_close = NULL,
    .free = NULL,
};
