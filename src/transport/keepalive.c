/* keepalive: a sweep every ping_interval over the open WebSockets. A
 * connection that sent anything since the last sweep is fine (conn->heard,
 * set on every read); one that did not is pinged (conn->pinged); one still
 * silent at the next sweep, a whole interval after its ping, is closed with
 * 1001. So a dead peer is found between two and three intervals after it
 * went quiet, for the price of two bits per connection. Pings and pongs
 * never reach the room, so a hibernated room stays asleep. */
#include "keepalive.h"

#include "conn.h"
#include "log.h"
#include "runtime.h"
#include "ws.h"

static void sweep_one(party_conn *conn) {
    party_runtime *rt = party__conn_rt(conn);

    if (conn->phase != PARTY__CONN_OPEN || conn->transport_closing || conn->close_received)
        return; /* closing ones have close_timeout; HTTP ones header_timeout */
    if (conn->heard) {
        conn->heard = 0;
        conn->pinged = 0;
        return;
    }
    if (conn->pinged) {
        party__log_info(rt, "conn %s: no answer to a ping within ping_interval (%.1f s); closing",
                        conn->id, rt->cfg.ping_interval);
        party__conn_start_close(conn, PARTY__WS_GOING_AWAY, "ping timeout");
        return;
    }
    if (rt->keepalive_ping == NULL)
        return; /* out of memory: try again at the next sweep */
    conn->pinged = 1;
    (void)party__conn_queue(conn, rt->keepalive_ping);
}

void party__keepalive_sweep(party_runtime *rt) {
    if (rt->stopping)
        return;
    /* One Ping frame, queued by reference on every connection that gets it. */
    rt->keepalive_ping = party__ws_frame_new(NULL, PARTY__WS_PING, NULL, 0);
    party__conn_foreach(rt, sweep_one);
    party__buf_release(rt->keepalive_ping);
    rt->keepalive_ping = NULL;
}

static void on_keepalive_timer(uv_timer_t *timer) {
    party__keepalive_sweep(timer->data);
}

void party__keepalive_start(party_runtime *rt) {
    uint64_t ms;

    if (rt->cfg.ping_interval <= 0)
        return;
    ms = (uint64_t)(rt->cfg.ping_interval * 1000.0 + 0.5);
    if (ms == 0)
        ms = 1;
    uv_timer_start(&rt->keepalive_timer, on_keepalive_timer, ms, ms);
    uv_unref((uv_handle_t *)&rt->keepalive_timer);
}
