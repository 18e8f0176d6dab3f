/* keepalive: a sweep every ping_interval over the open WebSockets. A
 * connection that sent anything since the last sweep is fine (conn->heard,
 * set on every read); one that did not is pinged (conn->pinged); one still
 * silent at the next sweep, a whole interval after its ping, is closed with
 * 1001. So a dead peer is found between two and three intervals after it
 * went quiet, for the price of two bits per connection. Pings and pongs
 * never reach the room, so a hibernated room stays asleep. The sweep also
 * takes back the send queue an idle connection still holds, and its
 * message meter's state once that has refilled. */
#include "keepalive.h"

#include "conn.h"
#include "log.h"
#include "loop.h"
#include "ws.h"

static void sweep_one(party_conn *conn) {
    party__loop *lp = party__conn_loop(conn);

    if (conn->phase != PARTY__CONN_OPEN || conn->transport_closing || conn->close_received)
        return; /* closing ones have close_timeout; HTTP ones header_timeout */
    /* A ring a burst of output grew is given back once the queue is empty,
     * a meter's state once the connection is within its limits again. */
    party__conn_trim(conn);
    if (conn->heard) {
        conn->heard = 0;
        conn->pinged = 0;
        return;
    }
    if (conn->pinged) {
        party__log_info(lp, "conn %s: no answer to a ping within ping_interval (%.1f s); closing",
                        conn->id, lp->cfg.ping_interval);
        party__conn_start_close(conn, PARTY__WS_GOING_AWAY, "ping timeout");
        return;
    }
    if (lp->keepalive_ping == NULL)
        return; /* out of memory: try again at the next sweep */
    conn->pinged = 1;
    (void)party__conn_queue(conn, lp->keepalive_ping);
}

void party__keepalive_sweep(party__loop *lp) {
    /* Frozen for an upgrade, nobody reads the answers: the next sweep (in
     * this process or the next) decides. */
    if (lp->stopping || lp->frozen)
        return;
    /* One Ping frame, queued by reference on every connection that gets it. */
    lp->keepalive_ping = party__ws_frame_new(NULL, PARTY__WS_PING, NULL, 0);
    party__conn_foreach(lp, sweep_one);
    party__buf_release(lp->keepalive_ping);
    lp->keepalive_ping = NULL;
}

static void on_keepalive_timer(uv_timer_t *timer) {
    party__keepalive_sweep(timer->data);
}

void party__keepalive_start(party__loop *lp) {
    uint64_t ms;

    if (lp->cfg.ping_interval <= 0)
        return;
    ms = (uint64_t)(lp->cfg.ping_interval * 1000.0 + 0.5);
    if (ms == 0)
        ms = 1;
    uv_timer_start(&lp->keepalive_timer, on_keepalive_timer, ms, ms);
    uv_unref((uv_handle_t *)&lp->keepalive_timer);
}
