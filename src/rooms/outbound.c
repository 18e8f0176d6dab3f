/* outbound: party_room_fetch_url — outbound HTTP(S) for rooms. Owns the
 * loop's outbound requests (held by their room's output gate, in flight in
 * the loop's HTTP client, or answered and posted to the room) and the
 * loop's clients, one per policy (the runtime's fetch_allow, or a party's
 * own), each with its parsed allow-list. Records live under the reserved
 * meta key "fetch/<id>" (the value is the tag). */
#include "outbound.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "buf.h"
#include "fetch_allow.h"
#include "http_client.h"
#include "log.h"
#include "request.h"
#include "room.h"

#define RECORD_PREFIX "fetch/"
#define RECORD_KEY_MAX (sizeof(RECORD_PREFIX) + PARTY_ID_MAX)
#define DEFAULT_MAX_BYTES (8u * 1024 * 1024)
#define DEFAULT_TIMEOUT_S 30.0
#define PARTY__FETCH_URL_TIMEOUT_MAX 1e7 /* seconds: some 115 days */

enum { REQ_HELD, REQ_RUNNING, REQ_POSTED };

struct party__outbound_req {
    party__outbound *ob;
    party__outbound_req *prev, *next; /* the loop's list */
    int state;
    int linked;
    party_room *held_room; /* HELD: whose commit it waits for */
    char id[PARTY_ID_MAX];
    const party__party *caller_party;
    char caller_id[PARTY_ID_MAX];
    char *caller_name; /* set when the caller is addressed by name */
    char *tag;
    /* Prepared when the request is made (HELD), started after the commit
     * (RUNNING): leaving it then cannot fail unanswered. NULL once answered. */
    party__http_transfer *transfer;
    party__event *event_spare; /* so that posting the answer cannot fail */
    party_response res;        /* the answer */
};

typedef struct policy {
    int ready;           /* looked at (parsed, or found bad) */
    party__allow *allow; /* the list in force (owned) */
    party__http_client *client;
    char source[128];
    char bad[320]; /* non-empty: the party's list is malformed */
} policy;

struct party__outbound {
    party__rooms *rooms;
    party__outbound_req *head;
    size_t n_held;
    /* [0]: the runtime's list; [1 + i]: party i's when it has its own */
    policy *policies;
    size_t n_policies;
};

/* Requests not yet answered, over every loop (the runtime's counter,
 * atomic). */
static size_t *process_count(party__outbound *ob) {
    return ob->rooms->n_outbound;
}

/* How many requests may be unanswered in the process. */
static size_t process_limit(const party__rooms *rooms) {
    size_t limit = rooms->lp->cfg.fetch_max_in_flight;
    return limit > 0 ? limit : PARTY_MAX_FETCH_URLS;
}

/* The loop's outbound counters (what its clients count too). */
static party__http_stats *stats_of(party__outbound *ob) {
    return &ob->rooms->lp->http_stats;
}

static void record_key(char out[RECORD_KEY_MAX], const char *id) {
    snprintf(out, RECORD_KEY_MAX, "%s%s", RECORD_PREFIX, id);
}

/* ---- the loop's state ---- */

/* The loop's state, made at its first request. NULL on OOM. */
static party__outbound *outbound_of(party__rooms *rooms) {
    party__outbound *ob = rooms->outbound;
    if (ob != NULL)
        return ob;
    ob = party__calloc(1, sizeof(*ob));
    if (ob == NULL)
        return NULL;
    ob->rooms = rooms;
    rooms->outbound = ob;
    return ob;
}

static void req_unlink(party__outbound_req *req) {
    party__outbound *ob = req->ob;
    if (!req->linked)
        return;
    if (req->prev != NULL)
        req->prev->next = req->next;
    else
        ob->head = req->next;
    if (req->next != NULL)
        req->next->prev = req->prev;
    req->prev = req->next = NULL;
    req->linked = 0;
    if (req->state == REQ_HELD)
        ob->n_held--;
    __atomic_fetch_sub(process_count(ob), 1, __ATOMIC_RELAXED);
}

void party__outbound_req_free(party__outbound_req *req) {
    if (req == NULL)
        return;
    req_unlink(req);
    if (req->transfer != NULL)
        party__http_cancel(req->transfer);
    party__response_free(&req->res);
    party__free(req->event_spare);
    party__free(req->caller_name);
    party__free(req->tag);
    party__free(req);
}

void party__outbound_stop_all(party__rooms *rooms) {
    party__outbound *ob = rooms->outbound;
    party__outbound_req *req, *next;

    if (ob == NULL)
        return;
    for (req = ob->head; req != NULL; req = next) {
        next = req->next;
        if (req->state != REQ_POSTED)
            party__outbound_req_free(req);
    }
}

