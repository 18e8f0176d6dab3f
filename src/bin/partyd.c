/* partyd: the daemon. Parses flags and the config file, registers the
 * built-in parties --builtins leaves on and any party loaded from a shared
 * object, says which it serves, and runs the runtime until SIGINT or
 * SIGTERM. */
#include <cjson/cJSON.h>
#include <dlfcn.h>
#include <errno.h>
#include <getopt.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "addr.h"
#include "cli.h"
#include "fetch_allow.h"
#include "origin.h"
#include "log.h"
#include "party.h"
#include "parties.h"
#include "runtime.h"
#include "upgrade.h"
#include "alloc.h"

#define MAX_LOADED_PARTIES 64
#define MAX_THREADS 64 /* the runtime's ceiling on event loops */

/* The built-in parties, in the order they are registered and listed. */
static const party_def *(*const builtins[])(void) = {
    party_builtin_echo, party_builtin_chat, party_builtin_counter, party_builtin_reminder,
    party_builtin_demo, party_builtin_yjs,  party_builtin_todos,
};
#define N_BUILTINS (sizeof(builtins) / sizeof(builtins[0]))
#define BUILTINS_ALL ((1u << N_BUILTINS) - 1)
#define BUILTIN_NAMES "echo, chat, counter, reminder, demo, yjs, todos"

static const char usage_text[] =
    "usage: partyd [options]\n"
    "       partyd connect [options] ws://HOST:PORT/PATH   (see partyd connect --help)\n"
    "       partyd rooms [options]                        (see partyd rooms --help)\n"
    "\n"
    "Serves real-time rooms at ws://HOST:PORT/PREFIX/<party>/<room> and\n"
    "http://HOST:PORT/PREFIX/<party>/<room>.\n"
    "Built-in parties: " BUILTIN_NAMES " (see --builtins).\n"
    "\n"
    "  --host ADDR              listen address: an IP address or a host name\n"
    "                           (its first address; default 127.0.0.1)\n"
    "  --port N                 listen port (default 1999; 0 picks a free one)\n"
    "  --prefix PATH            URL prefix of rooms (default parties)\n"
    "  --agents-prefix PATH     second URL prefix of rooms, for Cloudflare Agents\n"
    "                           clients (default agents; \"\" turns it off)\n"
    "  --data DIR               data directory: one SQLite file per room\n"
    "                           (default ./data)\n"
    "  --store URI              where rooms' records live: postgres://... keeps\n"
    "                           them in PostgreSQL, shared by the nodes of a\n"
    "                           cluster (docs/cluster.md); default: SQLite in --data\n"
    "  --node NAME              this node's name in the cluster and in the\n"
    "                           X-Partyd-Node header of answers (default\n"
    "                           HOSTNAME:PORT); one running partyd per name\n"
    "  --store-connections N    connections a node opens to PostgreSQL for its\n"
    "                           rooms at most, besides one of its own (default 16)\n"
    "  --cluster-secret S       room-to-room requests to rooms other nodes own go\n"
    "                           to those nodes with this secret, and requests from\n"
    "                           other nodes are accepted with it (default: none)\n"
    "  --cluster-secret-file F  the same, from the first line of file F\n"
    "  --cluster-addr HOST:PORT where other nodes reach this one (default: the\n"
    "                           listen address)\n"
    "  --handoff-hold SEC       a node asked for a room it holds hands it over\n"
    "                           only after holding it this long (default 1)\n"
    "  --durability MODE        full (default): fsync every commit; normal:\n"
    "                           survive a process crash, not a power loss\n"
    "  --idle-timeout SEC       evict a room with no connections after it was\n"
    "                           idle this long (default 60)\n"
    "  --hibernate-after SEC    hibernate an idle room of a hibernating party,\n"
    "                           keeping its connections (default 10)\n"
    "  --party NAME=FILE.so     load a party from a shared object exporting\n"
    "                           const party_def *party_module(void); repeatable\n"
    "  --builtins LIST          built-in parties to serve: all (default), none, or\n"
    "                           names separated by commas (e.g. echo,counter)\n"
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
    "  --ping-interval SEC      ping WebSockets silent this long; close (1001) those\n"
    "                           still silent one interval later (default 30; 0: off)\n"
    "  --shutdown-timeout SEC   on SIGTERM/SIGINT, time for clients to answer the\n"
    "                           1001 Close before they are dropped (default 10);\n"
    "                           rooms' events and commits in flight always finish\n"
    "  --log-level LEVEL        error, warn, info (default) or debug\n"
    "  --log-format FORMAT      text (default) or json: one object per line\n"
    "  --static DIR             serve files from DIR for paths outside the prefix\n"
    "  --cors                   answer CORS preflights and add CORS headers to the\n"
    "                           HTTP answers of every party (Allow-Origin: *)\n"
    "  --tls-cert FILE          serve https and wss with this PEM certificate chain\n"
    "  --tls-key FILE           ... and this PEM private key (both needed)\n"
    "  --allowed-origins LIST   browser origins that may open WebSockets and read\n"
    "                           CORS answers: comma-separated scheme://host[:port],\n"
    "                           a host may start with *. for its subdomains\n"
    "                           (https://app.example.com,https://*.example.com);\n"
    "                           a handshake with another Origin gets 403; one\n"
    "                           without Origin is not refused (default: any)\n"
    "  --fetch-timeout SEC      a room-to-room request unanswered this long gets\n"
    "                           504 (default 30); also the default time of an\n"
    "                           outbound HTTP request\n"
    "  --fetch-allow LIST       what rooms may request over HTTP(S): comma-separated\n"
    "                           URL prefixes (https://api.example.com/v1/), host\n"
    "                           names, IPs or CIDRs with an optional port\n"
    "                           (127.0.0.1:8080, 10.0.0.0/8), or * (any host);\n"
    "                           private addresses only through an IP or CIDR\n"
    "                           entry (default: none, outbound requests are off)\n"
    "  --fetch-ca-file FILE     PEM CA certificates outbound HTTPS trusts (default:\n"
    "                           the system's)\n"
    "  --fetch-max-bytes N      largest outbound answer body (default 8M)\n"
    "  --fetch-max-in-flight N  outbound requests unanswered at once in the process;\n"
    "                           one more is refused (default 1024)\n"
    "  --proxy-protocol         every connection starts with a PROXY protocol header\n"
    "                           (v1 or v2, as HAProxy's send-proxy-v2) naming the\n"
    "                           client; one without a valid header is closed\n"
    "  --trusted-proxies LIST   addresses and CIDRs (comma-separated) whose\n"
    "                           Forwarded / X-Forwarded-For name the client\n"
    "                           (default: none; the headers are ignored)\n"
    "  --limit-addr-conns N     open connections per client address (IPv6: per\n"
    "                           /64); more get 429 (default 20000)\n"
    "  --limit-addr-rate N      new connections per second per client address;\n"
    "                           more get 429 with Retry-After (default 1000)\n"
    "  --limit-conn-msgs N      WebSocket messages per second per connection: over\n"
    "                           it reading pauses, then 1013 (default 1000)\n"
    "  --limit-conn-bytes N     WebSocket message bytes per second per connection\n"
    "                           (default 16M), as --limit-conn-msgs\n"
    "  --limit-addr-table N     client addresses counted at once; the least\n"
    "                           recently seen is forgotten first (default 65536)\n"
    "  --limit-exempt LIST      addresses and CIDRs no limit applies to (default\n"
    "                           127.0.0.1,::1: local proxies, health checks,\n"
    "                           benchmarks; \"\" for none)\n"
    "  --threads N              event-loop threads; each room runs on one of them\n"
    "                           (default: one per core; at most 64)\n"
    "  --admin-token TOKEN      enable /_partyd/rooms for 'Authorization: Bearer TOKEN'\n"
    "                           (also read from PARTYD_ADMIN_TOKEN)\n"
    "  --config FILE            read options from a JSON file: the keys are the\n"
    "                           flags' names, plus \"parties\": {NAME: {\"path\":\n"
    "                           \"lib.so\", \"hibernate\": true, \"cors\": true,\n"
    "                           \"props\": {...}, \"fetch-allow\": LIST,\n"
    "                           \"allowed-origins\": LIST, \"max-room-conns\": N,\n"
    "                           \"limit-conn-msgs\": N, \"limit-conn-bytes\": N}}\n"
    "                           (props: given to on_start; the others: the\n"
    "                           party's own, instead of the flag's);\n"
    "                           flags on the command line win\n"
    "  --version                print the version and exit\n"
    "  --help                   print this help and exit\n"
    "\n"
    "Sizes take an optional K, M or G suffix (powers of 1024).\n"
    "Exit status: 0 after SIGTERM/SIGINT; 1 when a party cannot be loaded or\n"
    "the address, TLS files or storage cannot be used; 2 for bad flags or\n"
    "config.\n";

