/* loops: the event-loop threads of a runtime, the mailboxes between them,
 * the hand-off of a routed connection to its room's loop, and tours that
 * visit every loop (metrics, room listing). */
#include "loops.h"

#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "log.h"
#include "room.h"
#include "alloc.h"

/* ---- mailboxes ---- */

static void on_inbox(uv_async_t *async) {
    party__loop_ctx *lc = async->data;
    party__mail *mail;

    uv_mutex_lock(&lc->inbox_mutex);
    mail = lc->inbox_head;
    lc->inbox_head = lc->inbox_tail = NULL;
    uv_mutex_unlock(&lc->inbox_mutex);
    while (mail != NULL) {
        party__mail *next = mail->next;
        mail->run(lc, mail);
        mail = next;
    }
}

int party__inbox_init(party__loop_ctx *lc) {
    if (uv_mutex_init(&lc->inbox_mutex) != 0)
        return PARTY_ENOMEM;
    if (uv_async_init(&lc->lp.loop, &lc->inbox_async, on_inbox) != 0) {
        uv_mutex_destroy(&lc->inbox_mutex);
        memset(&lc->inbox_async, 0, sizeof(lc->inbox_async));
        return PARTY_ENOMEM;
    }
    lc->inbox_async.data = lc;
    uv_unref((uv_handle_t *)&lc->inbox_async);
    lc->inbox_open = 1;
    return 0;
}

static void drop_all(party__mail *mail) {
    while (mail != NULL) {
        party__mail *next = mail->next;
        mail->drop(mail);
        mail = next;
    }
}

void party__inbox_close(party__loop_ctx *lc) {
    party__mail *left;

    if (lc->inbox_async.loop == NULL || !lc->inbox_open)
        return;
    uv_mutex_lock(&lc->inbox_mutex);
    lc->inbox_open = 0;
    left = lc->inbox_head;
    lc->inbox_head = lc->inbox_tail = NULL;
    uv_mutex_unlock(&lc->inbox_mutex);
    drop_all(left);
    drop_all(lc->held_head);
    lc->held_head = lc->held_tail = NULL;
    uv_close((uv_handle_t *)&lc->inbox_async, NULL);
}

void party__inbox_free(party__loop_ctx *lc) {
    if (lc->inbox_async.loop != NULL)
        uv_mutex_destroy(&lc->inbox_mutex);
}

void party__mail_post(party__loop_ctx *target, party__mail *mail) {
    int open;

    mail->next = NULL;
    uv_mutex_lock(&target->inbox_mutex);
    open = target->inbox_open;
    if (open) {
        if (target->inbox_tail != NULL)
            target->inbox_tail->next = mail;
        else
            target->inbox_head = mail;
        target->inbox_tail = mail;
        /* Under the lock: the handle cannot be closing while we send. */
        uv_async_send(&target->inbox_async);
    }
    uv_mutex_unlock(&target->inbox_mutex);
    if (!open)
        mail->drop(mail);
}

party__loop_ctx *party__loop_of(party__loop_ctx *lc, const char *room_id) {
    party_runtime *rt = lc->rt;
    uint32_t h = 0;
    int i;

    if (rt->n_loops <= 1 || rt->loops == NULL)
        return lc;
    /* A room id is a hash already (hex): its first 8 digits spread rooms
     * evenly. */
    for (i = 0; i < 8 && room_id[i] != '\0'; i++) {
        char c = room_id[i];
        h = h * 16 + (uint32_t)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
    }
    return rt->loops[h % rt->n_loops];
}

/* ---- threads ---- */

static void free_mail(party__mail *mail) {
    party__free(mail);
}

static void on_stop_mail(party__loop_ctx *lc, party__mail *mail) {
    party__free(mail);
    party__runtime_begin_stop(lc);
}

static void on_done_mail(party__loop_ctx *lc, party__mail *mail) {
    party__free(mail);
    party__loops_thread_done(lc->rt);
}

void party__loops_thread_done(party_runtime *rt) {
    if (rt->loops_running > 0)
        rt->loops_running--;
    party__runtime_maybe_finish(&rt->main);
}

