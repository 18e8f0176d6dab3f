/* loop: an event loop's context — its set-up, its clock, and the buffers
 * every loop has of its own for the hot path (see loop.h). */
#include "loop.h"

#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "alloc.h"
#include "buf.h"
#include "digest.h"

void party__loop_free(party__loop *lp) {
    party__free(lp->read_buf);
    party__buf_pool_free(lp->buf_pool);
    party__digest_free(lp->digest);
    lp->read_buf = NULL;
    lp->buf_pool = NULL;
    lp->digest = NULL;
}

int party__loop_init(party__loop *lp, const party_config *cfg, unsigned index) {
    lp->cfg = *cfg;
    lp->index = index;
    lp->listen_fd = lp->spare_fd = lp->conn_epfd = -1;
    lp->read_buf = party__malloc(PARTY__READ_BUF_SIZE);
    lp->buf_pool = party__buf_pool_new();
    lp->digest = party__digest_new();
    if (lp->read_buf == NULL || lp->buf_pool == NULL || lp->digest == NULL ||
        uv_loop_init(&lp->loop) != 0) {
        party__loop_free(lp);
        return PARTY_ENOMEM;
    }
    lp->loop.data = lp;
    return 0;
}

uint64_t party__loop_now(party__loop *lp) {
    return lp->virtual_clock ? lp->virtual_now : uv_now(&lp->loop);
}

int64_t party__loop_epoch_ms(party__loop *lp) {
    struct timeval tv;
    if (lp->virtual_clock)
        return (int64_t)lp->virtual_now;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

int party__loop_warning_due(party__loop *lp, uint64_t *last) {
    uint64_t now = uv_now(&lp->loop);
    if (*last != 0 && now - *last < 1000)
        return 0;
    *last = now;
    return 1;
}

const char *party__loop_http_date(party__loop *lp) {
    int64_t now = party__loop_epoch_ms(lp) / 1000;

    if (now != lp->http_date_at || lp->http_date[0] == '\0') {
        time_t t = (time_t)now;
        struct tm tm;
        if (gmtime_r(&t, &tm) == NULL ||
            strftime(lp->http_date, sizeof(lp->http_date), "%a, %d %b %Y %H:%M:%S GMT", &tm) == 0)
            return NULL;
        lp->http_date_at = now;
    }
    return lp->http_date;
}