enum {
    OPT_HOST = 256,
    OPT_PORT,
    OPT_PREFIX,
    OPT_AGENTS_PREFIX,
    OPT_DATA,
    OPT_STORE,
    OPT_NODE,
    OPT_TEST_NO_SELF_FENCE,
    OPT_HANDOFF_HOLD,
    OPT_STORE_CONNECTIONS,
    OPT_CLUSTER_SECRET,
    OPT_CLUSTER_SECRET_FILE,
    OPT_CLUSTER_ADDR,
    OPT_PARTY,
    OPT_BUILTINS,
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
    OPT_PING_INTERVAL,
    OPT_SHUTDOWN_TIMEOUT,
    OPT_LOG_LEVEL,
    OPT_LOG_FORMAT,
    OPT_STATIC,
    OPT_CORS,
    OPT_ADMIN_TOKEN,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_FETCH_TIMEOUT,
    OPT_FETCH_ALLOW,
    OPT_FETCH_CA_FILE,
    OPT_FETCH_MAX_BYTES,
    OPT_FETCH_MAX_IN_FLIGHT,
    OPT_PROXY_PROTOCOL,
    OPT_LIMIT_ADDR_CONNS,
    OPT_LIMIT_ADDR_RATE,
    OPT_LIMIT_CONN_MSGS,
    OPT_LIMIT_CONN_BYTES,
    OPT_LIMIT_ADDR_TABLE,
    OPT_LIMIT_EXEMPT,
    OPT_TRUSTED_PROXIES,
    OPT_ALLOWED_ORIGINS,
    OPT_THREADS,
    OPT_VERSION,
    OPT_HELP,
    OPT_CONFIG,
};