static void loop_thread(void *arg) {
    party__loop_ctx *lc = arg;
    party__mail *done = lc->done_mail;

    lc->loop_thread = uv_thread_self();
    uv_run(&lc->lp.loop, UV_RUN_DEFAULT);
    lc->running = 0;
    /* The last thing this thread does: loop 0 frees this loop once told. */
    lc->done_mail = NULL;
    party__mail_post(&lc->rt->main, done);
}

int party__loops_create(party_runtime *rt) {
    unsigned n = rt->n_loops, i;

    rt->loops = party__calloc(n, sizeof(*rt->loops));
    if (rt->loops == NULL)
        return PARTY_ENOMEM;
    rt->loops[0] = &rt->main;
    for (i = 1; i < n; i++) {
        party__loop_ctx *lc = party__runtime_new_loop(rt, i);
        party__mail *done;
        int r;

        if (lc == NULL)
            return PARTY_ENOMEM;
        rt->loops[i] = lc;
        done = party__calloc(1, sizeof(*done));
        if (done == NULL)
            return PARTY_ENOMEM;
        done->run = on_done_mail;
        done->drop = free_mail;
        lc->done_mail = done;
        r = party__runtime_start_rooms(lc);
        if (r != 0)
            return r;
        /* With no listener of its own, the mailbox is what keeps the loop
         * running until it stops. */
        uv_ref((uv_handle_t *)&lc->inbox_async);
        party__runtime_start_timers(lc);
    }
    return 0;
}

void party__loops_run(party_runtime *rt) {
    unsigned i;

    for (i = 1; i < rt->n_loops; i++) {
        party__loop_ctx *lc = rt->loops[i];
        lc->running = 1;
        if (uv_thread_create(&lc->thread, loop_thread, lc) != 0) {
            unsigned j;
            lc->running = 0;
            party__log_error(rt, "cannot start the thread of event loop %u; stopping", i);
            /* Nobody will run these loops: what is posted to them is
             * dropped at once (tours fail back, sockets are refused). */
            for (j = i; j < rt->n_loops; j++)
                party__inbox_close(rt->loops[j]);
            party__runtime_begin_stop(&rt->main);
            return;
        }
        lc->thread_started = 1;
        rt->loops_running++;
    }
}

void party__loops_stop(party_runtime *rt) {
    unsigned i;

    for (i = 1; rt->loops != NULL && i < rt->n_loops; i++) {
        party__mail *stop = party__calloc(1, sizeof(*stop));
        if (stop == NULL) {
            /* Without mail, the loop is stopped the way a signal would. */
            uv_async_send(&rt->loops[i]->stop_async);
            continue;
        }
        stop->run = on_stop_mail;
        stop->drop = free_mail;
        party__mail_post(rt->loops[i], stop);
    }
}

void party__loops_free(party_runtime *rt) {
    unsigned i;

    if (rt->loops == NULL) {
        rt->n_loops = 1;
        return;
    }
    for (i = 1; i < rt->n_loops; i++) {
        party__loop_ctx *lc = rt->loops[i];
        if (lc == NULL)
            continue;
        if (lc->thread_started)
            uv_thread_join(&lc->thread);
        party__free(lc->done_mail);
        party__runtime_free_loop(lc);
    }
    party__free(rt->loops);
    rt->loops = NULL;
    rt->n_loops = 1;
}

/* ---- hand-off ---- */

/* The connection travels as conn.c detached it: its socket, its parsed
 * request and its transport state. */
typedef struct handoff_mail {
    party__mail mail;
    party__conn_handoff conn;
} handoff_mail;

/* The loop that should take the socket has stopped (shutdown): the client
 * is told so rather than finding its connection closed without a word. */
static void handoff_drop(party__mail *mail) {
    handoff_mail *h = (handoff_mail *)mail;
    party__conn_handoff_refuse(&h->conn);
    party__free(h);
}

