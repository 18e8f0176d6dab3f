/* reminder: schedules and alarms over HTTP. Each room keeps reminders that
 * fire even when the room is out of memory or partyd restarted; when one
 * fires, every WebSocket in the room gets {"type":"reminder",...} and the
 * room records it (the last 50, durable).
 *   POST ?in=MS&name=N        once, MS from now (body: payload)
 *   POST ?at=EPOCH_MS&name=N  once, at that time
 *   POST ?every=MS&name=N     repeating (MS >= 1000)
 *   POST ?cron=EXPR&name=N    repeating, 5-field cron in UTC
 *   POST ?alarm_in=MS         the room's one alarm (fires as name "alarm")
 *   DELETE ?id=ID             cancel a schedule
 *   GET                       {"name", "now", "alarm", "schedules": [...], "fired": [...],
 *                              "webhooks": [...]}
 * A schedule's answer (201) carries its id, {"id": "..."}; the alarm's,
 * the time it is set for, {"alarm": EPOCH_MS}. Times are whole numbers of
 * milliseconds; anything else is a 400. A schedule created with
 * &webhook=URL also POSTs {"room", "name", "payload"} as JSON to URL each
 * time it fires (party_room_fetch_url); the URL must pass partyd's
 * --fetch-allow (else 403, which says when webhooks are off), and the
 * last 20 webhook outcomes are listed under "webhooks". */
#include "parties.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIRED_MAX 50
#define WEBHOOKS_MAX 20

/* A schedule with a webhook keeps it in front of its payload:
 * NUL "webhook" LF url LF payload. */
static const char webhook_mark[] = "\0webhook\n";
#define WEBHOOK_MARK_LEN (sizeof(webhook_mark) - 1)

static void respond_json(party_response *res, int status, cJSON *json) {
    char *text = json != NULL ? cJSON_PrintUnformatted(json) : NULL;
    cJSON_Delete(json);
    if (text == NULL) {
        party_response_set_status(res, 500);
        return;
    }
    party_response_json(res, status, text);
    free(text);
}

static void respond_error(party_response *res, int status, const char *message) {
    cJSON *json = cJSON_CreateObject();
    cJSON_AddStringToObject(json, "error", message);
    respond_json(res, status, json);
}

/* Appends a fired reminder to the room's durable record and tells the
 * room's connections. */
static int record_fired(party_room *room, const char *name, const void *payload, size_t len) {
    void *old = NULL;
    size_t old_len;
    cJSON *list = NULL, *entry, *note;
    char *text;
    int r;

    if (party_kv_get(room, "fired", &old, &old_len) == 0)
        list = cJSON_Parse(old);
    free(old);
    if (list == NULL)
        list = cJSON_CreateArray();
    entry = cJSON_CreateObject();
    if (list == NULL || entry == NULL) {
        cJSON_Delete(list);
        cJSON_Delete(entry);
        return -1;
    }
    cJSON_AddStringToObject(entry, "name", name);
    cJSON_AddStringToObject(entry, "room", party_room_name(room) ? party_room_name(room) : "");
    cJSON_AddNumberToObject(entry, "at", (double)party_now_ms(room));
    cJSON_AddNumberToObject(entry, "retry", party_alarm_retry_count(room));
    {
        char *copy = malloc(len + 1);
        if (copy != NULL) {
            memcpy(copy, payload, len);
            copy[len] = '\0';
            cJSON_AddStringToObject(entry, "payload", copy);
            free(copy);
        }
    }
    note = cJSON_Duplicate(entry, 1);
    cJSON_AddItemToArray(list, entry);
    while (cJSON_GetArraySize(list) > FIRED_MAX)
        cJSON_DeleteItemFromArray(list, 0);
    text = cJSON_PrintUnformatted(list);
    cJSON_Delete(list);
    r = text != NULL ? party_kv_put(room, "fired", text, strlen(text)) : -1;
    free(text);
    if (note != NULL) {
        cJSON_AddStringToObject(note, "type", "reminder");
        text = cJSON_PrintUnformatted(note);
        if (text != NULL)
            party_room_broadcast(room, text, strlen(text), 0, NULL, 0, NULL);
        free(text);
        cJSON_Delete(note);
    }
    return r;
}

/* POSTs {"room", "name", "payload"} to url; its outcome comes back to
 * reminder_response. */
static int send_webhook(party_room *room, const char *url, const char *name, const char *payload,
                        size_t len) {
    static const char *const headers[] = {"Content-Type", "application/json", NULL};
    cJSON *json = cJSON_CreateObject();
    char *copy = malloc(len + 1), *text;
    int r;

    if (json == NULL || copy == NULL) {
        cJSON_Delete(json);
        free(copy);
        return PARTY_ENOMEM;
    }
    memcpy(copy, payload, len);
    copy[len] = '\0';
    cJSON_AddStringToObject(json, "room", party_room_name(room) ? party_room_name(room) : "");
    cJSON_AddStringToObject(json, "name", name);
    cJSON_AddStringToObject(json, "payload", copy);
    free(copy);
    text = cJSON_PrintUnformatted(json);
    cJSON_Delete(json);
    if (text == NULL)
        return PARTY_ENOMEM;
    r = party_room_fetch_url(room, "POST", url, headers, text, strlen(text), 0, name, NULL);
    free(text);
    if (r != 0)
        party_room_log(room, PARTY_LOG_WARN, "webhook of %s to %s not sent: %s", name, url,
                       party_strerror(r));
    return r;
}

