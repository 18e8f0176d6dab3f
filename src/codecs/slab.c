/* slab: fixed-size objects in blocks, empty blocks handed back (see
 * slab.h). */
#include "slab.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "asan.h"
#include "alloc.h"

/* A free object is unaddressable (asan.h), so a use after it was given
 * back is caught although its block is not freed. The free objects of a
 * block are kept as a stack of indices in the block's header rather than
 * linked through their own bytes, so that they can be unaddressable whole;
 * behind the stack, one bit per object says which are taken, so that a
 * walk over the objects (party__slabs_foreach) needs no list through
 * them. */
typedef struct slab_block {
    struct slab_block *prev, *next; /* on the list of blocks with a free object */
    uint32_t n_free;
    uint16_t free_idx[]; /* [0, n_free): the free objects, by index */
} slab_block;

#ifdef PARTY__ASAN
/* Under AddressSanitizer every object is an allocation of its own, behind
 * this header: the objects of a set in a list, for the walk. */
typedef struct asan_obj {
    struct asan_obj *prev, *next;
} asan_obj;
#define ASAN_HEADER ((sizeof(asan_obj) + 15) & ~(size_t)15)
#endif

struct party__slabs {
    size_t obj_size;
    size_t per_block;
    size_t objs_off;            /* where a block's objects start */
    slab_block *with_room_head; /* blocks with a free object: partly used */
    slab_block *with_room_tail; /* ... first, empty ones last */
    slab_block **blocks;        /* every block, by address */
    size_t n_blocks, blocks_cap;
    size_t taken_off; /* where a block's bitmap of taken objects starts */
    size_t taken;
#ifdef PARTY__ASAN
    asan_obj *objs;      /* party__slabs_calloc's objects */
    asan_obj *walk_next; /* the walk's next object (moved on if it is released) */
#endif
};

static char *block_objs(const party__slabs *s, slab_block *b) {
    return (char *)b + s->objs_off;
}

static uint64_t *block_taken(const party__slabs *s, slab_block *b) {
    return (uint64_t *)(void *)((char *)b + s->taken_off);
}

static size_t block_bytes(const party__slabs *s) {
    return s->objs_off + s->per_block * s->obj_size;
}

/* A block is on the list exactly while it has a free object. */
static void list_unlink(party__slabs *s, slab_block *b) {
    if (b->prev != NULL)
        b->prev->next = b->next;
    else
        s->with_room_head = b->next;
    if (b->next != NULL)
        b->next->prev = b->prev;
    else
        s->with_room_tail = b->prev;
    b->prev = b->next = NULL;
}

/* Puts b first (partly used: filled first) or last (empty). */
static void list_add(party__slabs *s, slab_block *b, int last) {
    b->prev = last ? s->with_room_tail : NULL;
    b->next = last ? NULL : s->with_room_head;
    if (b->prev != NULL)
        b->prev->next = b;
    else
        s->with_room_head = b;
    if (b->next != NULL)
        b->next->prev = b;
    else
        s->with_room_tail = b;
}

/* The index in s->blocks of the block holding addr, or of the first block
 * after addr when none does (where a new block at addr goes). */
