/* transport_plain: the plaintext transport of every connection without a
 * transport state (transport.h). Plaintext is the connection's own path:
 * bytes are read straight into the place the connection wants them, and
 * the send queue goes to the socket as it is. Its ops are the connection's
 * functions, so a plaintext byte costs no more than before the seam. */
#include "transport.h"

const party__transport_ops party__transport_plain = {
    .name = "plaintext",
    .accept = NULL,
    .read_space = party__conn_input_space,
    .on_bytes = party__conn_input,
    .resume = NULL,
    .flush = party__conn_write_queue,
    .start_close = NULL,
    .free = NULL,
};