static const struct option options[] = {
    {"host", required_argument, NULL, OPT_HOST},
    {"port", required_argument, NULL, OPT_PORT},
    {"prefix", required_argument, NULL, OPT_PREFIX},
    {"agents-prefix", required_argument, NULL, OPT_AGENTS_PREFIX},
    {"data", required_argument, NULL, OPT_DATA},
    {"store", required_argument, NULL, OPT_STORE},
    {"node", required_argument, NULL, OPT_NODE},
    {"test-no-self-fence", no_argument, NULL, OPT_TEST_NO_SELF_FENCE},
    {"handoff-hold", required_argument, NULL, OPT_HANDOFF_HOLD},
    {"store-connections", required_argument, NULL, OPT_STORE_CONNECTIONS},
    {"cluster-secret", required_argument, NULL, OPT_CLUSTER_SECRET},
    {"cluster-secret-file", required_argument, NULL, OPT_CLUSTER_SECRET_FILE},
    {"cluster-addr", required_argument, NULL, OPT_CLUSTER_ADDR},
    {"party", required_argument, NULL, OPT_PARTY},
    {"builtins", required_argument, NULL, OPT_BUILTINS},
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
    {"ping-interval", required_argument, NULL, OPT_PING_INTERVAL},
    {"shutdown-timeout", required_argument, NULL, OPT_SHUTDOWN_TIMEOUT},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
    {"static", required_argument, NULL, OPT_STATIC},
    {"cors", no_argument, NULL, OPT_CORS},
    {"admin-token", required_argument, NULL, OPT_ADMIN_TOKEN},
    {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
    {"tls-key", required_argument, NULL, OPT_TLS_KEY},
    {"fetch-timeout", required_argument, NULL, OPT_FETCH_TIMEOUT},
    {"fetch-allow", required_argument, NULL, OPT_FETCH_ALLOW},
    {"fetch-ca-file", required_argument, NULL, OPT_FETCH_CA_FILE},
    {"fetch-max-bytes", required_argument, NULL, OPT_FETCH_MAX_BYTES},
    {"fetch-max-in-flight", required_argument, NULL, OPT_FETCH_MAX_IN_FLIGHT},
    {"proxy-protocol", no_argument, NULL, OPT_PROXY_PROTOCOL},
    {"limit-addr-conns", required_argument, NULL, OPT_LIMIT_ADDR_CONNS},
    {"limit-addr-rate", required_argument, NULL, OPT_LIMIT_ADDR_RATE},
    {"limit-conn-msgs", required_argument, NULL, OPT_LIMIT_CONN_MSGS},
    {"limit-conn-bytes", required_argument, NULL, OPT_LIMIT_CONN_BYTES},
    {"limit-addr-table", required_argument, NULL, OPT_LIMIT_ADDR_TABLE},
    {"limit-exempt", required_argument, NULL, OPT_LIMIT_EXEMPT},
    {"trusted-proxies", required_argument, NULL, OPT_TRUSTED_PROXIES},
    {"allowed-origins", required_argument, NULL, OPT_ALLOWED_ORIGINS},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"config", required_argument, NULL, OPT_CONFIG},
    {"version", no_argument, NULL, OPT_VERSION},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

/* A party loaded from a shared object: a copy of its definition, so the
 * NAME given on the command line can replace the module's own. */
typedef struct loaded_party {
    party_def def;
    char *name;
    char *path; /* as given, for the start-up log */
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

/* A count of things: 1 to a million, no suffix. */
static int parse_count(const char *flag, const char *text, size_t *out) {
    char *end;
    long v;
    errno = 0;
    v = strtol(text, &end, 10);
    if (end == text || *end != '\0' || errno != 0 || v < 1 || v > 1000000) {
        fprintf(stderr, "partyd: %s: '%s' is not a number between 1 and 1000000\n", flag, text);
        return -1;
    }
    *out = (size_t)v;
    return 0;
}

/* The first line of path (at most cap - 1 bytes, no line end): the
 * cluster secret. 0, or -1 after saying why. */
static int read_secret_file(const char *path, char *out, size_t cap) {
    FILE *f = fopen(path, "r");
    size_t n;
    if (f == NULL) {
        fprintf(stderr, "partyd: --cluster-secret-file %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (fgets(out, (int)cap, f) == NULL)
        out[0] = '\0';
    fclose(f);
    n = strcspn(out, "\r\n");
    out[n] = '\0';
    if (n == 0 || n == cap - 1) {
        fprintf(stderr,
                "partyd: --cluster-secret-file %s: its first line must hold the secret (1 to"
                " %zu bytes)\n",
                path, cap - 2);
        return -1;
    }
    return 0;
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

/* A rate: a positive number per second, fractions allowed (0.5: one
 * every two seconds), at most a billion. */
static int parse_rate(const char *flag, const char *text, double *out) {
    char *end;
    double v;
    errno = 0;
    v = strtod(text, &end);
    if (end == text || *end != '\0' || errno != 0 || !(v > 0) || v > 1e9) {
        fprintf(stderr, "partyd: %s: '%s' is not a rate (a number per second, > 0)\n", flag, text);
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

static int parse_threads(const char *text, int *out) {
    char *end;
    long v;
    errno = 0;
    v = strtol(text, &end, 10);
    if (end == text || *end != '\0' || errno != 0 || v < 1 || v > MAX_THREADS) {
        fprintf(stderr, "partyd: --threads: '%s' is not a number of threads between 1 and %d\n",
                text, MAX_THREADS);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* The built-in whose name is text[0..len) (case-insensitive, as party names
 * are in URLs), or -1. */
static int builtin_index(const char *text, size_t len) {
    size_t i;
    for (i = 0; i < N_BUILTINS; i++) {
        const char *name = builtins[i]()->name;
        if (strlen(name) == len && strncasecmp(name, text, len) == 0)
            return (int)i;
    }
    return -1;
}

/* --builtins: "all", "none", or names separated by commas (spaces around
 * them allowed), as a bit set over builtins[]. */
static int parse_builtins(const char *text, unsigned *out) {
    unsigned set = 0;
    const char *p = text;

    if (strcasecmp(text, "all") == 0) {
        *out = BUILTINS_ALL;
        return 0;
    }
    if (strcasecmp(text, "none") == 0) {
        *out = 0;
        return 0;
    }
    for (;;) {
        const char *start, *end;
        int i;
        while (*p == ' ')
            p++;
        start = p;
        while (*p != '\0' && *p != ',')
            p++;
        end = p;
        while (end > start && end[-1] == ' ')
            end--;
        i = builtin_index(start, (size_t)(end - start));
        if (i < 0) {
            fprintf(
                stderr,
                "partyd: --builtins: '%.*s' is not a built-in party (the built-ins: " BUILTIN_NAMES
                "; or all, or none)\n",
                (int)(end - start), start);
            return -1;
        }
        set |= 1u << i;
        if (*p == '\0')
            break;
        p++;
    }
    *out = set;
    return 0;
}

/* As party_runtime_add checks it: 1-64 bytes of letters, digits, '-', '_'. */
static int party_name_valid(const char *name, size_t len) {
    size_t i;
    if (len == 0 || len > 64)
        return 0;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return 0;
    }
    return 1;
}

/* Checks that the object at handle was built against this party.h: its
 * party_abi must be this ABI (or 2 or 3, read up to the next ABI's fields), as it is read before
 * party_module() is called (a definition of another layout would be misread). 0, or -1 after saying
 * why on stderr.
 */
static int check_party_abi(const char *what, const char *spec, void *handle) {
    const unsigned *abi = dlsym(handle, "party_abi");

    if (dlsym(handle, "party_module") == NULL) {
        fprintf(stderr,
                "partyd: %s %s: the object does not export "
                "'const party_def *party_module(void)': end the party with "
                "PARTY_MODULE(its party_def)\n",
                what, spec);
        return -1;
    }
    if (abi == NULL) {
        /* party.h 0.1 had no ABI number: every object without one is of it. */
        fprintf(stderr,
                "partyd: %s %s: built against party.h 0.1 (no party_abi); this partyd "
                "is %s (ABI %d): rebuild the party against this party.h\n",
                what, spec, PARTY_VERSION_STRING, PARTY_ABI_VERSION);
        return -1;
    }
    if (*abi != PARTY_ABI_VERSION && *abi != 2 && *abi != 3) {
        fprintf(stderr,
                "partyd: %s %s: built against party.h ABI %u; this partyd is %s "
                "(ABI %d): rebuild the party against this party.h\n",
                what, spec, *abi, PARTY_VERSION_STRING, PARTY_ABI_VERSION);
        return -1;
    }
    return 0;
}

/* Loads NAME=PATH: dlopen the object and take its party_module(). 0, or
 * the exit status: 2 for a malformed spec (a usage error), 1 for an object
 * that cannot be loaded or used (its ABI checked first: see
 * check_party_abi). what names the source in messages. */
static int load_party(const char *what, const char *spec) {
    const char *eq = strchr(spec, '=');
    const party_def *(*module)(void);
    const party_def *def;
    loaded_party *lp;
    unsigned abi;
    void *handle;

    if (eq == NULL || eq == spec || eq[1] == '\0') {
        fprintf(stderr, "partyd: %s: expected NAME=PATH, got '%s'\n", what, spec);
        return 2;
    }
    if (!party_name_valid(spec, (size_t)(eq - spec))) {
        fprintf(stderr,
                "partyd: %s: '%.*s' is not a valid party name (1 to 64 letters, digits, '-', "
                "'_')\n",
                what, (int)(eq - spec), spec);
        return 2;
    }
    if (n_loaded == MAX_LOADED_PARTIES) {
        fprintf(stderr, "partyd: %s: at most %d parties can be loaded\n", what, MAX_LOADED_PARTIES);
        return 2;
    }
    handle = dlopen(eq + 1, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
        fprintf(stderr, "partyd: %s %s: cannot load: %s\n", what, spec, dlerror());
        return 1;
    }
    if (check_party_abi(what, spec, handle) != 0) {
        dlclose(handle);
        return 1;
    }
    *(void **)&module = dlsym(handle, "party_module");
    def = module();
    if (def == NULL) {
        fprintf(stderr, "partyd: %s %s: party_module() returned NULL\n", what, spec);
        dlclose(handle);
        return 1;
    }
    abi = *(const unsigned *)dlsym(handle, "party_abi"); /* check_party_abi found it */
    if (def->abi != 0 && def->abi != abi) {
        fprintf(stderr,
                "partyd: --party %s: party_module() returned a party_def of ABI %u, the "
                "object's party_abi is %u: rebuild the party against one party.h\n",
                spec, def->abi, abi);
        dlclose(handle);
        return -1;
    }
    lp = &loaded[n_loaded];
    /* An ABI 2 (3) definition ends where ABI 3's (4's) fields begin: those
     * stay zero, and the runtime reads it as of its ABI (its abi field). */
    memset(&lp->def, 0, sizeof(lp->def));
    memcpy(&lp->def, def,
           abi == 2   ? offsetof(party_def, sync)
           : abi == 3 ? offsetof(party_def, max_room_conns)
                      : sizeof(*def));
    lp->name = party__strndup(spec, (size_t)(eq - spec));
    lp->path = party__strdup(eq + 1);
    lp->handle = handle;
    if (lp->name == NULL || lp->path == NULL) {
        party__free(lp->name);
        party__free(lp->path);
        dlclose(handle);
        fprintf(stderr, "partyd: %s %s: out of memory\n", what, spec);
        return 1;
    }
    lp->def.name = lp->name;
    n_loaded++;
    return 0;
}

static const party_def *with_overrides(const party_def *def);

/* Registers one party. 0, or the exit status: 2 for a name taken twice
 * (the configuration's mistake), 1 otherwise. */
static int register_party(party_runtime *rt, const party_def *def) {
    int r;
    def = with_overrides(def);
    r = party_runtime_add(rt, def);
    if (r == 0)
        return 0;
    if (r == PARTY_EEXIST) {
        int builtin = builtin_index(def->name, strlen(def->name)) >= 0;
        fprintf(stderr, "partyd: a party named '%s' is already registered%s\n", def->name,
                builtin ? " (a built-in: leave it out with --builtins)" : "");
        return 2;
    }
    fprintf(stderr, "partyd: cannot register party '%s': %s\n", def->name, party_strerror(r));
    return 1;
}

static void unload_parties(void) {
    size_t i;
    for (i = 0; i < n_loaded; i++) {
        party__free(loaded[i].name);
        party__free(loaded[i].path);
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

/* What the flags and the config file set. */
typedef struct options_state {
    party_config cfg;
    const char *data_dir;
    const char *store, *node;   /* --store, --node (NULL: SQLite; HOSTNAME:PORT) */
    int no_self_fence;          /* --test-no-self-fence */
    double handoff_hold;        /* --handoff-hold, seconds (0: the default) */
    unsigned store_connections; /* --store-connections (0: the default) */
    const char *cluster_secret; /* --cluster-secret, or the file's */
    const char *cluster_addr;   /* --cluster-addr */
    char secret_buf[256];       /* --cluster-secret-file's content */
    unsigned builtins;          /* bit i: builtins[i] is served */
} options_state;

/* Applies one option (from the command line or the config file). Returns
 * -1 to go on, or the exit status to end with. */
/* An allow-list is checked at start-up, so a typo stops partyd rather
 * than refusing requests later. 0, or 2 after a message. */
static int check_fetch_allow(const char *what, const char *text) {
    party__allow *allow = NULL;
    char why[400];
    int r = party__allow_parse(text, &allow, why, sizeof(why));
    party__allow_free(allow);
    if (r == 0)
        return 0;
    fprintf(stderr, "partyd: %s: %s\n", what, r == PARTY_EINVAL ? why : party_strerror(r));
    return 2;
}

/* The same for an origin allow-list. */
static int check_allowed_origins(const char *what, const char *text) {
    char why[400];
    if (party__origin_list_check(text, what, why, sizeof(why)) == 0)
        return 0;
    fprintf(stderr, "partyd: %s\n", why);
    return 2;
}

static int apply_option(int opt, const char *arg, options_state *o) {
    switch (opt) {
    case OPT_HOST:
        o->cfg.host = arg;
        break;
    case OPT_PORT:
        if (parse_port(arg, &o->cfg.port) != 0)
            return 2;
        break;
    case OPT_PREFIX:
        o->cfg.prefix = arg;
        break;
    case OPT_AGENTS_PREFIX:
        o->cfg.agents_prefix = arg;
        break;
    case OPT_DATA:
        o->data_dir = arg;
        break;
    case OPT_STORE:
        o->store = arg;
        break;
    case OPT_NODE:
        o->node = arg;
        break;
    case OPT_TEST_NO_SELF_FENCE:
        o->no_self_fence = 1;
        break;
    case OPT_CLUSTER_SECRET:
        o->cluster_secret = arg;
        break;
    case OPT_CLUSTER_SECRET_FILE:
        if (read_secret_file(arg, o->secret_buf, sizeof(o->secret_buf)) != 0)
            return 2;
        o->cluster_secret = o->secret_buf;
        break;
    case OPT_CLUSTER_ADDR:
        o->cluster_addr = arg;
        break;
    case OPT_STORE_CONNECTIONS: {
        size_t n;
        if (parse_count("--store-connections", arg, &n) != 0)
            return 2;
        o->store_connections = (unsigned)n;
        break;
    }
    case OPT_HANDOFF_HOLD:
        if (parse_seconds("--handoff-hold", arg, &o->handoff_hold) != 0)
            return 2;
        if (o->handoff_hold > 3600) {
            fprintf(stderr, "partyd: --handoff-hold %s: at most 3600 seconds\n", arg);
            return 2;
        }
        break;
    case OPT_PARTY: {
        int r = load_party("--party", arg);
        if (r != 0)
            return r;
        break;
    }
    case OPT_BUILTINS:
        if (parse_builtins(arg, &o->builtins) != 0)
            return 2;
        break;
    case OPT_MAX_MESSAGE:
        if (parse_size("--max-message-bytes", arg, &o->cfg.max_message_bytes) != 0)
            return 2;
        break;
    case OPT_MAX_HEADER:
        if (parse_size("--max-header-bytes", arg, &o->cfg.max_header_bytes) != 0)
            return 2;
        break;
    case OPT_MAX_HEADERS:
        if (parse_size("--max-headers", arg, &o->cfg.max_headers) != 0)
            return 2;
        break;
    case OPT_MAX_BODY:
        if (parse_size("--max-body-bytes", arg, &o->cfg.max_body_bytes) != 0)
            return 2;
        break;
    case OPT_SEND_QUEUE:
        if (parse_size("--send-queue-bytes", arg, &o->cfg.send_queue_bytes) != 0)
            return 2;
        break;
    case OPT_MAX_ROOM_CONNS:
        if (parse_size("--max-room-conns", arg, &o->cfg.max_room_conns) != 0)
            return 2;
        break;
    case OPT_MAX_CONNS:
        if (parse_size("--max-conns", arg, &o->cfg.max_conns) != 0)
            return 2;
        break;
    case OPT_HEADER_TIMEOUT:
        if (parse_seconds("--header-timeout", arg, &o->cfg.header_timeout) != 0)
            return 2;
        break;
    case OPT_DURABILITY:
        if (strcmp(arg, "full") == 0) {
            o->cfg.durability = PARTY_DURABILITY_FULL;
        } else if (strcmp(arg, "normal") == 0) {
            o->cfg.durability = PARTY_DURABILITY_NORMAL;
        } else {
            fprintf(stderr, "partyd: --durability: '%s' is not full or normal\n", arg);
            return 2;
        }
        break;
    case OPT_IDLE_TIMEOUT:
        if (parse_seconds("--idle-timeout", arg, &o->cfg.idle_timeout) != 0)
            return 2;
        break;
    case OPT_HIBERNATE_AFTER:
        if (parse_seconds("--hibernate-after", arg, &o->cfg.hibernate_after) != 0)
            return 2;
        break;
    case OPT_CLOSE_TIMEOUT:
        if (parse_seconds("--close-timeout", arg, &o->cfg.close_timeout) != 0)
            return 2;
        break;
    case OPT_PING_INTERVAL: {
        char *end;
        double zero = strtod(arg, &end);
        if (end != arg && *end == '\0' && zero == 0)
            o->cfg.ping_interval = 0; /* off */
        else if (parse_seconds("--ping-interval", arg, &o->cfg.ping_interval) != 0)
            return 2;
        break;
    }
    case OPT_SHUTDOWN_TIMEOUT:
        if (parse_seconds("--shutdown-timeout", arg, &o->cfg.shutdown_timeout) != 0)
            return 2;
        break;
    case OPT_LOG_LEVEL:
        if (parse_log_level(arg, &o->cfg.log_level) != 0)
            return 2;
        break;
    case OPT_LOG_FORMAT:
        if (strcmp(arg, "json") == 0 || strcmp(arg, "text") == 0) {
            o->cfg.log_json = strcmp(arg, "json") == 0;
        } else {
            fprintf(stderr, "partyd: --log-format: '%s' is not text or json\n", arg);
            return 2;
        }
        break;
    case OPT_STATIC:
        o->cfg.static_dir = arg;
        break;
    case OPT_CORS:
        o->cfg.cors = 1;
        break;
    case OPT_ADMIN_TOKEN:
        o->cfg.admin_token = arg;
        break;
    case OPT_TLS_CERT:
        o->cfg.tls_cert = arg;
        break;
    case OPT_TLS_KEY:
        o->cfg.tls_key = arg;
        break;
    case OPT_FETCH_TIMEOUT:
        if (parse_seconds("--fetch-timeout", arg, &o->cfg.fetch_timeout) != 0)
            return 2;
        break;
    case OPT_FETCH_ALLOW:
        if (check_fetch_allow("--fetch-allow", arg) != 0)
            return 2;
        o->cfg.fetch_allow = arg;
        break;
    case OPT_FETCH_CA_FILE:
        o->cfg.fetch_ca_file = arg;
        break;
    case OPT_FETCH_MAX_BYTES:
        if (parse_size("--fetch-max-bytes", arg, &o->cfg.fetch_max_bytes) != 0)
            return 2;
        break;
    case OPT_FETCH_MAX_IN_FLIGHT:
        if (parse_count("--fetch-max-in-flight", arg, &o->cfg.fetch_max_in_flight) != 0)
            return 2;
        break;
    case OPT_LIMIT_ADDR_CONNS:
        if (parse_count("--limit-addr-conns", arg, &o->cfg.limit_addr_conns) != 0)
            return 2;
        break;
    case OPT_LIMIT_ADDR_RATE:
        if (parse_rate("--limit-addr-rate", arg, &o->cfg.limit_addr_rate) != 0)
            return 2;
        break;
    case OPT_LIMIT_CONN_MSGS:
        if (parse_rate("--limit-conn-msgs", arg, &o->cfg.limit_conn_msgs) != 0)
            return 2;
        break;
    case OPT_LIMIT_CONN_BYTES: {
        size_t bytes;
        if (parse_size("--limit-conn-bytes", arg, &bytes) != 0)
            return 2;
        o->cfg.limit_conn_bytes = (double)bytes;
        break;
    }
    case OPT_LIMIT_ADDR_TABLE:
        if (parse_count("--limit-addr-table", arg, &o->cfg.limit_addr_table) != 0)
            return 2;
        break;
    case OPT_LIMIT_EXEMPT:
    case OPT_TRUSTED_PROXIES: {
        party__cidr_list list;
        if (party__cidr_list_parse(arg, &list) != 0) {
            fprintf(stderr,
                    "partyd: %s: '%s' is not a list of IP addresses and CIDRs "
                    "(e.g. 10.0.0.0/8,::1)\n",
                    opt == OPT_LIMIT_EXEMPT ? "--limit-exempt" : "--trusted-proxies", arg);
            return 2;
        }
        party__cidr_list_free(&list);
        if (opt == OPT_LIMIT_EXEMPT)
            o->cfg.limit_exempt = arg;
        else
            o->cfg.trusted_proxies = arg;
        break;
    }
    case OPT_PROXY_PROTOCOL:
        o->cfg.proxy_protocol = 1;
        break;
    case OPT_ALLOWED_ORIGINS:
        if (check_allowed_origins("--allowed-origins", arg) != 0)
            return 2;
        o->cfg.allowed_origins = arg;
        break;
    case OPT_THREADS:
        if (parse_threads(arg, &o->cfg.threads) != 0)
            return 2;
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
    return -1;
}

/* ---- the config file ----
 * A JSON object whose keys are the long flags' names ("port": 2000,
 * "max-message-bytes": "1M", "cors": true, "party": ["x=./x.so"]) plus
 * "parties": {"NAME": {"path": "lib.so", "hibernate": true, "cors": true,
 * "props": <any JSON>, "fetch-allow": LIST, "allowed-origins": LIST,
 * "max-room-conns": N, "limit-conn-msgs": N, "limit-conn-bytes": N}}
 * for per-party options. Flags given on the command line win. */

#define CONFIG_MAX_BYTES (1024 * 1024)
#define MAX_OVERRIDES 64

typedef struct party_override {
    const char *name;
    int loaded;              /* 1: the entry has a path, and the party was loaded from it */
    int hibernate;           /* -1: as the party says */
    int cors;                /* -1: as the party says */
    char *props;             /* NULL: as the party says; else compact JSON (or a string's text) */
    const char *fetch_allow; /* NULL: --fetch-allow; else the party's own list */
    size_t max_room_conns;   /* 0: --max-room-conns */
    double limit_conn_msgs;  /* 0: --limit-conn-msgs */
    double limit_conn_bytes; /* 0: --limit-conn-bytes */
    const char *allowed_origins; /* NULL: --allowed-origins; else the party's own list */
} party_override;

static const char *config_file; /* its path, for messages */
static cJSON *config_root;      /* kept: the config's strings stay in use */
/* The text of numbers given for options: kept too, since options such as
 * --admin-token and --prefix keep a pointer to their argument. */
static cJSON *config_numbers;
static party_override overrides[MAX_OVERRIDES];
static size_t n_overrides;
static party_def overridden[MAX_OVERRIDES];
static size_t n_overridden;

static void free_config_strings(void) {
    size_t i;
    for (i = 0; i < n_overrides; i++)
        party__free(overrides[i].props);
    cJSON_Delete(config_root);
    config_root = NULL;
    cJSON_Delete(config_numbers);
    config_numbers = NULL;
}

static const char *config_path(int argc, char **argv) {
    int i;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            return argv[i + 1];
        if (strncmp(argv[i], "--config=", 9) == 0)
            return argv[i] + 9;
        if (strcmp(argv[i], "--") == 0)
            break;
    }
    return NULL;
}

static int config_error(const char *path, const char *what, const char *key) {
    fprintf(stderr, "partyd: --config %s: %s%s%s%s\n", path, what, key ? " '" : "", key ? key : "",
            key ? "'" : "");
    return 2;
}

static int config_parties(const char *path, const cJSON *parties, options_state *o) {
    const cJSON *party;
    if (!cJSON_IsObject(parties))
        return config_error(path, "\"parties\" must be an object", NULL);
    cJSON_ArrayForEach(party, parties) {
        const cJSON *field;
        party_override *ov;
        if (!cJSON_IsObject(party))
            return config_error(path, "a party's options must be an object:", party->string);
        if (n_overrides == MAX_OVERRIDES)
            return config_error(path, "too many parties", NULL);
        ov = &overrides[n_overrides++];
        ov->name = party->string;
        ov->hibernate = ov->cors = -1;
        ov->props = NULL;
        ov->fetch_allow = NULL;
        ov->max_room_conns = 0;
        ov->limit_conn_msgs = ov->limit_conn_bytes = 0;
        ov->allowed_origins = NULL;
        ov->loaded = 0;
        cJSON_ArrayForEach(field, party) {
            if (strcmp(field->string, "path") == 0 && cJSON_IsString(field)) {
                char spec[4096], what[4200];
                int r;
                snprintf(spec, sizeof(spec), "%s=%s", party->string, field->valuestring);
                snprintf(what, sizeof(what), "--config %s: party '%s': path", path, party->string);
                r = load_party(what, spec);
                if (r != 0)
                    return r;
                ov->loaded = 1;
            } else if (strcmp(field->string, "hibernate") == 0 && cJSON_IsBool(field)) {
                ov->hibernate = cJSON_IsTrue(field);
            } else if (strcmp(field->string, "cors") == 0 && cJSON_IsBool(field)) {
                ov->cors = cJSON_IsTrue(field);
            } else if (strcmp(field->string, "fetch-allow") == 0 && cJSON_IsString(field)) {
                char what[300];
                snprintf(what, sizeof(what), "--config %s: party '%s': fetch-allow", path,
                         party->string);
                if (check_fetch_allow(what, field->valuestring) != 0)
                    return 2;
                ov->fetch_allow = field->valuestring;
            } else if ((strcmp(field->string, "max-room-conns") == 0 ||
                        strcmp(field->string, "limit-conn-msgs") == 0 ||
                        strcmp(field->string, "limit-conn-bytes") == 0) &&
                       (cJSON_IsNumber(field) || cJSON_IsString(field))) {
                char what[300], number[64];
                const char *text = field->valuestring;
                size_t n = 0;
                int bad;
                if (cJSON_IsNumber(field)) {
                    snprintf(number, sizeof(number), "%.17g", field->valuedouble);
                    text = number;
                }
                snprintf(what, sizeof(what), "--config %s: party '%s': %s", path, party->string,
                         field->string);
                if (field->string[0] == 'm') {
                    bad = parse_count(what, text, &n) != 0;
                    ov->max_room_conns = n;
                } else if (strcmp(field->string, "limit-conn-msgs") == 0) {
                    bad = parse_rate(what, text, &ov->limit_conn_msgs) != 0;
                } else {
                    bad = parse_size(what, text, &n) != 0;
                    ov->limit_conn_bytes = (double)n;
                }
                if (bad)
                    return 2;
            } else if (strcmp(field->string, "allowed-origins") == 0 && cJSON_IsString(field)) {
                char what[300];
                snprintf(what, sizeof(what), "--config %s: party '%s': allowed-origins", path,
                         party->string);
                if (check_allowed_origins(what, field->valuestring) != 0)
                    return 2;
                ov->allowed_origins = field->valuestring;
            } else if (strcmp(field->string, "props") == 0 && !cJSON_IsNull(field)) {
                /* Any JSON: on_start gets it compact; a string, as its text. */
                party__free(ov->props);
                ov->props = cJSON_IsString(field) ? party__strdup(field->valuestring)
                                                  : cJSON_PrintUnformatted(field);
                if (ov->props == NULL)
                    return config_error(path, "out of memory reading props of", party->string);
            } else {
                fprintf(stderr,
                        "partyd: --config %s: party '%s': unknown or mistyped option '%s' "
                        "(path: string, hibernate: bool, cors: bool, props: any JSON, "
                        "fetch-allow: string, allowed-origins: string, max-room-conns, "
                        "limit-conn-msgs, limit-conn-bytes: number)\n",
                        path, party->string, field->string);
                return 2;
            }
        }
    }
    (void)o;
    return -1;
}

static int config_value(const char *path, const struct option *opt, const cJSON *value,
                        options_state *o) {
    char number[64];
    cJSON *text;
    if (opt->has_arg == no_argument) {
        if (!cJSON_IsBool(value))
            return config_error(path, "expected true or false for", opt->name);
        /* A flag reads no argument; "" keeps arg a string for every option. */
        return cJSON_IsTrue(value) ? apply_option(opt->val, "", o) : -1;
    }
    if (cJSON_IsString(value))
        return apply_option(opt->val, value->valuestring, o);
    if (cJSON_IsNumber(value)) {
        snprintf(number, sizeof(number), "%.17g", value->valuedouble);
        if (config_numbers == NULL)
            config_numbers = cJSON_CreateArray();
        text = cJSON_CreateString(number);
        if (config_numbers == NULL || text == NULL || !cJSON_AddItemToArray(config_numbers, text)) {
            cJSON_Delete(text);
            return config_error(path, "out of memory reading", opt->name);
        }
        return apply_option(opt->val, text->valuestring, o);
    }
    return config_error(path, "expected a string or a number for", opt->name);
}

/* "builtins": ["echo", "chat"]: the list --builtins takes, as an array
 * ([] serves none). -1 to go on, else the exit status. */
static int config_builtins(const char *path, const cJSON *list, options_state *o) {
    char names[512] = "";
    size_t used = 0;
    const cJSON *each;

    cJSON_ArrayForEach(each, list) {
        int n;
        if (!cJSON_IsString(each))
            return config_error(path, "expected a string or an array of names for", "builtins");
        n = snprintf(names + used, sizeof(names) - used, "%s%s", used > 0 ? "," : "",
                     each->valuestring);
        if (n < 0 || (size_t)n >= sizeof(names) - used)
            return config_error(path, "too long a list for", "builtins");
        used += (size_t)n;
    }
    return apply_option(OPT_BUILTINS, used > 0 ? names : "none", o);
}

/* Reads --config FILE if given. -1 to go on, else the exit status. */
static int apply_config_file(int argc, char **argv, options_state *o) {
    const char *path = config_path(argc, argv);
    const cJSON *item;
    char *text;
    FILE *f;
    size_t n;
    int r;

    config_file = path;
    if (path == NULL)
        return -1;
    f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "partyd: --config %s: %s\n", path, strerror(errno));
        return 2;
    }
    text = party__malloc(CONFIG_MAX_BYTES + 1);
    n = text != NULL ? fread(text, 1, CONFIG_MAX_BYTES + 1, f) : 0;
    fclose(f);
    if (text == NULL || n > CONFIG_MAX_BYTES) {
        party__free(text);
        return config_error(path, "larger than 1 MiB (or out of memory)", NULL);
    }
    text[n] = '\0';
    config_root = cJSON_ParseWithLength(text, n);
    if (config_root == NULL) {
        const char *at = cJSON_GetErrorPtr();
        size_t line = 1, i;
        for (i = 0; at != NULL && text + i < at && i < n; i++)
            line += text[i] == '\n';
        party__free(text);
        fprintf(stderr, "partyd: --config %s: not valid JSON (near line %zu)\n", path, line);
        return 2;
    }
    party__free(text);
    if (!cJSON_IsObject(config_root))
        return config_error(path, "the top level must be an object", NULL);
    cJSON_ArrayForEach(item, config_root) {
        const struct option *opt;
        if (strcmp(item->string, "parties") == 0) {
            r = config_parties(path, item, o);
            if (r >= 0)
                return r;
            continue;
        }
        if (strcmp(item->string, "builtins") == 0 && cJSON_IsArray(item)) {
            r = config_builtins(path, item, o);
            if (r >= 0)
                return r;
            continue;
        }
        for (opt = options; opt->name != NULL; opt++)
            if (strcmp(opt->name, item->string) == 0)
                break;
        if (opt->name == NULL || opt->val == OPT_CONFIG || opt->val == OPT_HELP ||
            opt->val == OPT_VERSION)
            return config_error(path, "unknown key", item->string);
        if (cJSON_IsArray(item)) {
            const cJSON *each;
            cJSON_ArrayForEach(each, item) {
                r = config_value(path, opt, each, o);
                if (r >= 0)
                    return r;
            }
        } else {
            r = config_value(path, opt, item, o);
            if (r >= 0)
                return r;
        }
    }
    return -1;
}

/* The definition to register: a copy with the config's per-party options
 * when it has any. */
static const party_def *with_overrides(const party_def *def) {
    size_t i;
    for (i = 0; i < n_overrides; i++) {
        if (strcasecmp(overrides[i].name, def->name) == 0 && n_overridden < MAX_OVERRIDES) {
            party_def *copy = &overridden[n_overridden++];
            *copy = *def;
            if (overrides[i].hibernate >= 0)
                copy->hibernate = overrides[i].hibernate;
            if (overrides[i].cors >= 0)
                copy->cors = overrides[i].cors ? PARTY_CORS_ON : PARTY_CORS_OFF;
            if (overrides[i].props != NULL)
                copy->props = overrides[i].props;
            if (overrides[i].fetch_allow != NULL)
                copy->fetch_allow = overrides[i].fetch_allow;
            if (overrides[i].max_room_conns != 0)
                copy->max_room_conns = overrides[i].max_room_conns;
            if (overrides[i].limit_conn_msgs != 0)
                copy->limit_conn_msgs = overrides[i].limit_conn_msgs;
            if (overrides[i].limit_conn_bytes != 0)
                copy->limit_conn_bytes = overrides[i].limit_conn_bytes;
            if (overrides[i].allowed_origins != NULL)
                copy->allowed_origins = overrides[i].allowed_origins;
            /* A copy is a whole struct of this ABI (a loaded older one was
             * copied zero-filled), so its limits and origins are read too. */
            if (overrides[i].max_room_conns != 0 || overrides[i].limit_conn_msgs != 0 ||
                overrides[i].limit_conn_bytes != 0 || overrides[i].allowed_origins != NULL)
                copy->abi = PARTY_ABI_VERSION;
            return copy;
        }
    }
    return def;
}

/* The runtime refused --data: another process holds its lock. Names the
 * holder by the pid it wrote in the lock file. */
static void report_data_in_use(const char *data_dir) {
    char path[4096], text[32] = "";
    FILE *f;
    long pid = 0;

    snprintf(path, sizeof(path), "%s/LOCK", data_dir);
    f = fopen(path, "r");
    if (f != NULL) {
        if (fgets(text, sizeof(text), f) != NULL)
            pid = strtol(text, NULL, 10);
        fclose(f);
    }
    if (pid > 0)
        fprintf(stderr, "partyd: --data %s is in use by another partyd (pid %ld; lock file %s)\n",
                data_dir, pid, path);
    else
        fprintf(stderr, "partyd: --data %s is in use by another partyd (lock file %s)\n", data_dir,
                path);
}

/* The names of the parties served (the built-ins left on, then those
 * loaded), comma-separated, into buf. */
static void served_names(const options_state *o, char *buf, size_t size) {
    size_t used = 0, i;
    buf[0] = '\0';
    for (i = 0; i < N_BUILTINS + n_loaded && used < size; i++) {
        const char *name;
        int n;
        if (i < N_BUILTINS && !(o->builtins & (1u << i)))
            continue;
        name = i < N_BUILTINS ? builtins[i]()->name : loaded[i - N_BUILTINS].name;
        n = snprintf(buf + used, size - used, "%s%s", used > 0 ? ", " : "", name);
        if (n < 0)
            break;
        used += (size_t)n;
    }
    if (used == 0)
        snprintf(buf, size, "none");
}

/* Every "parties" entry of the config file must name a party that is
 * served: one loaded from a path, or a built-in left on. Runs once every
 * party is known. -1 to go on, else the exit status. */
static int check_overrides(const options_state *o) {
    char names[1024];
    size_t i, j;

    for (i = 0; i < n_overrides; i++) {
        const char *name = overrides[i].name;
        int b;
        if (overrides[i].loaded)
            continue;
        for (j = 0; j < n_loaded; j++)
            if (strcasecmp(loaded[j].name, name) == 0)
                break;
        if (j < n_loaded)
            continue;
        b = builtin_index(name, strlen(name));
        if (b >= 0 && (o->builtins & (1u << b)))
            continue;
        if (b >= 0) {
            fprintf(stderr,
                    "partyd: --config %s: \"parties\" has options for '%s', a built-in party "
                    "that --builtins turns off: add it to --builtins or remove the entry\n",
                    config_file, name);
        } else {
            served_names(o, names, sizeof(names));
            fprintf(stderr,
                    "partyd: --config %s: \"parties\" has options for '%s', but no party has "
                    "that name (served: %s); give the entry a \"path\" to load it\n",
                    config_file, name, names);
        }
        return 2;
    }
    return -1;
}

/* Registers the built-ins left on, then the loaded parties. 0, or the exit
 * status. */
static int register_parties(party_runtime *rt, const options_state *o) {
    size_t i;
    int r = 0;
    for (i = 0; r == 0 && i < N_BUILTINS; i++)
        if (o->builtins & (1u << i))
            r = register_party(rt, builtins[i]());
    for (i = 0; r == 0 && i < n_loaded; i++)
        r = register_party(rt, &loaded[i].def);
    return r;
}

/* Says at start what is served: the built-ins by name, each loaded party
 * with its file; and warns when built-ins are served next to parties of
 * the user's own, as anyone who reaches the port can use them. */
static void log_parties(const options_state *o) {
    char names[256] = "";
    size_t used = 0, i;

    for (i = 0; i < N_BUILTINS; i++) {
        if (o->builtins & (1u << i)) {
            int n = snprintf(names + used, sizeof(names) - used, "%s%s", used > 0 ? ", " : "",
                             builtins[i]()->name);
            if (n > 0 && (size_t)n < sizeof(names) - used)
                used += (size_t)n;
        }
    }
    party__log_write(o->cfg.log_level, o->cfg.log_json, PARTY__LOG_INFO, "built-in parties: %s",
                     used > 0 ? names : "none (--builtins none)");
    for (i = 0; i < n_loaded; i++)
        party__log_write(o->cfg.log_level, o->cfg.log_json, PARTY__LOG_INFO,
                         "party %s: loaded from %s", loaded[i].name, loaded[i].path);
    if (n_loaded > 0 && used > 0)
        party__log_write(o->cfg.log_level, o->cfg.log_json, PARTY__LOG_WARN,
                         "the built-in parties %s are served next to the loaded ones: anyone "
                         "who reaches this port can use them (docs/security.md says what each "
                         "exposes); --builtins none, or a list of the ones wanted, turns the "
                         "others off",
                         names);
}

/* --store and --node: the runtime's storage backend. 0, or the exit status. */
static int use_store(party_runtime *rt, const options_state *o) {
    char node[300];
    int r;
    if (o->store == NULL || o->store[0] == '\0') {
        /* A single process named with --node says its name in answers. */
        if (o->node != NULL && party__runtime_set_store(rt, NULL, o->node) != 0) {
            fprintf(stderr, "partyd: --node: out of memory\n");
            return 1;
        }
        return 0;
    }
    if (o->node == NULL) {
        char host[256] = "localhost";
        (void)gethostname(host, sizeof(host) - 1);
        host[sizeof(host) - 1] = '\0';
        /* --port 0 picks a port only later: the pid tells such nodes apart. */
        if (o->cfg.port != 0)
            snprintf(node, sizeof(node), "%s:%d", host, o->cfg.port);
        else
            snprintf(node, sizeof(node), "%s:pid%ld", host, (long)getpid());
    }
    r = party__runtime_set_store(rt, o->store, o->node != NULL ? o->node : node);
    if (r == 0 && o->no_self_fence)
        party__runtime_set_no_self_fence(rt);
    if (r == 0 && (o->cluster_secret != NULL || o->cluster_addr != NULL) &&
        party__runtime_set_cluster(rt, o->cluster_secret, o->cluster_addr) != 0) {
        fprintf(stderr, "partyd: --cluster-secret: out of memory\n");
        return 1;
    }
    if (r == 0 && o->store_connections > 0)
        party__runtime_set_store_connections(rt, o->store_connections);
    if (r == 0 && o->handoff_hold > 0)
        party__runtime_set_handoff_hold(rt, (unsigned)(o->handoff_hold * 1000.0 + 0.5));
    if (r == PARTY_EINVAL) {
        fprintf(stderr, "partyd: --store %s: not a postgres:// or postgresql:// URI\n", o->store);
        return 2;
    }
    if (r != 0) {
        fprintf(stderr, "partyd: --store: %s\n", party_strerror(r));
        return 1;
    }
    return 0;
}

/* The binary an upgrade starts: the file this process was started from,
 * as the kernel names it now (so a relative argv[0] or a later chdir does
 * not matter), or argv[0] made absolute. Into out (size bytes). */
static void own_path(const char *argv0, char *out, size_t size) {
    ssize_t n = readlink("/proc/self/exe", out, size - 1);
    if (n > 0) {
        out[n] = '\0';
        return;
    }
    if (realpath(argv0, out) == NULL)
        snprintf(out, size, "%s", argv0);
}

/* A process started by an upgrade gets its end of the hand-over socket
 * in PARTYD_UPGRADE_FD; -1 otherwise. Taken out of the environment, so
 * that what this process starts does not see it. */
static int upgrade_fd(void) {
    const char *v = getenv(PARTY__UPGRADE_FD_ENV);
    char *end;
    long fd;

    if (v == NULL)
        return -1;
    fd = strtol(v, &end, 10);
    unsetenv(PARTY__UPGRADE_FD_ENV);
    return end != v && *end == '\0' && fd >= 0 && fd < 65536 ? (int)fd : -1;
}

int main(int argc, char **argv) {
    options_state o;
    party_runtime *rt;
    int opt, r, status = 0, handover = upgrade_fd();
    char exe[4096];

    /* Client subcommands: they share the binary, not the daemon's flags. */
    if (argc > 1 && strcmp(argv[1], "connect") == 0)
        return party__cli_connect(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "rooms") == 0)
        return party__cli_rooms(argc - 1, argv + 1);

    own_path(argv[0], exe, sizeof(exe));
    party_config_init(&o.cfg);
    o.data_dir = "./data";
    o.store = o.node = NULL;
    o.no_self_fence = 0;
    o.handoff_hold = 0;
    o.store_connections = 0;
    o.cluster_secret = o.cluster_addr = NULL;
    o.builtins = BUILTINS_ALL; /* the quick start serves them all */
    o.cfg.threads = 0;         /* the daemon uses every core */
    /* A token on the command line shows in ps; the environment does not. */
    o.cfg.admin_token = getenv("PARTYD_ADMIN_TOKEN");
    /* The config file first, so that flags override it. */
    r = apply_config_file(argc, argv, &o);
    if (r >= 0)
        return r;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        if (opt == OPT_CONFIG)
            continue; /* already read */
        r = apply_option(opt, optarg, &o);
        if (r >= 0)
            return r;
    }
    if (optind < argc) {
        fprintf(stderr, "partyd: unexpected argument '%s'\n%s", argv[optind], usage_text);
        return 2;
    }
    /* Every party is known now: the built-ins left on and those loaded. */
    r = check_overrides(&o);
    if (r >= 0)
        return r;
    if (o.cfg.static_dir != NULL) {
        struct stat st;
        if (stat(o.cfg.static_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
            fprintf(stderr, "partyd: --static %s: not a directory\n", o.cfg.static_dir);
            return 2;
        }
    }
    o.cfg.data_dir = o.data_dir;
    raise_file_limit();
    rt = party_runtime_new(&o.cfg);
    if (rt == NULL) {
        fprintf(stderr, "partyd: cannot create the runtime (out of memory)\n");
        return 1;
    }
    status = use_store(rt, &o);
    if (status == 0)
        status = register_parties(rt, &o);
    if (status == 0) {
        log_parties(&o);
        r = party__upgrade_enable(rt, exe, argv);
        /* Started by an upgrade: the listening socket and the data
         * directory come from the process it replaces. */
        if (r == 0)
            r = handover >= 0 ? party__upgrade_receive(rt, handover) : party_runtime_listen(rt);
        else
            fprintf(stderr, "partyd: %s\n", party_strerror(r));
        if (handover >= 0 && r != 0)
            fprintf(stderr, "partyd: the upgrade did not take over (see the log lines above); "
                            "the running partyd goes on serving\n");
        else if (r == PARTY_EADDR)
            fprintf(stderr,
                    strchr(o.cfg.host, ':') != NULL
                        ? "partyd: cannot listen on [%s]:%d (see the log line above)\n"
                        : "partyd: cannot listen on %s:%d (see the log line above)\n",
                    o.cfg.host, o.cfg.port);
        else if (r == PARTY_EBUSY)
            report_data_in_use(o.data_dir);
        else if (r == PARTY_EIO && o.store != NULL)
            fprintf(stderr, "partyd: --store: cannot use it (see the log line above)\n");
        else if (r == PARTY_EIO)
            fprintf(stderr, "partyd: --data %s: cannot use it (see the log line above)\n",
                    o.data_dir);
        else if (r == PARTY_EINVAL)
            fprintf(stderr, "partyd: cannot set up TLS (see the log line above)\n");
        else if (r != 0)
            fprintf(stderr, "partyd: cannot listen: %s\n", party_strerror(r));
        if (r == 0 && (r = party_runtime_run(rt)) != 0)
            fprintf(stderr, "partyd: cannot serve: %s (see the log lines above)\n",
                    party_strerror(r));
        status = r != 0 ? 1 : 0;
    }
    party_runtime_free(rt);
    unload_parties();
    free_config_strings();
    return status;
}