static int reminder_schedule(party_room *room, const char *name, const void *payload, size_t len) {
    const char *p = payload;
    if (len > WEBHOOK_MARK_LEN && memcmp(p, webhook_mark, WEBHOOK_MARK_LEN) == 0) {
        const char *url = p + WEBHOOK_MARK_LEN, *end = memchr(url, '\n', len - WEBHOOK_MARK_LEN);
        char target[2048];
        if (end != NULL && (size_t)(end - url) < sizeof(target)) {
            size_t rest = len - (size_t)(end + 1 - p);
            memcpy(target, url, (size_t)(end - url));
            target[end - url] = '\0';
            if (record_fired(room, name, end + 1, rest) != 0)
                return -1;
            (void)send_webhook(room, target, name, end + 1, rest);
            return 0;
        }
    }
    return record_fired(room, name, payload, len) == 0 ? 0 : -1;
}

/* A webhook's outcome: kept (the last WEBHOOKS_MAX) and logged when it
 * failed. */
static void reminder_response(party_room *room, const char *id, const char *tag,
                              const party_response *res) {
    int error = party_response_get_error(res), status = party_response_get_status(res);
    void *old = NULL;
    size_t old_len;
    cJSON *list = NULL, *entry;
    char *text;
    (void)id;

    if (error != 0 || status < 200 || status > 299) {
        const char *body = party_response_get_body(res, NULL);
        party_room_log(room, PARTY_LOG_WARN, "webhook of %s: %s%.200s", tag,
                       error != 0 ? "" : "status ", error != 0 ? (body ? body : "") : "");
    }
    if (party_kv_get(room, "webhooks", &old, &old_len) == 0)
        list = cJSON_Parse(old);
    free(old);
    if (list == NULL)
        list = cJSON_CreateArray();
    entry = cJSON_CreateObject();
    if (list == NULL || entry == NULL) {
        cJSON_Delete(list);
        cJSON_Delete(entry);
        return;
    }
    cJSON_AddStringToObject(entry, "name", tag);
    cJSON_AddNumberToObject(entry, "status", status);
    cJSON_AddStringToObject(entry, "error", error != 0 ? party_strerror(error) : "");
    cJSON_AddNumberToObject(entry, "at", (double)party_now_ms(room));
    cJSON_AddItemToArray(list, entry);
    while (cJSON_GetArraySize(list) > WEBHOOKS_MAX)
        cJSON_DeleteItemFromArray(list, 0);
    text = cJSON_PrintUnformatted(list);
    cJSON_Delete(list);
    if (text != NULL)
        party_kv_put(room, "webhooks", text, strlen(text));
    free(text);
}

static int reminder_alarm(party_room *room) {
    return record_fired(room, "alarm", "", 0) == 0 ? 0 : -1;
}

static int add_schedule_json(const char *id, const char *name, int64_t next_ms, const void *payload,
                             size_t len, void *arg) {
    cJSON *entry = cJSON_CreateObject();
    (void)payload;
    (void)len;
    cJSON_AddStringToObject(entry, "id", id);
    cJSON_AddStringToObject(entry, "name", name);
    cJSON_AddNumberToObject(entry, "next", (double)next_ms);
    cJSON_AddItemToArray(arg, entry);
    return 0;
}

static void describe(party_room *room, party_response *res) {
    cJSON *json = cJSON_CreateObject(), *fired = NULL, *schedules = cJSON_CreateArray();
    void *text = NULL;
    size_t len;

    cJSON_AddStringToObject(json, "name", party_room_name(room) ? party_room_name(room) : "");
    cJSON_AddNumberToObject(json, "now", (double)party_now_ms(room));
    cJSON_AddNumberToObject(json, "alarm", (double)party_alarm_get(room));
    party_schedule_list(room, add_schedule_json, schedules);
    cJSON_AddItemToObject(json, "schedules", schedules);
    if (party_kv_get(room, "fired", &text, &len) == 0)
        fired = cJSON_Parse(text);
    free(text);
    cJSON_AddItemToObject(json, "fired", fired != NULL ? fired : cJSON_CreateArray());
    fired = NULL;
    if (party_kv_get(room, "webhooks", &text, &len) == 0)
        fired = cJSON_Parse(text);
    free(text);
    cJSON_AddItemToObject(json, "webhooks", fired != NULL ? fired : cJSON_CreateArray());
    respond_json(res, 200, json);
}

/* Bound on times and delays: some 3,000 years, so that now + a delay
 * cannot overflow. */
#define MS_MAX 100000000000000LL

/* A query parameter that must be a whole number of milliseconds: 1 and
 * *out, or 0 after answering 400 naming the parameter. */
