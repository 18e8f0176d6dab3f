/* slab: fixed-size objects packed in blocks of about 128 KiB, for the
 * long-lived structs that come and go in numbers: connections and rooms.
 * Packed together, they do not sit between short-lived allocations (a
 * handshake's, a loaded room's database) and keep those pages resident
 * after they are freed. A block whose objects are all free is
 * handed back on the next tick (one empty block is kept to absorb churn),
 * so memory taken by a burst of connections goes back once they close.
 * The objects taken can be walked (one bit each tells which), so their
 * owner needs no list through them.
 * A set of slabs belongs to one thread; nothing here locks. */
#ifndef PARTY_SLAB_H
#define PARTY_SLAB_H

#include <stddef.h>

typedef struct party__slabs party__slabs;

/* Bytes per block: just under glibc's default mmap threshold, so a block
 * comes from the heap rather than being mapped by itself and rounded up
 * to whole pages. */
#define PARTY__SLAB_BYTES (128 * 1024 - 64)

/* An empty set for objects of obj_size bytes (at most a few KiB), each
 * aligned to 8 bytes. NULL on OOM. */
party__slabs *party__slabs_new(size_t obj_size);
/* An object's worth of memory, not zeroed. NULL on OOM. */
void *party__slabs_take(party__slabs *s);
/* Gives back an object from party__slabs_take of the same set. */
void party__slabs_give(party__slabs *s, void *obj);
/* For the runtime's own structs: a zeroed object from *set, created on
 * first use. Under AddressSanitizer each object is an allocation of its
 * own instead (calloc), so that a use after free is caught even once the
 * memory is used again. NULL on OOM. */
void *party__slabs_calloc(party__slabs **set, size_t obj_size);
/* Gives back an object from party__slabs_calloc. */
void party__slabs_release(party__slabs *set, void *obj);
/* Calls fn(obj, arg) for every object taken from s now (s NULL: none), in
 * no particular order. fn may give back any object (one not reached yet is
 * then skipped); it must not take one. */
void party__slabs_foreach(party__slabs *s, void (*fn)(void *obj, void *arg), void *arg);
/* Called on a coarse periodic tick (NULL: nothing to do): frees the blocks whose objects are all
 * free, keeping one such block. The bytes handed back to the allocator. */
size_t party__slabs_tick(party__slabs *s);
/* Frees the blocks and the set (every object must have been given back).
 * NULL is a no-op. */
void party__slabs_free(party__slabs *s);

/* Objects per block, blocks held now, objects taken now (tests, metrics). */
size_t party__slabs_per_block(const party__slabs *s);
size_t party__slabs_blocks(const party__slabs *s);
size_t party__slabs_taken(const party__slabs *s);

#endif
