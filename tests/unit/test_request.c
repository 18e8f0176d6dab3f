/* party_request and party_response (src/request.c): the accessors a room
 * reads a request with (method, url, path, decoded query parameters,
 * case-insensitive headers, body), the headers hooks add, and building,
 * reading and serialising responses (text and JSON helpers, repeated
 * headers, headers the runtime reserves). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "party.h"
#include "request.h"

typedef struct parsed {
    char buf[4096];
    party__http_parser parser;
    party__http_request http;
    party_request req;
} parsed;

/* Parses raw into p and builds the public request from it. */
static void parse(parsed *p, const char *raw) {
    party__http_limits limits = {16384, 100, 1 << 20};
    party__http_error err;
    size_t consumed = 0, len = strlen(raw);

    assert_true(len < sizeof(p->buf));
    memcpy(p->buf, raw, len);
    party__http_parser_init(&p->parser);
    assert_int_equal(party__http_parse(&p->parser, p->buf, len, &limits, &p->http, &consumed, &err),
                     PARTY__HTTP_DONE);
    assert_int_equal(party__request_init(&p->req, &p->http), 0);
}

static void test_request_line_parts(void **state) {
    parsed *p = malloc(sizeof(*p));
    (void)state;

    parse(p, "PUT /parties/chat/room%201/items?a=1&b=x%2By HTTP/1.1\r\nHost: h\r\n"
             "Content-Length: 0\r\n\r\n");
    assert_string_equal(party_request_method(&p->req), "PUT");
    assert_string_equal(party_request_url(&p->req), "/parties/chat/room%201/items?a=1&b=x%2By");
    assert_string_equal(party_request_path(&p->req), "/parties/chat/room%201/items");
    party__request_free(&p->req);
    free(p);
}