static void handoff_run(party__loop_ctx *lc, party__mail *mail) {
    handoff_mail *h = (handoff_mail *)mail;

    lc->handoffs_in++;
    if (lc->lp.stopping) {
        handoff_drop(mail);
        return;
    }
    if (lc->lp.frozen > 1) {
        /* Exported for an upgrade: nothing may be written now. It is
         * served once the loop writes again (party__loop_release_held);
         * the upgrade sees the count move and drains again. */
        mail->next = NULL;
        if (lc->held_tail != NULL)
            lc->held_tail->next = mail;
        else
            lc->held_head = mail;
        lc->held_tail = mail;
        return;
    }
    /* The connection owns what it carries from here, also when this
     * fails. */
    (void)party__conn_adopt_handoff(&lc->lp, &h->conn);
    party__free(h);
}

void party__loop_release_held(party__loop_ctx *lc) {
    party__mail *mail = lc->held_head;

    lc->held_head = lc->held_tail = NULL;
    while (mail != NULL) {
        party__mail *next = mail->next;
        lc->handoffs_in--; /* counted when it came */
        handoff_run(lc, mail);
        mail = next;
    }
}

void party__loop_handoff(party_conn *conn, party__loop_ctx *target) {
    party__loop *lp = party__conn_loop(conn);
    handoff_mail *h = party__malloc(sizeof(*h));

    if (h == NULL) {
        party__log_error(lp, "hand-off to loop %u: out of memory", target->index);
        party__conn_http_fail(conn, 503, "out of memory\n");
        return;
    }
    if (party__conn_detach(conn, &h->conn) != 0) {
        party__free(h); /* it waits for earlier output: routed again once written */
        return;
    }
    h->mail.run = handoff_run;
    h->mail.drop = handoff_drop;
    party__mail_post(target, &h->mail);
}

/* ---- tours ---- */

static void tour_back(party__loop_ctx *lc, party__mail *mail);

static void tour_free(party__mail *mail) {
    party__tour *tour = (party__tour *)mail;
    /* The connection's loop is gone, and the connection with it. */
    tour->free(tour);
}

static void tour_fail(party__mail *mail) {
    party__tour *tour = (party__tour *)mail;
    /* A loop on the way has stopped: back to the connection, which is
     * answered that the tour failed (or was closed meanwhile). */
    tour->failed = 1;
    tour->mail.run = tour_back;
    tour->mail.drop = tour_free;
    party__mail_post(tour->origin, &tour->mail);
}

static void tour_back(party__loop_ctx *lc, party__mail *mail) {
    party__tour *tour = (party__tour *)mail;
    party_conn *conn = tour->conn;
    (void)lc;

    if (!party__conn_closing(conn))
        tour->done(conn, tour);
    party__conn_unref(conn);
    tour->free(tour);
}

static void tour_step(party__loop_ctx *lc, party__mail *mail) {
    party__tour *tour = (party__tour *)mail;
    party_runtime *rt = lc->rt;

    tour->visit(lc, tour);
    tour->next++;
    if (rt->loops != NULL && tour->next < rt->n_loops) {
        party__mail_post(rt->loops[tour->next], &tour->mail);
    } else {
        tour->mail.run = tour_back;
        if (lc == tour->origin)
            tour_back(lc, &tour->mail);
        else
            party__mail_post(tour->origin, &tour->mail);
    }
}

void party__tour_start(party_conn *conn, party__tour *tour,
                       void (*visit)(party__loop_ctx *lc, party__tour *tour),
                       void (*done)(party_conn *conn, party__tour *tour),
                       void (*free_tour)(party__tour *tour)) {
    party__loop_ctx *lc = party__conn_ctx(conn);
    party_runtime *rt = lc->rt;

    tour->visit = visit;
    tour->done = done;
    tour->free = free_tour;
    party__conn_ref(conn);
    tour->origin = lc;
    tour->conn = conn;
    tour->next = 0;
    tour->failed = 0;
    tour->mail.run = tour_step;
    tour->mail.drop = tour_fail;
    if (rt->loops == NULL || rt->n_loops <= 1 || lc == &rt->main)
        tour_step(&rt->main, &tour->mail); /* loop 0 is this one */
    else
        party__mail_post(&rt->main, &tour->mail);
}
