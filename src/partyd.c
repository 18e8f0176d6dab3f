/* partyd: the daemon. Parses flags, registers the built-in parties and any
 * party loaded from a shared object, and runs the runtime until SIGINT or
 * SIGTERM. */
#include <dlfcn.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "party.h"
#include "../parties/parties.h"

#define MAX_LOADED_PARTIES 64

static const char usage_text[] =
    "usage: partyd [options]\n"
    "\n"
    "Serves real-time rooms at ws://HOST:PORT/PREFIX/<party>/<room> and\n"
    "http://HOST:PORT/PREFIX/<party>/<room>. Built-in parties: echo, chat, counter, reminder.\n"
    "\n"
    "  --host ADDR              listen address (default 127.0.0.1)\n"
    "  --port N                 listen port (default 1999; 0 picks a free one)\n"
    "  --prefix PATH            URL prefix of rooms (default parties)\n"
    "  --data DIR               data directory: one SQLite file per room\n"
    "                           (default ./data)\n"
    "  --durability MODE        full (default): fsync every commit; normal:\n"
    "                           survive a process crash, not a power loss\n"
    "  --idle-timeout SEC       evict a room with no connections after it was\n"
    "                           idle this long (default 60)\n"
    "  --hibernate-after SEC    hibernate an idle room of a hibernating party,\n"
    "                           keeping its connections (default 10)\n"
    "  --party NAME=FILE.so     load a party from a shared object exporting\n"
    "                           const party_def *party_module(void); repeatable\n"
    "  --max-message-bytes N    largest WebSocket message received (default 32M)\n"
    "  --max-header-bytes N     largest HTTP request head (default 16K)\n"
    "  --max-headers N          most HTTP header fields (default 100, at most 128)\n"
    "  --max-body-bytes N       largest HTTP request body (default 32M)\n"
    "  --send-queue-bytes N     unsent bytes per connection before it is dropped\n"
    "                           (default 64M)\n"
    "  --max-room-conns N       connections per room (default 32768)\n"
    "  --max-conns N            connections in all (default: the open-file limit,\n"
    "                           raised to its hard maximum, less 10% for room files)\n"
    "  --header-timeout SEC     time to receive a request head (default 10)\n"
    "  --close-timeout SEC      time to wait for a Close reply (default 5)\n"
    "  --log-level LEVEL        error, warn, info (default) or debug\n"
    "  --static DIR             serve files from DIR for paths outside the prefix\n"
    "  --cors                   answer CORS preflights and add CORS headers to the\n"
    "                           HTTP answers of every party (Allow-Origin: *)\n"
    "  --admin-token TOKEN      enable /_partyd/rooms for 'Authorization: Bearer TOKEN'\n"
    "                           (also read from PARTYD_ADMIN_TOKEN)\n"
    "  --version                print the version and exit\n"
    "  --help                   print this help and exit\n"
    "\n"
    "Sizes take an optional K, M or G suffix (powers of 1024).\n";

enum {
    OPT_HOST = 256,
    OPT_PORT,
    OPT_PREFIX,
    OPT_DATA,
    OPT_PARTY,
    OPT_MAX_MESSAGE,
    OPT_MAX_HEADER,
    OPT_MAX_HEADERS,
    OPT_MAX_BODY,
    OPT_SEND_QUEUE,
    OPT_MAX_ROOM_CONNS,
    OPT_MAX_CONNS,
    OPT_HEADER_TIMEOUT,
    OPT_DURABILITY,
    OPT_IDLE_TIMEOUT,
    OPT_HIBERNATE_AFTER,
    OPT_CLOSE_TIMEOUT,
    OPT_LOG_LEVEL,
    OPT_STATIC,
    OPT_CORS,
    OPT_ADMIN_TOKEN,
    OPT_VERSION,
    OPT_HELP,
};

