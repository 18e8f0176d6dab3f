/* asan: PARTY__ASAN is defined when this build runs under AddressSanitizer
 * (gcc and clang spell that differently), and the marks that keep a use
 * after free detectable in memory kept for reuse (slabs of connections and
 * rooms, the frame pool): memory put aside is unaddressable for
 * AddressSanitizer and, in debug builds (which the valgrind tests use), for
 * valgrind. */
#ifndef PARTY_ASAN_H
#define PARTY_ASAN_H

#include <stddef.h>

#if defined(__SANITIZE_ADDRESS__)
#define PARTY__ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PARTY__ASAN 1
#endif
#endif

#ifdef PARTY__ASAN
#include <sanitizer/asan_interface.h>
#endif
#if !defined(NDEBUG) && defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define PARTY__VALGRIND_MARKS 1
#endif
#endif

/* n bytes at p are put aside: any access is an error. */
static inline void party__mem_hide(void *p, size_t n) {
#ifdef PARTY__ASAN
    ASAN_POISON_MEMORY_REGION(p, n);
#endif
#ifdef PARTY__VALGRIND_MARKS
    VALGRIND_MAKE_MEM_NOACCESS(p, n);
#endif
    (void)p;
    (void)n;
}

/* n bytes at p are in use again, their contents undefined. */
static inline void party__mem_show(void *p, size_t n) {
#ifdef PARTY__ASAN
    ASAN_UNPOISON_MEMORY_REGION(p, n);
#endif
#ifdef PARTY__VALGRIND_MARKS
    VALGRIND_MAKE_MEM_UNDEFINED(p, n);
#endif
    (void)p;
    (void)n;
}

/* n bytes at p hold values kept from before (valgrind only). */
static inline void party__mem_defined(void *p, size_t n) {
#ifdef PARTY__VALGRIND_MARKS
    VALGRIND_MAKE_MEM_DEFINED(p, n);
#endif
    (void)p;
    (void)n;
}

#endif
