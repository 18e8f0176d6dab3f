/* cli: the client subcommands of the partyd binary — `partyd connect URL`
 * (a line-oriented WebSocket client on libuv and partyd's own codec) and
 * `partyd rooms` (the admin listing of rooms in memory). */
#ifndef PARTY_CLI_H
#define PARTY_CLI_H

/* Exit statuses shared by the subcommands. */
enum {
    PARTY__CLI_OK = 0,
    PARTY__CLI_FAILED = 1, /* could not connect, refused, or the connection broke */
    PARTY__CLI_USAGE = 2,  /* bad arguments */
};

/* `partyd connect [options] URL`; argv[0] is "connect". Returns the exit
 * status (see docs/operations.md, "partyd connect"). */
int party__cli_connect(int argc, char **argv);

/* `partyd rooms [options]`; argv[0] is "rooms". Returns the exit status. */
int party__cli_rooms(int argc, char **argv);

/* A TCP port given as text: decimal, 1 to 65535, nothing after it. The
 * port, or -1 if text is not one. */
int party__cli_port_parse(const char *text);

/* The exit status for a close code received or sent last: 0 for 1000 and
 * 1005 (no code), 1 for 1006 (no Close), 11-25 for 1001-1015, 100-255 for
 * 4000-4155, 3 for any other code. */
int party__cli_close_status(int code);

#endif