static const struct option options[] = {
    {"host", required_argument, NULL, OPT_HOST},
    {"port", required_argument, NULL, OPT_PORT},
    {"prefix", required_argument, NULL, OPT_PREFIX},
    {"data", required_argument, NULL, OPT_DATA},
    {"party", required_argument, NULL, OPT_PARTY},
    {"max-message-bytes", required_argument, NULL, OPT_MAX_MESSAGE},
    {"max-header-bytes", required_argument, NULL, OPT_MAX_HEADER},
    {"max-headers", required_argument, NULL, OPT_MAX_HEADERS},
    {"max-body-bytes", required_argument, NULL, OPT_MAX_BODY},
    {"send-queue-bytes", required_argument, NULL, OPT_SEND_QUEUE},
    {"max-room-conns", required_argument, NULL, OPT_MAX_ROOM_CONNS},
    {"max-conns", required_argument, NULL, OPT_MAX_CONNS},
    {"header-timeout", required_argument, NULL, OPT_HEADER_TIMEOUT},
    {"durability", required_argument, NULL, OPT_DURABILITY},
    {"idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT},
    {"hibernate-after", required_argument, NULL, OPT_HIBERNATE_AFTER},
    {"close-timeout", required_argument, NULL, OPT_CLOSE_TIMEOUT},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"static", required_argument, NULL, OPT_STATIC},
    {"cors", no_argument, NULL, OPT_CORS},
    {"admin-token", required_argument, NULL, OPT_ADMIN_TOKEN},
    {"version", no_argument, NULL, OPT_VERSION},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

/* A party loaded from a shared object: a copy of its definition, so the
 * NAME given on the command line can replace the module's own. */
typedef struct loaded_party {
    party_def def;
    char *name;
    void *handle;
} loaded_party;

static loaded_party loaded[MAX_LOADED_PARTIES];
static size_t n_loaded;

static int parse_size(const char *flag, const char *text, size_t *out) {
    char *end;
    unsigned long long v;
    unsigned long long mult = 1;

    errno = 0;
    v = strtoull(text, &end, 10);
    if (end == text || errno != 0 || text[0] == '-')
        goto bad;
    if (*end == 'K' || *end == 'k')
        mult = 1024ULL, end++;
    else if (*end == 'M' || *end == 'm')
        mult = 1024ULL * 1024, end++;
    else if (*end == 'G' || *end == 'g')
        mult = 1024ULL * 1024 * 1024, end++;
    if (*end != '\0' || v == 0 || v > (unsigned long long)SIZE_MAX / mult)
        goto bad;
    *out = (size_t)(v * mult);
    return 0;
bad:
    fprintf(stderr, "partyd: %s: '%s' is not a size (a positive number, optional K/M/G)\n", flag,
            text);
    return -1;
}

static int parse_seconds(const char *flag, const char *text, double *out) {
    char *end;
    double v;
    errno = 0;
    v = strtod(text, &end);
    if (end == text || *end != '\0' || errno != 0 || !(v > 0) || v > 86400.0 * 365) {
        fprintf(stderr, "partyd: %s: '%s' is not a duration in seconds (> 0)\n", flag, text);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_port(const char *text, int *out) {
    char *end;
    long v;
    errno = 0;
    v = strtol(text, &end, 10);
    if (end == text || *end != '\0' || errno != 0 || v < 0 || v > 65535) {
        fprintf(stderr, "partyd: --port: '%s' is not a port number (0-65535)\n", text);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int parse_log_level(const char *text, int *out) {
    static const char *const names[] = {"error", "warn", "info", "debug"};
    int i;
    for (i = 0; i < 4; i++) {
        if (strcasecmp(text, names[i]) == 0) {
            *out = i;
            return 0;
        }
    }
    fprintf(stderr, "partyd: --log-level: '%s' is not one of error, warn, info, debug\n", text);
    return -1;
}

/* Loads NAME=PATH: dlopen the object and take its party_module(). */
static int load_party(const char *spec) {
    const char *eq = strchr(spec, '=');
    const party_def *(*module)(void);
    const party_def *def;
    loaded_party *lp;
    void *handle;

    if (eq == NULL || eq == spec || eq[1] == '\0') {
        fprintf(stderr, "partyd: --party: expected NAME=PATH, got '%s'\n", spec);
        return -1;
    }
    if (n_loaded == MAX_LOADED_PARTIES) {
        fprintf(stderr, "partyd: --party: at most %d parties can be loaded\n", MAX_LOADED_PARTIES);
        return -1;
    }
    handle = dlopen(eq + 1, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
        fprintf(stderr, "partyd: --party %s: cannot load: %s\n", spec, dlerror());
        return -1;
    }
    *(void **)&module = dlsym(handle, "party_module");
    if (module == NULL) {
        fprintf(stderr,
                "partyd: --party %s: the object does not export "
                "'const party_def *party_module(void)'\n",
                spec);
        dlclose(handle);
        return -1;
    }
    def = module();
    if (def == NULL) {
        fprintf(stderr, "partyd: --party %s: party_module() returned NULL\n", spec);
        dlclose(handle);
        return -1;
    }
    lp = &loaded[n_loaded];
    lp->def = *def;
    lp->name = strndup(spec, (size_t)(eq - spec));
    lp->handle = handle;
    if (lp->name == NULL) {
        dlclose(handle);
        return -1;
    }
    lp->def.name = lp->name;
    n_loaded++;
    return 0;
}

static int register_party(party_runtime *rt, const party_def *def) {
    int r = party_runtime_add(rt, def);
    if (r == PARTY_EEXIST)
        fprintf(stderr, "partyd: a party named '%s' is already registered\n", def->name);
    else if (r == PARTY_EINVAL)
        fprintf(stderr, "partyd: '%s' is not a valid party name (letters, digits, '-', '_')\n",
                def->name);
    else if (r != 0)
        fprintf(stderr, "partyd: cannot register party '%s': %s\n", def->name, party_strerror(r));
    return r;
}

static void unload_parties(void) {
    size_t i;
    for (i = 0; i < n_loaded; i++) {
        free(loaded[i].name);
        /* The objects stay mapped: a party may have registered atexit work
         * or left pointers in libraries; the process is ending anyway. */
    }
    n_loaded = 0;
}

/* Every connection is a file descriptor: use all the process may have. */
static void raise_file_limit(void) {
    struct rlimit lim;
    if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
        lim.rlim_cur = lim.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &lim);
    }
}

int main(int argc, char **argv) {
    party_config cfg;
    party_runtime *rt;
    const char *data_dir = "./data";
    size_t i;
    int opt, r, status = 0;

    party_config_init(&cfg);
    /* A token on the command line shows in ps; the environment does not. */
    cfg.admin_token = getenv("PARTYD_ADMIN_TOKEN");
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case OPT_HOST:
            cfg.host = optarg;
            break;
        case OPT_PORT:
            if (parse_port(optarg, &cfg.port) != 0)
                return 2;
            break;
        case OPT_PREFIX:
            cfg.prefix = optarg;
            break;
        case OPT_DATA:
            data_dir = optarg;
            break;
        case OPT_PARTY:
            if (load_party(optarg) != 0)
                return 1;
            break;
        case OPT_MAX_MESSAGE:
            if (parse_size("--max-message-bytes", optarg, &cfg.max_message_bytes) != 0)
                return 2;
            break;
        case OPT_MAX_HEADER:
            if (parse_size("--max-header-bytes", optarg, &cfg.max_header_bytes) != 0)
                return 2;
            break;
        case OPT_MAX_HEADERS:
            if (parse_size("--max-headers", optarg, &cfg.max_headers) != 0)
                return 2;
            break;
        case OPT_MAX_BODY:
            if (parse_size("--max-body-bytes", optarg, &cfg.max_body_bytes) != 0)
                return 2;
            break;
        case OPT_SEND_QUEUE:
            if (parse_size("--send-queue-bytes", optarg, &cfg.send_queue_bytes) != 0)
                return 2;
            break;
        case OPT_MAX_ROOM_CONNS:
            if (parse_size("--max-room-conns", optarg, &cfg.max_room_conns) != 0)
                return 2;
            break;
        case OPT_MAX_CONNS:
            if (parse_size("--max-conns", optarg, &cfg.max_conns) != 0)
                return 2;
            break;
        case OPT_HEADER_TIMEOUT:
            if (parse_seconds("--header-timeout", optarg, &cfg.header_timeout) != 0)
                return 2;
            break;
        case OPT_DURABILITY:
            if (strcmp(optarg, "full") == 0) {
                cfg.durability = PARTY_DURABILITY_FULL;
            } else if (strcmp(optarg, "normal") == 0) {
                cfg.durability = PARTY_DURABILITY_NORMAL;
            } else {
                fprintf(stderr, "partyd: --durability: '%s' is not full or normal\n", optarg);
                return 2;
            }
            break;
        case OPT_IDLE_TIMEOUT:
            if (parse_seconds("--idle-timeout", optarg, &cfg.idle_timeout) != 0)
                return 2;
            break;
        case OPT_HIBERNATE_AFTER:
            if (parse_seconds("--hibernate-after", optarg, &cfg.hibernate_after) != 0)
                return 2;
            break;
        case OPT_CLOSE_TIMEOUT:
            if (parse_seconds("--close-timeout", optarg, &cfg.close_timeout) != 0)
                return 2;
            break;
        case OPT_LOG_LEVEL:
            if (parse_log_level(optarg, &cfg.log_level) != 0)
                return 2;
            break;
        case OPT_STATIC:
            cfg.static_dir = optarg;
            break;
        case OPT_CORS:
            cfg.cors = 1;
            break;
        case OPT_ADMIN_TOKEN:
            cfg.admin_token = optarg;
            break;
        case OPT_VERSION:
            printf("partyd %s\n", PARTY_VERSION_STRING);
            return 0;
        case OPT_HELP:
            fputs(usage_text, stdout);
            return 0;
        default:
            fputs(usage_text, stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "partyd: unexpected argument '%s'\n%s", argv[optind], usage_text);
        return 2;
    }
    if (mkdir(data_dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "partyd: --data %s: %s\n", data_dir, strerror(errno));
        return 1;
    }

    if (cfg.static_dir != NULL) {
        struct stat st;
        if (stat(cfg.static_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
            fprintf(stderr, "partyd: --static %s: not a directory\n", cfg.static_dir);
            return 2;
        }
    }
    cfg.data_dir = data_dir;
    raise_file_limit();
    rt = party_runtime_new(&cfg);
    if (rt == NULL) {
        fprintf(stderr, "partyd: cannot create the runtime (out of memory)\n");
        return 1;
    }
    r = register_party(rt, party_builtin_echo());
    if (r == 0)
        r = register_party(rt, party_builtin_chat());
    if (r == 0)
        r = register_party(rt, party_builtin_counter());
    if (r == 0)
        r = register_party(rt, party_builtin_reminder());
    for (i = 0; r == 0 && i < n_loaded; i++)
        r = register_party(rt, &loaded[i].def);
    if (r == 0)
        r = party_runtime_listen(rt);
    if (r == 0)
        r = party_runtime_run(rt);
    if (r != 0) {
        if (r == PARTY_EADDR)
            fprintf(stderr, "partyd: cannot listen on %s:%d (see the log line above)\n", cfg.host,
                    cfg.port);
        status = 1;
    }
    party_runtime_free(rt);
    unload_parties();
    return status;
}
