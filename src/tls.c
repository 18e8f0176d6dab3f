/* tls: OpenSSL over memory BIOs on the connection's socket. Input:
 * ciphertext into the read BIO, SSL_read into the buffer the plaintext path
 * would have read into, then that path. Output: the send queue is encrypted
 * in bounded steps (at most one chunk of ciphertext is ever outside the
 * queue, so send_queue_bytes still bounds a slow reader), then written. */
#include "tls.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "conn.h"
#include "log.h"
#include "runtime.h"

#define TLS_READ_BUF (64 * 1024)
#define TLS_WRITE_CHUNK (64 * 1024) /* plaintext encrypted per step */

typedef struct party__tls {
    SSL *ssl;
    BIO *rbio, *wbio; /* owned by ssl */
    int shutdown_sent;
    /* Ciphertext taken from the write BIO that the socket has not taken
     * yet (it was full): held_len bytes, held_off of them written. */
    char *held;
    size_t held_len, held_off;
} party__tls;

int party__tls_enabled(const party_runtime *rt) {
    return rt->tls_ctx != NULL;
}

/* Room for one OpenSSL error as text. */
typedef struct ssl_error_buf {
    char text[256];
} ssl_error_buf;

/* The last OpenSSL error of this thread as text, in buf (returned). */
static const char *ssl_error_text(ssl_error_buf *buf) {
    unsigned long e = ERR_get_error();
    if (e == 0)
        return "unknown error";
    ERR_error_string_n(e, buf->text, sizeof(buf->text));
    ERR_clear_error();
    return buf->text;
}

int party__tls_init(party_runtime *rt) {
    ssl_error_buf err_buf;
    SSL_CTX *ctx;
    const char *cert = rt->cfg.tls_cert, *key = rt->cfg.tls_key;

    if (cert == NULL && key == NULL)
        return 0;
    if (cert == NULL || key == NULL) {
        party__log_error(rt, "tls: both a certificate and a key are needed (got only the %s)",
                         cert != NULL ? "certificate" : "key");
        return PARTY_EINVAL;
    }
    ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        party__log_error(rt, "tls: %s", ssl_error_text(&err_buf));
        return PARTY_ENOMEM;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* Partial writes let the send queue be encrypted a piece at a time;
     * releasing buffers keeps an idle TLS connection small. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        party__log_error(rt, "tls: cannot load the certificate %s: %s", cert,
                         ssl_error_text(&err_buf));
        SSL_CTX_free(ctx);
        return PARTY_EINVAL;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        party__log_error(rt, "tls: cannot load the key %s: %s", key, ssl_error_text(&err_buf));
        SSL_CTX_free(ctx);
        return PARTY_EINVAL;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        party__log_error(rt, "tls: the key %s does not match the certificate %s", key, cert);
        SSL_CTX_free(ctx);
        return PARTY_EINVAL;
    }
    if (party__tls_init_loop(rt) != 0) {
        party__log_error(rt, "tls: out of memory for the read buffer");
        SSL_CTX_free(ctx);
        return PARTY_ENOMEM;
    }
    rt->tls_ctx = ctx;
    return 0;
}

int party__tls_init_loop(party_runtime *rt) {
    rt->tls_read_buf = malloc(TLS_READ_BUF);
    return rt->tls_read_buf != NULL ? 0 : PARTY_ENOMEM;
}

void party__tls_cleanup_loop(party_runtime *rt) {
    rt->tls_ctx = NULL; /* main's */
    party__tls_cleanup(rt);
}

void party__tls_cleanup(party_runtime *rt) {
    SSL_CTX_free(rt->tls_ctx);
    rt->tls_ctx = NULL;
    free(rt->tls_read_buf);
    rt->tls_read_buf = NULL;
    free(rt->tls_slots);
    rt->tls_slots = NULL;
    free(rt->tls_free);
    rt->tls_free = NULL;
    rt->tls_slots_cap = rt->n_tls_free = 0;
}

/* ---- slots: connection -> TLS state ---- */

static party__tls *tls_of(party_conn *conn) {
    return party__conn_rt(conn)->tls_slots[conn->tls_slot];
}

/* A free slot number (never 0, which means "no TLS"); 0 on OOM. */
static uint32_t slot_take(party_runtime *rt, party__tls *tls) {
    uint32_t slot;
    if (rt->n_tls_free == 0) {
        size_t cap = rt->tls_slots_cap ? rt->tls_slots_cap * 2 : 64, i;
        party__tls **slots;
        uint32_t *spare;
        if (cap > UINT32_MAX)
            return 0;
        slots = realloc(rt->tls_slots, cap * sizeof(*slots));
        if (slots == NULL)
            return 0;
        rt->tls_slots = slots;
        spare = realloc(rt->tls_free, cap * sizeof(*spare));
        if (spare == NULL)
            return 0;
        rt->tls_free = spare;
        for (i = cap; i-- > (rt->tls_slots_cap ? rt->tls_slots_cap : 1);)
            rt->tls_free[rt->n_tls_free++] = (uint32_t)i;
        rt->tls_slots_cap = cap;
    }
    slot = rt->tls_free[--rt->n_tls_free];
    rt->tls_slots[slot] = tls;
    return slot;
}

