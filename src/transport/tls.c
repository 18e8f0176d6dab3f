/* tls: the TLS transport, OpenSSL over memory BIOs on the connection's
 * socket. Input: ciphertext into the read BIO, SSL_read into the place the
 * connection wants plaintext (party__conn_input_space), then its input
 * path. Output: the send queue is encrypted in bounded steps (at most one
 * chunk of ciphertext is ever outside the queue, so send_queue_bytes still
 * bounds a slow reader), then written. The connection is reached through
 * transport.h only: its struct is not known here. */
#include "tls.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "log.h"
#include "loop.h"
#include "alloc.h"

#define TLS_READ_BUF (64 * 1024)
#define TLS_WRITE_CHUNK (64 * 1024) /* plaintext encrypted per step */

typedef struct party__tls {
    party__transport base; /* first: the connection keeps it as its transport */
    SSL *ssl;
    BIO *rbio, *wbio; /* owned by ssl */
    int shutdown_sent;
    /* Ciphertext taken from the write BIO that the socket has not taken
     * yet (it was full): held_len bytes, held_off of them written. */
    char *held;
    size_t held_len, held_off;
} party__tls;

int party__tls_enabled(const party__loop *lp) {
    return lp->tls_ctx != NULL;
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

int party__tls_init(party__loop *lp) {
    ssl_error_buf err_buf;
    SSL_CTX *ctx;
    const char *cert = lp->cfg.tls_cert, *key = lp->cfg.tls_key;

    if (cert == NULL && key == NULL)
        return 0;
    if (cert == NULL || key == NULL) {
        party__log_error(lp, "tls: both a certificate and a key are needed (got only the %s)",
                         cert != NULL ? "certificate" : "key");
        return PARTY_EINVAL;
    }
    ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        party__log_error(lp, "tls: %s", ssl_error_text(&err_buf));
        return PARTY_ENOMEM;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* Partial writes let the send queue be encrypted a piece at a time;
     * releasing buffers keeps an idle TLS connection small. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        party__log_error(lp, "tls: cannot load the certificate %s: %s", cert,
                         ssl_error_text(&err_buf));
        SSL_CTX_free(ctx);
        return PARTY_EINVAL;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        party__log_error(lp, "tls: cannot load the key %s: %s", key, ssl_error_text(&err_buf));
        SSL_CTX_free(ctx);
        return PARTY_EINVAL;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        party__log_error(lp, "tls: the key %s does not match the certificate %s", key, cert);
        SSL_CTX_free(ctx);
        return PARTY_EINVAL;
    }
    if (party__tls_init_loop(lp) != 0) {
        party__log_error(lp, "tls: out of memory for the read buffer");
        SSL_CTX_free(ctx);
        return PARTY_ENOMEM;
    }
    lp->tls_ctx = ctx;
    return 0;
}

int party__tls_init_loop(party__loop *lp) {
    lp->tls_read_buf = party__malloc(TLS_READ_BUF);
    return lp->tls_read_buf != NULL ? 0 : PARTY_ENOMEM;
}

void party__tls_cleanup_loop(party__loop *lp) {
    lp->tls_ctx = NULL; /* main's */
    party__tls_cleanup(lp);
}

void party__tls_cleanup(party__loop *lp) {
    SSL_CTX_free(lp->tls_ctx);
    lp->tls_ctx = NULL;
    party__free(lp->tls_read_buf);
    lp->tls_read_buf = NULL;
}

/* ---- state ---- */

static party__tls *tls_of(party_conn *conn) {
    /* Only TLS connections run this file's ops, so their state is ours. */
    return (party__tls *)party__conn_transport(conn);
}

static void tls_free(party__transport *t) {
    party__tls *tls = (party__tls *)t;
    SSL_free(tls->ssl);
    party__free(tls->held);
    party__free(tls);
}

static int tls_accept(party_conn *conn) {
    party__loop *lp = party__conn_get_loop(conn);
    party__tls *tls = party__calloc(1, sizeof(*tls));

    if (tls == NULL)
        return PARTY_ENOMEM;
    tls->base.ops = &party__transport_tls;
    tls->ssl = SSL_new(lp->tls_ctx);
    tls->rbio = BIO_new(BIO_s_mem());
    tls->wbio = BIO_new(BIO_s_mem());
    if (tls->ssl == NULL || tls->rbio == NULL || tls->wbio == NULL) {
        BIO_free(tls->rbio);
        BIO_free(tls->wbio);
        SSL_free(tls->ssl);
        party__free(tls);
        return PARTY_ENOMEM;
    }
    SSL_set_bio(tls->ssl, tls->rbio, tls->wbio);
    SSL_set_accept_state(tls->ssl);
    if (party__conn_set_transport(conn, &tls->base) != 0) {
        tls_free(&tls->base);
        return PARTY_ENOMEM;
    }
    return 0;
}

/* Ciphertext is read into a loop-wide buffer: decrypted at once, it never
 * stays there. */