void party__outbound_finish(party__rooms *rooms) {
    party__outbound *ob = rooms->outbound;
    size_t i;

    if (ob == NULL)
        return;
    party__outbound_stop_all(rooms);
    while (ob->head != NULL)
        party__outbound_req_free(ob->head);
    for (i = 0; i < ob->n_policies; i++) {
        party__http_client_free(ob->policies[i].client);
        party__allow_free(ob->policies[i].allow);
    }
    party__free(ob->policies);
    party__free(ob);
    rooms->outbound = NULL;
}

/* ---- policies and clients ---- */

/* The policy for a room's party, parsed if needed (with_client: its client
 * made too). NULL on OOM. */
static policy *policy_for(party__outbound *ob, party_room *room, int with_client) {
    party__rooms *rooms = ob->rooms;
    const party_config *rcfg = &rooms->lp->cfg;
    const party_def *def = room->party->def;
    size_t index = def->fetch_allow != NULL ? 1 + (size_t)(room->party - rooms->parties) : 0;
    party__http_client_config cfg;
    policy *p;

    if (ob->policies == NULL) {
        ob->policies = party__calloc(rooms->n_parties + 1, sizeof(*ob->policies));
        if (ob->policies == NULL)
            return NULL;
        ob->n_policies = rooms->n_parties + 1;
    }
    if (index >= ob->n_policies)
        return NULL;
    p = &ob->policies[index];
    if (!p->ready) {
        /* Each loop parses its own copy: nothing shared, nothing locked.
         * partyd checks the lists at start-up; an embedder's bad list is
         * reported at the first request. */
        char why[300];
        int r = party__allow_parse(index == 0 ? rcfg->fetch_allow : def->fetch_allow, &p->allow,
                                   why, sizeof(why));
        if (r == PARTY_ENOMEM)
            return NULL;
        if (r != 0)
            snprintf(p->bad, sizeof(p->bad), "%s", why);
        if (index == 0)
            snprintf(p->source, sizeof(p->source), "--fetch-allow");
        else
            snprintf(p->source, sizeof(p->source), "the fetch_allow of party %s",
                     room->party->name);
        p->ready = 1;
    }
    if (with_client && p->client == NULL) {
        memset(&cfg, 0, sizeof(cfg));
        cfg.ca_file = rcfg->fetch_ca_file;
        cfg.max_response_bytes =
            rcfg->fetch_max_bytes > 0 ? rcfg->fetch_max_bytes : DEFAULT_MAX_BYTES;
        cfg.max_header_bytes = rcfg->max_header_bytes;
        cfg.max_headers = rcfg->max_headers;
        cfg.max_redirects = PARTY_FETCH_URL_MAX_REDIRECTS;
        cfg.allow = p->allow;
        cfg.allow_source = p->source;
        cfg.stats = stats_of(ob);
        p->client = party__http_client_new(&rooms->lp->loop, &cfg);
        if (p->client == NULL)
            return NULL;
    }
    return p;
}

/* ---- answers ---- */

/* The answer goes to the caller, found again by name or id: it may have
 * left memory while it waited. */
party_room *party__outbound_answered(party__outbound_req *req, party__http_answer *answer,
                                     party__event **spare) {
    party__rooms *rooms = req->ob->rooms;
    party_room *room;

    req->transfer = NULL;
    party__response_free(&req->res);
    req->res = answer->res;
    req->res.error = answer->error;
    party__response_init(&answer->res);
    if (answer->error != 0)
        party__log_warn(rooms->lp, "room %s/%s: outbound request %s failed: %s: %s",
                        req->caller_party->name,
                        req->caller_name ? req->caller_name : req->caller_id, req->id,
                        party_strerror(answer->error), answer->why);
    *spare = NULL;
    if (rooms->lp->stopping || rooms->lp->finished) {
        party__outbound_req_free(req);
        return NULL;
    }
    room = req->caller_name != NULL
               ? party__room_get_named(rooms, req->caller_party, req->caller_name, req->caller_id)
               : party__room_get_by_id(rooms, req->caller_party, req->caller_id);
    req->state = REQ_POSTED;
    if (room == NULL) {
        party__outbound_post_failed(req);
        return NULL;
    }
    *spare = req->event_spare;
    req->event_spare = NULL;
    return room;
}

void party__outbound_post_failed(party__outbound_req *req) {
    party__log_error(
        req->ob->rooms->lp, "room %s/%s: out of memory delivering the answer to request %s",
        req->caller_party->name, req->caller_name ? req->caller_name : req->caller_id, req->id);
    party__outbound_req_free(req);
}

