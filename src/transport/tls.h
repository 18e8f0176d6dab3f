/* tls: https and wss served directly (OpenSSL over memory BIOs), as a
 * transport (transport.h). The socket carries ciphertext; reads are
 * decrypted into the connection's usual input path and its queued output
 * is encrypted on the way out. A connection's TLS state exists only for
 * TLS connections, so plaintext ones pay nothing. */
#ifndef PARTY_TLS_H
#define PARTY_TLS_H

#include "party.h"
#include "transport.h"

/* The TLS transport: what a connection the listener accepts starts with
 * once party__tls_init loaded a certificate. */
extern const party__transport_ops party__transport_tls;

/* Loads the certificate chain and key of the configuration, if set. 0, or
 * PARTY_EINVAL (bad files) or PARTY_ENOMEM, after logging why. */
int party__tls_init(party__loop *lp);
/* Frees the runtime's TLS context and read buffer. */
void party__tls_cleanup(party__loop *lp);
/* 1 if the runtime serves TLS. */
int party__tls_enabled(const party__loop *lp);

/* Another event loop's share: its own read buffer (the context is loop
 * 0's). PARTY_ENOMEM. */
int party__tls_init_loop(party__loop *lp);
/* Frees what party__tls_init_loop made. */
void party__tls_cleanup_loop(party__loop *lp);

#endif
