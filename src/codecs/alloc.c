/* alloc: partyd's allocation family (see alloc.h). In a release build each
 * function is a plain call to the C library; with PARTY_ALLOC_FAULTS (test
 * builds only) each first asks the fault counter whether to fail. */
#include "alloc.h"

#include <stdlib.h>
#include <string.h>

#ifdef PARTY_ALLOC_FAULTS
/* The only mutable state of the library, and only in test builds. */
static uint64_t alloc_count;
static uint64_t alloc_fail_at;
static const char *alloc_failed_who;
static void (*alloc_observer)(uint64_t n, const char *who, int failing);

void party__alloc_observe(void (*cb)(uint64_t n, const char *who, int failing)) {
    __atomic_store_n(&alloc_observer, cb, __ATOMIC_SEQ_CST);
}

void party__alloc_fail_nth(uint64_t n) {
    __atomic_store_n(&alloc_failed_who, NULL, __ATOMIC_SEQ_CST);
    __atomic_store_n(&alloc_count, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&alloc_fail_at, n, __ATOMIC_SEQ_CST);
}

uint64_t party__alloc_count(void) {
    return __atomic_load_n(&alloc_count, __ATOMIC_SEQ_CST);
}

const char *party__alloc_failed(void) {
    return __atomic_load_n(&alloc_failed_who, __ATOMIC_SEQ_CST);
}

int party__alloc_fault(const char *who) {
    uint64_t n = __atomic_add_fetch(&alloc_count, 1, __ATOMIC_SEQ_CST);
    int failing = n == __atomic_load_n(&alloc_fail_at, __ATOMIC_SEQ_CST);
    void (*cb)(uint64_t n, const char *who, int failing) =
        __atomic_load_n(&alloc_observer, __ATOMIC_SEQ_CST);

    if (failing)
        __atomic_store_n(&alloc_failed_who, who, __ATOMIC_SEQ_CST);
    if (cb != NULL)
        cb(n, who, failing);
    return failing;
}

#define FAULT() party__alloc_fault("party")
#else
#define FAULT() 0
#endif

void *party__malloc(size_t size) {
    return FAULT() ? NULL : malloc(size);
}

void *party__calloc(size_t n, size_t size) {
    return FAULT() ? NULL : calloc(n, size);
}

void *party__realloc(void *ptr, size_t size) {
    return FAULT() ? NULL : realloc(ptr, size);
}

char *party__strdup(const char *s) {
    return FAULT() ? NULL : strdup(s);
}

char *party__strndup(const char *s, size_t n) {
    return FAULT() ? NULL : strndup(s, n);
}

void party__free(void *ptr) {
    free(ptr);
}
