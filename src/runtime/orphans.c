/* orphans: wake-ups of rooms no process holds. On a store several
 * processes share (PostgreSQL), a node files in its heaps only the rooms
 * it holds or took at start-up; when a node dies, the alarms of the rooms
 * it held are nobody's until someone reaches them. Loop 0 asks the
 * backend's alarm index for due rooms without a live owner every
 * ORPHANS_POLL_MS, on a worker thread, and files each in the heap of the
 * loop that owns it (by mail for another loop): the wake-up acquires the
 * room like any other. Towards the rooms the shape is one-way: the poll
 * reaches them only through party__rooms_file_orphan, and nothing in the
 * rooms calls it; the runtime starts and stops it (orphans, runtime and
 * loops call each other, all in the runtime layer). */
#include "orphans.h"

#include <string.h>

#include "alloc.h"
#include "log.h"
#include "loops.h"
#include "storage.h"

#define ORPHANS_POLL_MS 2000
#define ORPHANS_MAX 1024 /* rooms filed per poll; the rest wait for the next */

typedef struct orphan {
    char id[PARTY_ID_MAX];
    uint32_t tag; /* the party's index */
    int64_t due_ms;
} orphan;

struct party__orphans {
    uv_timer_t timer;
    uv_work_t work;
    party_runtime *rt;
    int polling;
    int closing;
    int64_t now_ms; /* the poll's time, read on the loop */
    orphan found[ORPHANS_MAX];
    size_t n_found;
    int result;
};

/* A found room for another loop's heap. */
typedef struct orphan_mail {
    party__mail mail;
    orphan o;
} orphan_mail;

static int orphan_collect(const char *id, const char *party, int64_t due_ms, void *arg) {
    struct party__orphans *p = arg;
    party_runtime *rt = p->rt;
    size_t i;

    if (p->n_found == ORPHANS_MAX)
        return 1; /* enough for this poll */
    for (i = 0; i < rt->n_parties; i++)
        if (strcmp(rt->parties[i].name, party) == 0)
            break;
    if (i == rt->n_parties || strlen(id) != PARTY_ID_MAX - 1 || !party__room_id_valid(id))
        return 0; /* a party not served here: its rooms wait for a node that does */
    memcpy(p->found[p->n_found].id, id, PARTY_ID_MAX);
    p->found[p->n_found].tag = (uint32_t)i;
    p->found[p->n_found].due_ms = due_ms;
    p->n_found++;
    return 0;
}

static void orphans_poll_work(uv_work_t *req) {
    struct party__orphans *p = req->data;
    party__backend *be = p->rt->backend;
    p->n_found = 0;
    p->result = be->ops->index_due(be, p->now_ms, orphan_collect, p);
}

/* Files a found room in lc's heap, unless lc has the room in memory. */
static void file_orphan(party__loop_ctx *lc, const orphan *o) {
    if (party__rooms_file_orphan(&lc->rooms, o->id, o->tag, o->due_ms) != 0)
        party__log_warn(lc->rt, "alarm of room %s: no memory to file it; the next poll tries again",
                        o->id);
}

static void orphan_mail_run(party__loop_ctx *lc, party__mail *mail) {
    orphan_mail *m = (orphan_mail *)mail;
    file_orphan(lc, &m->o);
    party__free(m);
}

static void orphan_mail_drop(party__mail *mail) {
    party__free(mail);
}

static void orphans_timer_closed(uv_handle_t *handle) {
    party__free(handle->data);
}

static void orphans_poll_done(uv_work_t *req, int status) {
    struct party__orphans *p = req->data;
    party_runtime *rt = p->rt;
    size_t i;

    p->polling = 0;
    rt->main.rooms.n_busy--;
    if (status == 0 && p->result < 0 && !p->closing)
        party__log_warn(rt, "alarm index: cannot look for rooms no node holds: %s",
                        party_strerror(p->result));
    for (i = 0; i < p->n_found && status == 0 && !p->closing; i++) {
        party__loop_ctx *target = party__loop_of(&rt->main, p->found[i].id);
        orphan_mail *m;
        if (target == &rt->main) {
            file_orphan(target, &p->found[i]);
            continue;
        }
        m = party__calloc(1, sizeof(*m));
        if (m == NULL)
            break; /* the next poll finds the rest */
        m->mail.run = orphan_mail_run;
        m->mail.drop = orphan_mail_drop;
        m->o = p->found[i];
        party__mail_post(target, &m->mail);
    }
    if (p->closing)
        uv_close((uv_handle_t *)&p->timer, orphans_timer_closed);
    party__loop_maybe_finish(&rt->main.lp);
}

static void orphans_poll_tick(uv_timer_t *timer) {
    struct party__orphans *p = timer->data;
    party_runtime *rt = p->rt;
    if (p->polling || rt->main.lp.stopping)
        return;
    p->work.data = p;
    p->now_ms = party__loop_epoch_ms(&rt->main.lp);
    p->polling = 1;
    /* Counted as store work of loop 0's rooms: the loop does not finish
     * (and the backend is not closed) while the poll runs. */
    rt->main.rooms.n_busy++;
    if (uv_queue_work(&rt->main.lp.loop, &p->work, orphans_poll_work, orphans_poll_done) != 0) {
        p->polling = 0;
        rt->main.rooms.n_busy--;
    }
}

int party__orphans_start(party_runtime *rt) {
    struct party__orphans *p;
    party__backend *be = rt->backend;

    if (be == NULL || strcmp(be->ops->name, "sqlite") == 0 || rt->orphans != NULL)
        return 0;
    p = party__calloc(1, sizeof(*p));
    if (p == NULL)
        return PARTY_ENOMEM;
    p->rt = rt;
    if (uv_timer_init(&rt->main.lp.loop, &p->timer) != 0) {
        party__free(p);
        return PARTY_EIO;
    }
    p->timer.data = p;
    uv_timer_start(&p->timer, orphans_poll_tick, ORPHANS_POLL_MS, ORPHANS_POLL_MS);
    uv_unref((uv_handle_t *)&p->timer);
    rt->orphans = p;
    return 0;
}

void party__orphans_stop(party_runtime *rt) {
    struct party__orphans *p = rt->orphans;
    if (p == NULL)
        return;
    rt->orphans = NULL;
    uv_timer_stop(&p->timer);
    p->closing = 1;
    if (!p->polling)
        uv_close((uv_handle_t *)&p->timer, orphans_timer_closed);
}
