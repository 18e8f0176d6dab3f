/* asan: PARTY__ASAN is defined when this build runs under AddressSanitizer
 * (gcc and clang spell that differently). The allocators that keep memory
 * for reuse (slabs of connections and rooms, the frame pool) use it to keep a use after
 * free detectable. */
#ifndef PARTY_ASAN_H
#define PARTY_ASAN_H

#if defined(__SANITIZE_ADDRESS__)
#define PARTY__ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PARTY__ASAN 1
#endif
#endif

#endif
