/* Fuzzes the browser-origin allow-list (--allowed-origins): the input is
 * split at its first NUL into a list and an Origin value. A list either
 * passes the check, with a reason naming the flag when it does not, and
 * every match runs without reading past either string; it never crashes.
 * An origin allowed by a list is allowed again in other letter cases, and
 * never when the list failed its check. */
#include <assert.h>
#include <ctype.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "origin.h"
#include "party.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *list, *origin;
    const char *nul;
    char why[300] = "";
    size_t list_len, origin_len, i;
    int ok, allowed;

    if (size > 4096)
        return 0;
    nul = memchr(data, '\0', size);
    list_len = nul != NULL ? (size_t)(nul - (const char *)data) : size;
    origin_len = nul != NULL ? size - list_len - 1 : 0;
    list = malloc(list_len + 1);
    origin = malloc(origin_len ? origin_len : 1); /* exactly its bytes: not NUL-terminated */
    if (list == NULL || origin == NULL) {
        free(list);
        free(origin);
        return 0;
    }
    memcpy(list, data, list_len);
    list[list_len] = '\0';
    if (origin_len > 0)
        memcpy(origin, nul + 1, origin_len);
    ok = party__origin_list_check(list, "--allowed-origins", why, sizeof(why)) == 0;
    assert(ok || strstr(why, "--allowed-origins") != NULL);
    allowed = party__origin_allowed(list, party__slice_make(origin, origin_len));
    assert(allowed == 0 || allowed == 1);
    assert(party__origin_allowed(NULL, party__slice_make(origin, origin_len)) == 1);
    if (allowed) {
        for (i = 0; i < origin_len; i++)
            origin[i] = (char)toupper((unsigned char)origin[i]);
        assert(party__origin_allowed(list, party__slice_make(origin, origin_len)) == 1);
    }
    free(list);
    free(origin);
    return 0;
}