int party__tls_accept(party_conn *conn) {
    party_runtime *rt = party__conn_rt(conn);
    party__tls *tls = calloc(1, sizeof(*tls));

    if (tls == NULL)
        return PARTY_ENOMEM;
    tls->ssl = SSL_new(rt->tls_ctx);
    tls->rbio = BIO_new(BIO_s_mem());
    tls->wbio = BIO_new(BIO_s_mem());
    if (tls->ssl == NULL || tls->rbio == NULL || tls->wbio == NULL) {
        BIO_free(tls->rbio);
        BIO_free(tls->wbio);
        SSL_free(tls->ssl);
        free(tls);
        return PARTY_ENOMEM;
    }
    SSL_set_bio(tls->ssl, tls->rbio, tls->wbio);
    SSL_set_accept_state(tls->ssl);
    conn->tls_slot = slot_take(rt, tls);
    if (conn->tls_slot == 0) {
        SSL_free(tls->ssl);
        free(tls);
        return PARTY_ENOMEM;
    }
    return 0;
}

void party__tls_free(party_conn *conn) {
    party__tls_state_free(party__tls_detach(conn));
}

void party__tls_state_free(party__tls *tls) {
    if (tls == NULL)
        return;
    SSL_free(tls->ssl);
    free(tls->held);
    free(tls);
}

party__tls *party__tls_detach(party_conn *conn) {
    party_runtime *rt = party__conn_rt(conn);
    party__tls *tls;

    if (conn->tls_slot == 0)
        return NULL;
    tls = tls_of(conn);
    rt->tls_slots[conn->tls_slot] = NULL;
    rt->tls_free[rt->n_tls_free++] = conn->tls_slot;
    conn->tls_slot = 0;
    return tls;
}

int party__tls_attach(party_conn *conn, party__tls *tls) {
    conn->tls_slot = slot_take(party__conn_rt(conn), tls);
    if (conn->tls_slot == 0) {
        party__tls_state_free(tls);
        return PARTY_ENOMEM;
    }
    return 0;
}

uv_buf_t party__tls_read_buf(party_runtime *rt) {
    return uv_buf_init(rt->tls_read_buf, TLS_READ_BUF);
}

/* ---- input ---- */

/* 1 if the first bytes of a connection look like an HTTP request line
 * (an upper-case ASCII method, then a space) rather than a TLS record,
 * whose first byte is a content type (0x14-0x17) or, for an old SSLv2
 * hello, has the high bit set. */
static int looks_like_plain_http(const char *data, size_t len) {
    size_t i;
    for (i = 0; i < len && i < 20; i++) {
        if (data[i] == ' ')
            return i > 0;
        if (data[i] < 'A' || data[i] > 'Z')
            return 0;
    }
    return i == len; /* a method cut short by the read: still no TLS record */
}

/* A client spoke plain HTTP to the TLS port (http:// for https://): it
 * gets a plain 400 saying so, instead of a TLS alert it cannot read. The
 * connection drops its TLS state and answers as a plaintext one would. */
static void refuse_plain_http(party_conn *conn) {
    party_runtime *rt = party__conn_rt(conn);
    party__log_info(rt, "tls: plain HTTP on the TLS port; answered 400");
    rt->tls_errors++;
    party__tls_free(conn);
    party__conn_http_fail(conn, 400, "this port speaks TLS (https/wss)\n");
}