void party__outbound_deliver(party_room *room, party__outbound_req *req) {
    const party_def *def = room->party->def;
    char key[RECORD_KEY_MAX];

    record_key(key, req->id);
    if (room->store != NULL)
        (void)party__store_meta_delete(room->store, key);
    if (def->on_response != NULL)
        def->on_response(room, req->id, req->tag != NULL ? req->tag : "", &req->res);
}

/* ---- leaving after the commit ---- */

void party__outbound_release_held(party_room *room, int committed, party__http_done_cb done) {
    party__rooms *rooms = room->rooms;
    party__outbound *ob = rooms->outbound;
    party__outbound_req *req, *next;

    if (ob == NULL || ob->n_held == 0)
        return;
    for (req = ob->head; req != NULL; req = next) {
        next = req->next;
        if (req->state != REQ_HELD || req->held_room != room)
            continue;
        req->held_room = NULL;
        if (!committed || rooms->lp->stopping) {
            if (!committed)
                party__log_warn(rooms->lp,
                                "room %s/%s: outbound request %s dropped unsent: the write before "
                                "it was not committed",
                                room->party->name, room->name ? room->name : room->id, req->id);
            party__outbound_req_free(req);
            continue;
        }
        ob->n_held--;
        req->state = REQ_RUNNING;
        party__http_go(req->transfer, done, req);
    }
}

/* ---- a new incarnation ---- */

typedef struct found_record {
    char id[PARTY_ID_MAX];
    char *tag;
} found_record;

typedef struct found_list {
    found_record *items;
    size_t n, cap;
    int failed;
} found_list;

static int collect_record(const char *key, const void *val, size_t len, void *arg) {
    found_list *list = arg;
    const char *id = key + sizeof(RECORD_PREFIX) - 1;

    if (strlen(id) != PARTY_ID_MAX - 1)
        return 0;
    if (list->n == list->cap) {
        size_t cap = list->cap == 0 ? 8 : list->cap * 2;
        found_record *grown = party__realloc(list->items, cap * sizeof(*grown));
        if (grown == NULL) {
            list->failed = 1;
            return 1;
        }
        list->items = grown;
        list->cap = cap;
    }
    memcpy(list->items[list->n].id, id, PARTY_ID_MAX);
    list->items[list->n].tag = party__strndup(val, len);
    if (list->items[list->n].tag == NULL) {
        list->failed = 1;
        return 1;
    }
    list->n++;
    return 0;
}

static int carried(party__outbound *ob, const char *id) {
    party__outbound_req *req;
    for (req = ob->head; req != NULL; req = req->next)
        if (memcmp(req->id, id, PARTY_ID_MAX) == 0)
            return 1;
    return 0;
}

void party__outbound_room_started(party_room *room) {
    party__rooms *rooms = room->rooms;
    party__outbound *ob = rooms->outbound;
    const party_def *def = room->party->def;
    found_list list = {0};
    size_t i;

    /* Before its first request a loop has no state (ob NULL): every
     * record found is then an earlier process's. */
    if (room->store == NULL)
        return;
    (void)party__store_meta_list(room->store, RECORD_PREFIX, collect_record, &list);
    if (list.failed)
        party__log_error(rooms->lp, "room %s/%s: out of memory reading its outbound requests",
                         room->party->name, room->name ? room->name : room->id);
    for (i = 0; i < list.n; i++) {
        found_record *f = &list.items[i];
        char key[RECORD_KEY_MAX];
        party_response res;

        if (ob != NULL && carried(ob, f->id))
            continue;
        record_key(key, f->id);
        (void)party__store_meta_delete(room->store, key);
        rooms->lp->http_stats.errors[party__http_error_index(PARTY_EABORTED)]++;
        party__response_init(&res);
        party__response_text(&res, 0,
                             "aborted: the request was in flight when an earlier process of "
                             "this room stopped; it may or may not have reached the server\n");
        res.status = 0;
        res.error = PARTY_EABORTED;
        if (def->on_response != NULL)
            def->on_response(room, f->id, f->tag, &res);
        party__response_free(&res);
    }
    for (i = 0; i < list.n; i++)
        party__free(list.items[i].tag);
    party__free(list.items);
}

/* ---- public ---- */

static size_t room_requests(party__outbound *ob, const party_room *room) {
    const party__outbound_req *req;
    size_t n = 0;
    for (req = ob->head; req != NULL; req = req->next)
        n += req->state != REQ_POSTED && memcmp(req->caller_id, room->id, PARTY_ID_MAX) == 0;
    return n;
}