static int tls_read_space(party_conn *conn, uv_buf_t *out) {
    *out = uv_buf_init(party__conn_get_loop(conn)->tls_read_buf, TLS_READ_BUF);
    return 0;
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
static void refuse_plain_http(party_conn *conn, party__tls *tls) {
    party__loop *lp = party__conn_get_loop(conn);
    party__log_info(lp, "tls: plain HTTP on the TLS port; answered 400");
    lp->tls_errors++;
    (void)party__conn_set_transport(conn, NULL); /* cannot fail */
    tls_free(&tls->base);
    party__conn_http_fail(conn, 400, "this port speaks TLS (https/wss)\n");
}

/* Decrypts what the read BIO holds into the connection's input, as long
 * as the connection takes it; then sends what the handshake wrote. */
static void decrypt(party_conn *conn, party__tls *tls) {
    ssl_error_buf err_buf;
    party__loop *lp = party__conn_get_loop(conn);

    /* The input may route a request to another loop, and the state with
     * it: after party__conn_input, only party__conn_closing is asked
     * before the state is touched again. */
    while (!party__conn_closing(conn)) {
        uv_buf_t dst;
        int n, err, r = party__conn_input_space(conn, &dst);

        if (r < 0)
            return; /* the connection was failed */
        if (r > 0)
            break; /* a request is with a room: what follows it waits in
                    * OpenSSL, as it would in the socket without TLS */
        ERR_clear_error();
        n = SSL_read(tls->ssl, dst.base, (int)dst.len);
        if (n > 0) {
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
            party__log_info(lp, "tls: handshake failed: %s", ssl_error_text(&err_buf));
        else
            party__log_debug(lp, "tls: %s", ssl_error_text(&err_buf));
        lp->tls_errors++;
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
    if (!party__conn_closing(conn) && BIO_ctrl_pending(tls->wbio) > 0)
        party__conn_flush(conn);
}

/* Ciphertext arrived from the socket. */
static void tls_on_bytes(party_conn *conn, char *data, size_t len) {
    party__tls *tls = tls_of(conn);

    if (BIO_number_written(tls->rbio) == 0 && looks_like_plain_http(data, len)) {
        refuse_plain_http(conn, tls);
        return;
    }
    if (BIO_write(tls->rbio, data, (int)len) != (int)len) {
        party__conn_abort(conn);
        return;
    }
    decrypt(conn, tls);
}

/* Records read behind a request that did not fit behind it (or that came
 * with a connection handed over by another loop) are in the read BIO. */
static void tls_resume(party_conn *conn) {
    decrypt(conn, tls_of(conn));
}

/* ---- output ---- */

/* Writes the ciphertext held or waiting in the write BIO: PARTY__FLUSH_DONE
 * when all went, PARTY__FLUSH_BLOCKED when some waits for the socket to
 * take more, or a negative libuv error code. */
static int write_pending(party_conn *conn, party__tls *tls) {
    ssize_t r;
    uv_buf_t b;

    if (tls->held == NULL) {
        size_t pending = BIO_ctrl_pending(tls->wbio);
        int n;
        if (pending == 0)
            return PARTY__FLUSH_DONE;
        tls->held = party__malloc(pending);
        if (tls->held == NULL)
            return UV_ENOMEM;
        n = BIO_read(tls->wbio, tls->held, (int)pending);
        if (n <= 0)
            return UV_EPROTO; /* the state is freed with the connection */
        tls->held_len = (size_t)n;
        tls->held_off = 0;
    }
    b = uv_buf_init(tls->held + tls->held_off, (unsigned int)(tls->held_len - tls->held_off));
    r = party__conn_write_some(conn, &b, 1);
    if (r < 0)
        return (int)r;
    tls->held_off += (size_t)r;
    if (tls->held_off < tls->held_len)
        return PARTY__FLUSH_BLOCKED;
    party__free(tls->held);
    tls->held = NULL;
    return PARTY__FLUSH_DONE;
}

/* What encrypt_some did. */
enum { ENCRYPT_EMPTY, ENCRYPT_SOME, ENCRYPT_STUCK };

/* Encrypts up to TLS_WRITE_CHUNK bytes of the send queue: ENCRYPT_SOME if
 * some were taken, ENCRYPT_EMPTY if the queue is, ENCRYPT_STUCK if none
 * could be (the handshake is not done), or a negative libuv error code. */
static int encrypt_some(party_conn *conn, party__tls *tls) {
    ssl_error_buf err_buf;
    uv_buf_t iov[16];
    size_t n = party__conn_peek(conn, iov, 16), i, taken = 0;

    if (n == 0)
        return ENCRYPT_EMPTY;
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
                party__log_debug(party__conn_get_loop(conn), "tls: write: %s",
                                 ssl_error_text(&err_buf));
                return UV_EPROTO;
            }
            off += (size_t)w;
            taken += (size_t)w;
        }
    }
done:
    if (taken == 0)
        return ENCRYPT_STUCK;
    party__conn_consume(conn, taken);
    return ENCRYPT_SOME;
}

static int tls_flush(party_conn *conn) {
    party__tls *tls = tls_of(conn);

    for (;;) {
        int r = write_pending(conn, tls);
        if (r != PARTY__FLUSH_DONE)
            return r;
        r = encrypt_some(conn, tls);
        if (r < 0)
            return r;
        if (r == ENCRYPT_EMPTY)
            return PARTY__FLUSH_DONE;
        if (r == ENCRYPT_STUCK)
            return PARTY__FLUSH_PENDING; /* the handshake's end flushes again */
    }
}

/* close_notify, once, then written like output. */
static int tls_start_close(party_conn *conn) {
    party__tls *tls = tls_of(conn);

    if (!tls->shutdown_sent && SSL_is_init_finished(tls->ssl)) {
        tls->shutdown_sent = 1;
        ERR_clear_error();
        (void)SSL_shutdown(tls->ssl); /* close_notify into the write BIO */
    }
    return write_pending(conn, tls);
}

const party__transport_ops party__transport_tls = {
    .name = "TLS",
    .accept = tls_accept,
    .read_space = tls_read_space,
    .on_bytes = tls_on_bytes,
    .resume = tls_resume,
    .flush = tls_flush,
    .start_close = tls_start_close,
    .free = tls_free,
};