static void test_query_values_are_decoded_first_wins_absent_is_null(void **state) {
    parsed *p = malloc(sizeof(*p));
    (void)state;

    parse(p, "GET /x?name=J%C3%BCrgen+M&empty=&flag&dup=1&dup=2&bad=%zz&sp%61ced=yes HTTP/1.1\r\n"
             "Host: h\r\n\r\n");
    assert_string_equal(party_request_query(&p->req, "name"), "J\xc3\xbcrgen M");
    assert_string_equal(party_request_query(&p->req, "empty"), "");
    assert_string_equal(party_request_query(&p->req, "flag"), "");
    assert_string_equal(party_request_query(&p->req, "dup"), "1");
    assert_null(party_request_query(&p->req, "bad"));
    assert_string_equal(party_request_query(&p->req, "spaced"), "yes"); /* names decode too */
    assert_null(party_request_query(&p->req, "missing"));
    assert_null(party_request_query(&p->req, NULL));
    party__request_free(&p->req);

    parse(p, "GET /no-query HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_null(party_request_query(&p->req, "a"));
    party__request_free(&p->req);
    free(p);
}

/* Values are decoded in place of their raw text, without allocating: each
 * stays as it was while the others are read, and again. */
static void test_query_values_stay_valid_while_others_are_read(void **state) {
    parsed *p = malloc(sizeof(*p));
    const char *a, *flag, *b, *e;
    (void)state;

    parse(p, "GET /x?a=%41%42&flag&b=c+d&e= HTTP/1.1\r\nHost: h\r\n\r\n");
    a = party_request_query(&p->req, "a");
    flag = party_request_query(&p->req, "flag");
    b = party_request_query(&p->req, "b");
    e = party_request_query(&p->req, "e");
    assert_ptr_equal(party_request_query(&p->req, "a"), a);
    assert_string_equal(a, "AB");
    assert_string_equal(flag, "");
    assert_string_equal(b, "c d");
    assert_string_equal(e, "");
    assert_string_equal(party_request_url(&p->req), "/x?a=%41%42&flag&b=c+d&e=");
    party__request_free(&p->req);
    free(p);
}

static int count_headers(const char *name, const char *value, void *arg) {
    (void)name;
    (void)value;
    (*(int *)arg)++;
    return 0;
}

static void test_headers_are_case_insensitive_and_hooks_can_set_them(void **state) {
    parsed *p = malloc(sizeof(*p));
    int n = 0;
    (void)state;

    parse(p, "GET /x HTTP/1.1\r\nHost: h\r\nX-Token:  abc  \r\nx-token: second\r\n\r\n");
    assert_string_equal(party_request_header(&p->req, "x-TOKEN"), "abc");
    assert_null(party_request_header(&p->req, "X-Missing"));
    assert_int_equal(party_request_foreach_header(&p->req, count_headers, &n), 0);
    assert_int_equal(n, 3);
    /* Replace the first of a name, add a new one. */
    assert_int_equal(party_request_set_header(&p->req, "X-TOKEN", "checked"), 0);
    assert_string_equal(party_request_header(&p->req, "x-token"), "checked");
    assert_int_equal(party_request_set_header(&p->req, "X-User", "alice"), 0);
    assert_string_equal(party_request_header(&p->req, "x-user"), "alice");
    assert_int_equal(party_request_set_header(&p->req, "Bad:Name", "v"), PARTY_EINVAL);
    assert_int_equal(party_request_set_header(&p->req, "X-Evil", "a\r\nInjected: 1"), PARTY_EINVAL);
    party__request_free(&p->req);
    free(p);
}

static void test_body_with_length_chunked_and_none(void **state) {
    parsed *p = malloc(sizeof(*p));
    size_t len = 99;
    const char *body;
    (void)state;

    parse(p, "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello");
    body = party_request_body(&p->req, &len);
    assert_int_equal(len, 5);
    assert_memory_equal(body, "hello", 5);
    party__request_free(&p->req);

    parse(p, "POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
             "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
    body = party_request_body(&p->req, &len);
    assert_int_equal(len, 5);
    assert_memory_equal(body, "abcde", 5);
    party__request_free(&p->req);

    parse(p, "GET /x HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_null(party_request_body(&p->req, &len));
    assert_int_equal(len, 0);
    party__request_free(&p->req);
    free(p);
}

static char *serialize(const party_response *res) {
    party__buf *buf = party__response_serialize(res, 0, 0, NULL);
    char *text;
    assert_non_null(buf);
    text = strndup(buf->data, buf->len);
    party__buf_release(buf);
    return text;
}

static void test_response_defaults_and_status_range(void **state) {
    party_response res;
    size_t len = 9;
    (void)state;

    party__response_init(&res);
    assert_int_equal(party_response_get_status(&res), 200);
    assert_null(party_response_get_body(&res, &len));
    assert_int_equal(len, 0);
    party_response_set_status(&res, 99);
    party_response_set_status(&res, 1000);
    assert_int_equal(party_response_get_status(&res), 200);
    party_response_set_status(&res, 418);
    assert_int_equal(party_response_get_status(&res), 418);
    party__response_free(&res);
}

static void test_response_headers_replace_add_and_reserved(void **state) {
    party_response res;
    char *text;
    int n = 0;
    (void)state;

    party__response_init(&res);
    party_response_set_header(&res, "X-One", "a");
    party_response_set_header(&res, "x-one", "b"); /* replaces */
    party_response_add_header(&res, "Set-Cookie", "s=1");
    party_response_add_header(&res, "Set-Cookie", "t=2");   /* both kept */
    party_response_set_header(&res, "Content-Length", "5"); /* the runtime's */
    party_response_set_header(&res, "Connection", "upgrade");
    party_response_add_header(&res, "Transfer-Encoding", "chunked");
    party_response_set_header(&res, "Bad Name", "v");
    party_response_set_header(&res, "X-Split", "a\r\nInjected: yes");
    assert_string_equal(party_response_get_header(&res, "X-ONE"), "b");
    assert_string_equal(party_response_get_header(&res, "set-cookie"), "s=1");
    assert_null(party_response_get_header(&res, "X-Split"));
    assert_int_equal(party_response_foreach_header(&res, count_headers, &n), 0);
    assert_int_equal(n, 3);
    party_response_set_body(&res, "hi", 2);
    text = serialize(&res);
    assert_non_null(strstr(text, "X-One: b\r\n"));
    assert_non_null(strstr(text, "Set-Cookie: s=1\r\nSet-Cookie: t=2\r\n"));
    assert_non_null(strstr(text, "Content-Length: 2\r\n"));
    assert_null(strstr(text, "Injected"));
    assert_null(strstr(text, "chunked"));
    free(text);
    party__response_free(&res);
}

static void test_json_and_text_helpers(void **state) {
    party_response res;
    size_t len;
    const char *body;
    char *text;
    (void)state;

    party__response_init(&res);
    party_response_json(&res, 201, "{\"ok\":true}");
    assert_int_equal(party_response_get_status(&res), 201);
    assert_string_equal(party_response_get_header(&res, "content-type"), "application/json");
    body = party_response_get_body(&res, &len);
    assert_int_equal(len, 11);
    assert_string_equal(body, "{\"ok\":true}"); /* NUL-terminated past len */
    text = serialize(&res);
    assert_true(strncmp(text, "HTTP/1.1 201 Created\r\n", 22) == 0);
    assert_non_null(strstr(text, "\r\n\r\n{\"ok\":true}"));
    free(text);

    party_response_text(&res, 404, "nothing here\n");
    assert_int_equal(party_response_get_status(&res), 404);
    assert_string_equal(party_response_get_header(&res, "Content-Type"),
                        "text/plain; charset=utf-8");
    assert_string_equal(party_response_get_body(&res, NULL), "nothing here\n");
    party__response_free(&res);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_line_parts),
        cmocka_unit_test(test_query_values_are_decoded_first_wins_absent_is_null),
        cmocka_unit_test(test_query_values_stay_valid_while_others_are_read),
        cmocka_unit_test(test_headers_are_case_insensitive_and_hooks_can_set_them),
        cmocka_unit_test(test_body_with_length_chunked_and_none),
        cmocka_unit_test(test_response_defaults_and_status_range),
        cmocka_unit_test(test_response_headers_replace_add_and_reserved),
        cmocka_unit_test(test_json_and_text_helpers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
