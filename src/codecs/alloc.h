/* alloc: the one allocation family of partyd's own code. Library code
 * allocates through party__malloc and its siblings, never malloc directly,
 * so that a test build (PARTY_ALLOC_FAULTS) can fail any one allocation and
 * check that it becomes an error, not a crash, a leak or wrong data. The
 * family is malloc's own: its memory may be freed with free() (party_kv_get
 * hands the caller a copy to free()), and party__free frees malloc's. */
#ifndef PARTY_ALLOC_H
#define PARTY_ALLOC_H

#include <stddef.h>
#include <stdint.h>

/* As malloc, calloc, realloc, strdup, strndup and free. NULL when out of
 * memory (realloc then leaves ptr as it was). */
void *party__malloc(size_t size);
void *party__calloc(size_t n, size_t size);
void *party__realloc(void *ptr, size_t size);
char *party__strdup(const char *s);
char *party__strndup(const char *s, size_t n);
void party__free(void *ptr);

#ifdef PARTY_ALLOC_FAULTS
/* Fault injection, compiled only into test builds: a release build has
 * neither these functions nor the counter behind them.
 *
 * Every allocation of the family, and every third-party allocation a test
 * routes through party__alloc_fault (SQLite, cJSON, OpenSSL hooks), is
 * counted from the last party__alloc_fail_nth. The counter is atomic:
 * worker threads allocate too. */

/* Counts from zero again; the nth allocation from now (1: the next one)
 * fails, once. n 0: none fails. */
void party__alloc_fail_nth(uint64_t n);
/* Allocations counted since the last party__alloc_fail_nth. */
uint64_t party__alloc_count(void);
/* Who the failed allocation was (the who given to party__alloc_fault,
 * "party" for the family's own), or NULL if none failed yet. */
const char *party__alloc_failed(void);
/* cb (NULL: none) is called for each counted allocation, on its thread,
 * with its number, who, and whether it is the one made to fail (before it
 * returns NULL): a test can learn who allocates when, or print where the
 * failed allocation was. */
void party__alloc_observe(void (*cb)(uint64_t n, const char *who, int failing));
/* Counts one allocation by who (a string with static storage); 1 if it
 * must fail. For hooks that route a library's allocator here. */
int party__alloc_fault(const char *who);
#endif

#endif
