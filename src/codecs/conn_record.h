/* conn_record: the explicit, versioned record an upgrade hands a
 * connection over in (DESIGN.md D3, D6), never struct bytes. A record is a
 * header (magic, version, kind, body length) and tagged fields, each a
 * type, a length and its bytes; a decoder skips the types it does not
 * know, and refuses a version it does not know. Pure: no I/O, no
 * allocation; decoded fields point into the input. */
#ifndef PARTY_CONN_RECORD_H
#define PARTY_CONN_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* The record version this build writes and reads. A build that does not
 * know the version of a record it is handed refuses it. */
#define PARTY__CONN_RECORD_VERSION 1
/* Tags besides the id a record may carry (party.h's PARTY_MAX_TAGS - 1). */
#define PARTY__CONN_RECORD_MAX_TAGS 9
/* Bytes of the header: magic "PCR\0", version u16, kind u16, body u32. */
#define PARTY__CONN_RECORD_HEADER 12

typedef enum party__conn_record_kind {
    PARTY__CONN_RECORD_WS = 1,   /* an open WebSocket in a room */
    PARTY__CONN_RECORD_HTTP = 2, /* an idle (keep-alive) HTTP connection */
} party__conn_record_kind;

/* Flags of a record. */
enum {
    PARTY__CONN_RECORD_READONLY = 1, /* party_conn_set_readonly was set */
    PARTY__CONN_RECORD_INTERNAL = 2, /* opened by the runtime itself */
    /* The peer address is the client its first request named (the limits
     * count the connection for it); without it, an HTTP connection's
     * client is named by its next request. */
    PARTY__CONN_RECORD_CLIENT_KNOWN = 4,
    /* HTTP: its PROXY protocol header has not all come; input is what came
     * of it, and the peer address is the socket's. */
    PARTY__CONN_RECORD_PROXY_PENDING = 8,
};

typedef struct party__conn_record {
    unsigned version; /* set by decode; encode writes PARTY__CONN_RECORD_VERSION */
    party__conn_record_kind kind;
    uint32_t flags;
    /* The client's address (party_conn_remote_addr's: a PROXY header's or
     * a trusted proxy's client, else the socket's peer): family 4 or 6 (0:
     * unknown), the address's 4 or 16 bytes, the port. */
    uint8_t peer_family;
    uint8_t peer_addr[16];
    uint16_t peer_port;
    party__slice id, uri;                           /* WS: the connection's id and uri */
    party__slice party, room_id, room_name;         /* WS: its room (room_name may be empty) */
    party__slice tags[PARTY__CONN_RECORD_MAX_TAGS]; /* WS: tags besides the id */
    size_t n_tags;
    party__slice state;  /* WS: party_conn_set_state's bytes */
    party__slice output; /* bytes queued and not yet written, in order */
    party__slice input;  /* bytes read and not yet consumed (a partial frame or request) */
    /* WS: a fragmented message being assembled: its opcode (0: none), the
     * UTF-8 validation state of a text message, and the fragments so far. */
    uint8_t msg_opcode;
    uint32_t utf8_state;
    party__slice msg;
} party__conn_record;

/* Bytes rec takes encoded. */
size_t party__conn_record_size(const party__conn_record *rec);
/* Encodes rec (PARTY__CONN_RECORD_VERSION) into out: the bytes written,
 * or 0 when cap is too small or a field is over its limit (more tags than
 * PARTY__CONN_RECORD_MAX_TAGS, a field over 4 GiB - 1). */
size_t party__conn_record_encode(const party__conn_record *rec, char *out, size_t cap);

/* Reads the version of the record at data without decoding it: 0 if data
 * does not start with a record header. */
unsigned party__conn_record_peek_version(const char *data, size_t len);
/* Decodes the record at the start of data into rec (its slices point into
 * data) and sets *used to its length. 0; PARTY_ESTATE when the version is
 * not this build's (rec->version says which); PARTY_EINVAL when the bytes
 * are not a well-formed record (truncated, a bad field, a peer address of
 * the wrong length, too many tags, an unknown kind). */
int party__conn_record_decode(const char *data, size_t len, party__conn_record *rec, size_t *used);

#endif