void party__tls_input(party_conn *conn, const char *data, size_t len) {
    ssl_error_buf err_buf;
    party_runtime *rt = party__conn_rt(conn);
    party__tls *tls = tls_of(conn);

    if (len > 0 && BIO_number_written(tls->rbio) == 0 && looks_like_plain_http(data, len)) {
        refuse_plain_http(conn);
        return;
    }
    if (len > 0 && BIO_write(tls->rbio, data, (int)len) != (int)len) {
        party__conn_abort(conn);
        return;
    }
    while (!conn->transport_closing) {
        /* Plaintext goes where a plaintext read would have put it: behind
         * the request in the HTTP buffer (also while a request is with a
         * room: what follows it waits there), else the loop's buffer. */
        int buffered = conn->http != NULL &&
                       (conn->phase == PARTY__CONN_HTTP || conn->phase == PARTY__CONN_HTTP_BUSY ||
                        conn->phase == PARTY__CONN_UPGRADING);
        uv_buf_t dst;
        int n, err;

        if (buffered) {
            party__conn_http_space(conn, &dst);
            if (dst.len == 0 && conn->phase != PARTY__CONN_HTTP)
                break; /* a request is with a room: what follows it waits in
                        * OpenSSL, as it would in the socket without TLS */
            if (dst.len == 0) {
                if (conn->http->len >= conn->http->max) {
                    party__log_info(
                        rt,
                        "http: 413 request exceeds max_body_bytes (--max-body-bytes) with framing");
                    party__conn_http_fail(conn, 413, "request exceeds max_body_bytes\n");
                } else {
                    party__log_error(rt, "conn: out of memory for a read buffer");
                    party__conn_abort(conn);
                }
                return;
            }
        } else {
            dst = uv_buf_init(rt->read_buf, PARTY__READ_BUF_SIZE);
        }
        ERR_clear_error();
        n = SSL_read(tls->ssl, dst.base, (int)dst.len);
        if (n > 0) {
            if (buffered && conn->phase != PARTY__CONN_HTTP)
                conn->http->len += (size_t)n;
            else
                party__conn_input(conn, dst.base, (size_t)n);
            continue;
        }
        err = SSL_get_error(tls->ssl, n);
        if (err == SSL_ERROR_WANT_READ)
            break;
        if (err == SSL_ERROR_ZERO_RETURN) {
            party__conn_abort(conn); /* close_notify: the peer is done, as at EOF */
            return;
        }
        if (!SSL_is_init_finished(tls->ssl))
            party__log_info(rt, "tls: handshake failed: %s", ssl_error_text(&err_buf));
        else
            party__log_debug(rt, "tls: %s", ssl_error_text(&err_buf));
        rt->tls_errors++;
        /* An alert may be waiting: send it on the way out. */
        if (BIO_ctrl_pending(tls->wbio) > 0) {
            char alert[256];
            int a = BIO_read(tls->wbio, alert, sizeof(alert));
            if (a > 0) {
                uv_buf_t b = uv_buf_init(alert, (unsigned int)a);
                (void)party__conn_write_some(conn, &b, 1);
            }
        }
        party__conn_abort(conn);
        return;
    }
    /* Handshake messages (or tickets) to answer with. */
    if (!conn->transport_closing && BIO_ctrl_pending(tls->wbio) > 0)
        party__conn_flush(conn);
}

/* ---- output ---- */

/* Writes the ciphertext held or waiting in the write BIO. 1 if some waits
 * for the socket to take more, 0 if all went, -1 on error. */
static int write_pending(party_conn *conn, party__tls *tls) {
    ssize_t r;
    uv_buf_t b;

    if (tls->held == NULL) {
        size_t pending = BIO_ctrl_pending(tls->wbio);
        int n;
        if (pending == 0)
            return 0;
        tls->held = malloc(pending);
        if (tls->held == NULL)
            return -1;
        n = BIO_read(tls->wbio, tls->held, (int)pending);
        if (n <= 0)
            return -1; /* the state is freed with the connection */
        tls->held_len = (size_t)n;
        tls->held_off = 0;
    }
    b = uv_buf_init(tls->held + tls->held_off, (unsigned int)(tls->held_len - tls->held_off));
    r = party__conn_write_some(conn, &b, 1);
    if (r < 0)
        return -1;
    tls->held_off += (size_t)r;
    if (tls->held_off < tls->held_len) {
        party__conn_wait_writable(conn);
        return 1;
    }
    free(tls->held);
    tls->held = NULL;
    return 0;
}

/* Encrypts up to TLS_WRITE_CHUNK bytes of the send queue. 1 if some were
 * taken, 0 if none could be (empty queue, or the handshake is not done),
 * -1 on error. */
static int encrypt_some(party_conn *conn, party__tls *tls) {
    ssl_error_buf err_buf;
    uv_buf_t iov[16];
    size_t n = party__conn_peek(conn, iov, 16), i, taken = 0;

    for (i = 0; i < n && taken < TLS_WRITE_CHUNK; i++) {
        size_t off = 0;
        while (off < iov[i].len && taken < TLS_WRITE_CHUNK) {
            size_t want = iov[i].len - off;
            int w;
            if (want > TLS_WRITE_CHUNK - taken)
                want = TLS_WRITE_CHUNK - taken;
            ERR_clear_error();
            w = SSL_write(tls->ssl, iov[i].base + off, (int)want);
            if (w <= 0) {
                int err = SSL_get_error(tls->ssl, w);
                if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
                    goto done;
                party__log_debug(party__conn_rt(conn), "tls: write: %s", ssl_error_text(&err_buf));
                return -1;
            }
            off += (size_t)w;
            taken += (size_t)w;
        }
    }
done:
    if (taken > 0)
        party__conn_consume(conn, taken);
    return taken > 0;
}

void party__tls_flush(party_conn *conn) {
    party__tls *tls = tls_of(conn);

    for (;;) {
        int r = write_pending(conn, tls);
        if (r < 0) {
            party__conn_abort(conn);
            return;
        }
        if (r > 0)
            return; /* the flush runs again once the socket takes more */
        r = encrypt_some(conn, tls);
        if (r < 0) {
            party__conn_abort(conn);
            return;
        }
        if (r > 0)
            continue;
        if (conn->out_len > 0)
            return; /* waiting for the handshake */
        if (conn->close_after_flush && conn->holder == NULL && !tls->shutdown_sent &&
            SSL_is_init_finished(tls->ssl)) {
            tls->shutdown_sent = 1;
            ERR_clear_error();
            (void)SSL_shutdown(tls->ssl); /* close_notify into the write BIO */
            continue;
        }
        party__conn_flush_done(conn);
        return;
    }
}