static size_t block_index(const party__slabs *s, uintptr_t addr) {
    size_t lo = 0, hi = s->n_blocks;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if ((uintptr_t)s->blocks[mid] <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    /* lo: the first block above addr; the one before may hold it. */
    if (lo > 0 && addr < (uintptr_t)s->blocks[lo - 1] + block_bytes(s))
        return lo - 1;
    return lo;
}

static slab_block *block_new(party__slabs *s) {
    slab_block *b;
    size_t i, at;
    if (s->n_blocks == s->blocks_cap) {
        size_t cap = s->blocks_cap ? s->blocks_cap * 2 : 16;
        slab_block **grown = party__realloc(s->blocks, cap * sizeof(*grown));
        if (grown == NULL)
            return NULL;
        s->blocks = grown;
        s->blocks_cap = cap;
    }
    b = party__malloc(block_bytes(s));
    if (b == NULL)
        return NULL;
    memset(b, 0, s->objs_off);
    /* Handed out from index 0 up: the stack's top is its end. */
    for (i = 0; i < s->per_block; i++)
        b->free_idx[i] = (uint16_t)(s->per_block - 1 - i);
    b->n_free = (uint32_t)s->per_block;
    party__mem_hide(block_objs(s, b), s->per_block * s->obj_size);
    at = block_index(s, (uintptr_t)b);
    memmove(&s->blocks[at + 1], &s->blocks[at], (s->n_blocks - at) * sizeof(*s->blocks));
    s->blocks[at] = b;
    s->n_blocks++;
    list_add(s, b, 1);
    return b;
}

party__slabs *party__slabs_new(size_t obj_size) {
    party__slabs *s;
    size_t header = offsetof(slab_block, free_idx);
    size_t per, words;
    if (obj_size == 0 || obj_size > PARTY__SLAB_BYTES / 16)
        return NULL;
    s = party__calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    /* Every object 8-byte aligned, whatever its size. */
    obj_size = (obj_size + 7) & ~(size_t)7;
    /* Each object costs its size, a 2-byte index and a bit; the bitmap
     * starts at an 8-byte boundary after the index stack, the objects at a
     * 16-byte boundary after the bitmap. */
    per = (PARTY__SLAB_BYTES - header - 7 - 8 - 15) * 8 / (obj_size * 8 + 2 * 8 + 1);
    if (per > UINT16_MAX + 1u)
        per = UINT16_MAX + 1u;
    words = (per + 63) / 64;
    s->obj_size = obj_size;
    s->per_block = per;
    s->taken_off = (header + per * sizeof(uint16_t) + 7) & ~(size_t)7;
    s->objs_off = (s->taken_off + words * sizeof(uint64_t) + 15) & ~(size_t)15;
    assert(block_bytes(s) <= PARTY__SLAB_BYTES);
    return s;
}

void *party__slabs_take(party__slabs *s) {
    slab_block *b = s->with_room_head;
    size_t idx;
    char *obj;
    if (b == NULL && (b = block_new(s)) == NULL)
        return NULL;
    idx = b->free_idx[--b->n_free];
    block_taken(s, b)[idx / 64] |= (uint64_t)1 << (idx % 64);
    obj = block_objs(s, b) + idx * s->obj_size;
    if (b->n_free == 0)
        list_unlink(s, b);
    s->taken++;
    party__mem_show(obj, s->obj_size);
    return obj;
}

void party__slabs_give(party__slabs *s, void *obj) {
    size_t at = block_index(s, (uintptr_t)obj);
    slab_block *b;
    size_t idx;
    int was_full;

    /* An object of this set, given back once. */
    assert(at < s->n_blocks);
    b = s->blocks[at];
    assert((char *)obj >= block_objs(s, b) &&
           ((size_t)((char *)obj - block_objs(s, b)) % s->obj_size) == 0);
    assert(b->n_free < s->per_block);
    idx = (size_t)((char *)obj - block_objs(s, b)) / s->obj_size;
    party__mem_hide(obj, s->obj_size);
    was_full = b->n_free == 0; /* then not on the list */
    b->free_idx[b->n_free++] = (uint16_t)idx;
    block_taken(s, b)[idx / 64] &= ~((uint64_t)1 << (idx % 64));
    s->taken--;
    if (b->n_free == s->per_block) {
        /* Empty: last in line, so that partly used blocks fill first and
         * this one can be handed back at the tick. */
        if (!was_full)
            list_unlink(s, b);
        list_add(s, b, 1);
    } else if (was_full) {
        list_add(s, b, 0);
    }
}

void *party__slabs_calloc(party__slabs **set, size_t obj_size) {
    void *obj;
    if (*set == NULL && (*set = party__slabs_new(obj_size)) == NULL)
        return NULL;
    assert((*set)->obj_size >= obj_size && (*set)->obj_size < obj_size + 8);
#ifdef PARTY__ASAN
    {
        asan_obj *h = party__calloc(1, ASAN_HEADER + obj_size);
        if (h == NULL)
            return NULL;
        h->next = (*set)->objs;
        if (h->next != NULL)
            h->next->prev = h;
        (*set)->objs = h;
        (*set)->taken++;
        obj = (char *)h + ASAN_HEADER;
    }
#else
    obj = party__slabs_take(*set);
    if (obj != NULL)
        memset(obj, 0, obj_size);
#endif
    return obj;
}

void party__slabs_release(party__slabs *set, void *obj) {
#ifdef PARTY__ASAN
    asan_obj *h = (asan_obj *)(void *)((char *)obj - ASAN_HEADER);
    if (set->walk_next == h)
        set->walk_next = h->next;
    if (h->prev != NULL)
        h->prev->next = h->next;
    else
        set->objs = h->next;
    if (h->next != NULL)
        h->next->prev = h->prev;
    set->taken--;
    party__free(h);
#else
    party__slabs_give(set, obj);
#endif
}

void party__slabs_foreach(party__slabs *s, void (*fn)(void *obj, void *arg), void *arg) {
    size_t i, idx;
    if (s == NULL)
        return;
#ifdef PARTY__ASAN
    if (s->objs != NULL) {
        /* Objects of party__slabs_calloc: the list, whose next element
         * moves on if fn releases it. */
        asan_obj *h;
        for (h = s->objs; h != NULL; h = s->walk_next) {
            s->walk_next = h->next;
            fn((char *)h + ASAN_HEADER, arg);
        }
        s->walk_next = NULL;
        return;
    }
#endif
    /* Blocks are freed only at the tick, never during a walk; an object
     * given back before the walk reaches it has its bit cleared. */
    for (i = 0; i < s->n_blocks; i++) {
        slab_block *b = s->blocks[i];
        uint64_t *taken = block_taken(s, b);
        for (idx = 0; idx < s->per_block; idx++) {
            if (taken[idx / 64] == 0) {
                idx |= 63; /* a whole word of free objects */
                continue;
            }
            if (taken[idx / 64] & ((uint64_t)1 << (idx % 64)))
                fn(block_objs(s, b) + idx * s->obj_size, arg);
        }
    }
}

size_t party__slabs_tick(party__slabs *s) {
    size_t i, kept = 0, freed = 0;
    int spare = 0;
    if (s == NULL)
        return 0;
    for (i = 0; i < s->n_blocks; i++) {
        slab_block *b = s->blocks[i];
        if (b->n_free == s->per_block && spare) {
            list_unlink(s, b);
            party__free(b);
            freed++;
            continue;
        }
        if (b->n_free == s->per_block)
            spare = 1;
        s->blocks[kept++] = b;
    }
    s->n_blocks = kept;
    return freed * block_bytes(s);
}

void party__slabs_free(party__slabs *s) {
    size_t i;
    if (s == NULL)
        return;
    for (i = 0; i < s->n_blocks; i++)
        party__free(s->blocks[i]);
    party__free(s->blocks);
    party__free(s);
}

size_t party__slabs_per_block(const party__slabs *s) {
    return s->per_block;
}

size_t party__slabs_blocks(const party__slabs *s) {
    return s->n_blocks;
}

size_t party__slabs_taken(const party__slabs *s) {
    return s->taken;
}