int party_fetch_url_check(party_room *room, const char *url, char *why, size_t why_len) {
    party__outbound *ob;
    policy *pol;
    char text[320];

    if (why == NULL || why_len == 0) {
        why = text;
        why_len = sizeof(text);
    }
    why[0] = '\0';
    if (room == NULL || url == NULL)
        return PARTY_EINVAL;
    if (!party__room_in_callback(room))
        return PARTY_ESTATE;
    if ((ob = outbound_of(room->rooms)) == NULL || (pol = policy_for(ob, room, 0)) == NULL)
        return PARTY_ENOMEM;
    if (pol->bad[0] != '\0') {
        snprintf(why, why_len, "%s", pol->bad);
        return PARTY_EPOLICY;
    }
    return party__http_url_allowed(pol->allow, pol->source, url, why, why_len);
}

int party_response_get_error(const party_response *res) {
    return res != NULL ? res->error : PARTY_EINVAL;
}

int party_room_fetch_url(party_room *room, const char *method, const char *url,
                         const char *const *headers, const void *body, size_t len, double timeout,
                         const char *tag, char id_out[PARTY_ID_MAX]) {
    party__rooms *rooms;
    party__outbound *ob;
    party__outbound_req *req;
    party__http_out out;
    policy *pol;
    char why[320], key[RECORD_KEY_MAX];
    int r;

    /* !(>= 0) refuses NaN too; the bound keeps the milliseconds in range. */
    if (room == NULL || url == NULL || (body == NULL && len > 0) || !(timeout >= 0) ||
        timeout > PARTY__FETCH_URL_TIMEOUT_MAX)
        return PARTY_EINVAL;
    rooms = room->rooms;
    if (!party__room_in_callback(room) || rooms->lp->stopping)
        return PARTY_ESTATE;
    if ((ob = outbound_of(rooms)) == NULL)
        return PARTY_ENOMEM;
    memset(&out, 0, sizeof(out));
    out.method = method != NULL ? method : "GET";
    out.url = url;
    out.headers = headers;
    r = party__http_check(&out, why, sizeof(why));
    if (r != 0) {
        party__log_debug(rooms->lp, "room %s/%s: party_room_fetch_url: %s", room->party->name,
                         room->name ? room->name : room->id, why);
        return r;
    }
    if (len > rooms->lp->cfg.max_body_bytes)
        return PARTY_ETOOBIG;
    if (room_requests(ob, room) >= PARTY_MAX_ROOM_FETCH_URLS)
        return PARTY_ELIMIT;
    pol = policy_for(ob, room, 1);
    if (pol == NULL)
        return PARTY_ENOMEM;
    if (pol->bad[0] != '\0') {
        party__log_error(rooms->lp, "room %s/%s: outbound request refused: %s", room->party->name,
                         room->name ? room->name : room->id, pol->bad);
        return PARTY_EPOLICY;
    }
    if (__atomic_add_fetch(process_count(ob), 1, __ATOMIC_RELAXED) > process_limit(rooms)) {
        __atomic_fetch_sub(process_count(ob), 1, __ATOMIC_RELAXED);
        return PARTY_ELIMIT;
    }
    req = party__calloc(1, sizeof(*req));
    if (req == NULL) {
        __atomic_fetch_sub(process_count(ob), 1, __ATOMIC_RELAXED);
        return PARTY_ENOMEM;
    }
    /* Linked (and counted) from here on: freeing it undoes both. */
    req->ob = ob;
    req->linked = 1;
    req->state = REQ_POSTED; /* not held until recorded */
    req->next = ob->head;
    if (ob->head != NULL)
        ob->head->prev = req;
    ob->head = req;
    req->caller_party = room->party;
    memcpy(req->caller_id, room->id, PARTY_ID_MAX);
    party__response_init(&req->res);
    party__random_hex(32, req->id);
    if (timeout <= 0)
        timeout =
            rooms->lp->cfg.fetch_timeout > 0 ? rooms->lp->cfg.fetch_timeout : DEFAULT_TIMEOUT_S;
    out.timeout_ms = (uint64_t)(timeout * 1000.0 + 0.5);
    out.body = body;
    out.len = len;
    if ((room->by_name && (req->caller_name = party__strdup(room->name)) == NULL) ||
        (req->tag = party__strdup(tag != NULL ? tag : "")) == NULL ||
        (req->event_spare = party__malloc(sizeof(*req->event_spare))) == NULL ||
        party__http_prepare(pol->client, &out, &req->transfer) != 0)
        goto oom;
    /* D4: recorded in this event's transaction. The write closes the
     * output gate, so the request leaves after the commit, or never. */
    record_key(key, req->id);
    r = party__store_meta_put(room->store, key, req->tag, strlen(req->tag));
    if (r != 0) {
        party__outbound_req_free(req);
        return r;
    }
    (void)party__room_holding(room);
    req->state = REQ_HELD;
    req->held_room = room;
    ob->n_held++;
    if (id_out != NULL)
        memcpy(id_out, req->id, PARTY_ID_MAX);
    return 0;
oom:
    party__outbound_req_free(req);
    return PARTY_ENOMEM;
}