static int query_ms(party_response *res, const char *param, const char *text, int64_t *out) {
    char *end, message[160];
    long long v;

    errno = 0;
    v = strtoll(text, &end, 10);
    /* strtoll would also take leading spaces and a '+'. */
    if ((text[0] == '-' || (text[0] >= '0' && text[0] <= '9')) && end != text && *end == '\0' &&
        errno == 0 && v >= -MS_MAX && v <= MS_MAX) {
        *out = v;
        return 1;
    }
    snprintf(message, sizeof(message),
             "%s: '%.40s' is not a whole number of milliseconds (at most 1e14)", param, text);
    respond_error(res, 400, message);
    return 0;
}

static void reminder_request(party_room *room, const party_request *req, party_response *res) {
    const char *method = party_request_method(req);
    const char *name = party_request_query(req, "name");
    const char *in = party_request_query(req, "in"), *at = party_request_query(req, "at");
    const char *every = party_request_query(req, "every"), *cron = party_request_query(req, "cron");
    const char *alarm_in = party_request_query(req, "alarm_in");
    const char *webhook = party_request_query(req, "webhook");
    char id[PARTY_ID_MAX] = "", *with_webhook = NULL;
    size_t len;
    const void *body = party_request_body(req, &len);
    cJSON *json;
    int64_t ms;
    int r;

    if (strcmp(method, "GET") == 0) {
        describe(room, res);
        return;
    }
    if (strcmp(method, "DELETE") == 0) {
        const char *del = party_request_query(req, "id");
        r = del != NULL ? party_schedule_cancel(room, del) : PARTY_EINVAL;
        if (r != 0)
            respond_error(res, r == PARTY_ENOTFOUND ? 404 : 400, party_strerror(r));
        else
            party_response_set_status(res, 204);
        return;
    }
    if (strcmp(method, "POST") != 0) {
        party_response_set_status(res, 405);
        return;
    }
    if (alarm_in != NULL) {
        int64_t when;
        if (!query_ms(res, "alarm_in", alarm_in, &ms))
            return;
        when = party_now_ms(room) + ms;
        r = party_alarm_set(room, when);
        if (r != 0) {
            respond_error(res, 400, party_strerror(r));
            return;
        }
        json = cJSON_CreateObject();
        cJSON_AddNumberToObject(json, "alarm", (double)when);
        respond_json(res, 201, json);
        return;
    }
    if (name == NULL)
        name = "reminder";
    if (webhook != NULL) {
        char why[400], message[480];
        size_t url_len = strlen(webhook);
        r = party_fetch_url_check(room, webhook, why, sizeof(why));
        if (r == PARTY_EPOLICY) {
            snprintf(message, sizeof(message), "%s: %s",
                     strstr(why, "outbound requests are off") != NULL ? "webhooks are off"
                                                                      : "webhook not allowed",
                     why);
            respond_error(res, 403, message);
            return;
        }
        if (r != 0 || strchr(webhook, '\n') != NULL || url_len > 2000) {
            respond_error(res, 400, "webhook: not an http:// or https:// URL");
            return;
        }
        with_webhook = malloc(WEBHOOK_MARK_LEN + url_len + 1 + len);
        if (with_webhook == NULL) {
            respond_error(res, 500, party_strerror(PARTY_ENOMEM));
            return;
        }
        memcpy(with_webhook, webhook_mark, WEBHOOK_MARK_LEN);
        memcpy(with_webhook + WEBHOOK_MARK_LEN, webhook, url_len);
        with_webhook[WEBHOOK_MARK_LEN + url_len] = '\n';
        if (len > 0)
            memcpy(with_webhook + WEBHOOK_MARK_LEN + url_len + 1, body, len);
        body = with_webhook;
        len += WEBHOOK_MARK_LEN + url_len + 1;
    }
    if (in != NULL) {
        if (!query_ms(res, "in", in, &ms)) {
            free(with_webhook);
            return;
        }
        r = party_schedule_after(room, ms, name, body, len, id);
    } else if (at != NULL) {
        if (!query_ms(res, "at", at, &ms)) {
            free(with_webhook);
            return;
        }
        r = party_schedule_at(room, ms, name, body, len, id);
    } else if (every != NULL) {
        if (!query_ms(res, "every", every, &ms)) {
            free(with_webhook);
            return;
        }
        r = party_schedule_every(room, ms, name, body, len, id);
    } else if (cron != NULL) {
        r = party_schedule_cron(room, cron, name, body, len, id);
    } else {
        free(with_webhook);
        respond_error(res, 400, "expected one of in, at, every, cron or alarm_in");
        return;
    }
    free(with_webhook);
    if (r != 0) {
        respond_error(res, 400, party_strerror(r));
        return;
    }
    json = cJSON_CreateObject();
    cJSON_AddStringToObject(json, "id", id);
    respond_json(res, 201, json);
}

static const party_def reminder_def = {
    .name = "reminder",
    .on_request = reminder_request,
    .on_alarm = reminder_alarm,
    .on_schedule = reminder_schedule,
    .on_response = reminder_response,
};

const party_def *party_builtin_reminder(void) {
    return &reminder_def;
}
