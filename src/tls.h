/* tls: https and wss served directly (OpenSSL over memory BIOs). The socket
 * carries ciphertext; reads are decrypted into the connection's usual input
 * path and its queued output is encrypted on the way out. A connection's TLS
 * state is allocated only for TLS connections and found through a slot
 * number that fills padding in party_conn, so plaintext ones pay nothing. */
#ifndef PARTY_TLS_H
#define PARTY_TLS_H

#include <uv.h>

#include "party.h"

struct party_conn;

/* Loads the certificate chain and key of the configuration, if set. 0, or
 * PARTY_EINVAL (bad files) or PARTY_ENOMEM, after logging why. */
int party__tls_init(party_runtime *rt);
/* Frees the runtime's TLS context and slot table. */
void party__tls_cleanup(party_runtime *rt);
/* 1 if the runtime serves TLS. */
int party__tls_enabled(const party_runtime *rt);

/* Gives an accepted connection its TLS state (server side, handshake
 * pending). PARTY_ENOMEM. */
int party__tls_accept(struct party_conn *conn);
/* Frees the connection's TLS state. No-op for plaintext connections. */
void party__tls_free(struct party_conn *conn);

/* Another event loop's share: its own read buffer (the context is loop
 * 0's). PARTY_ENOMEM. */
int party__tls_init_loop(party_runtime *rt);
/* Frees what party__tls_init_loop and the loop's connections made. */
void party__tls_cleanup_loop(party_runtime *rt);

/* Hand-off between loops: takes the connection's TLS state out of its
 * loop (NULL for plaintext), to be attached to the connection that
 * continues it on another loop. attach frees the state when it fails
 * (PARTY_ENOMEM). */
struct party__tls *party__tls_detach(struct party_conn *conn);
int party__tls_attach(struct party_conn *conn, struct party__tls *tls);
/* Frees a detached TLS state; NULL does nothing. */
void party__tls_state_free(struct party__tls *tls);

/* Where the socket's ciphertext is read into (loop-wide). */
uv_buf_t party__tls_read_buf(party_runtime *rt);
/* Ciphertext arrived: decrypts all it can and feeds the plaintext to the
 * connection as a plaintext read would. May close the connection. len 0:
 * only decrypts what the TLS state already holds (after a hand-off). */
void party__tls_input(struct party_conn *conn, const char *data, size_t len);
/* Encrypts queued output and writes it (the TLS branch of the connection's
 * flush); at the end of a closing connection, sends close_notify first. */
void party__tls_flush(struct party_conn *conn);

#endif
