/* punchcache: the per-volume logical -> physical block map (in RAM).
 *
 * A three-level radix tree (top array sized to the volume, 4096-way middle
 * nodes, 4096-entry leaves) of 64-bit entries, allocated on first touch, so
 * a mostly empty 64 TiB volume costs a few KiB.  Lookups are lock-free
 * (atomic loads); callers serialise *writers of the same entry* themselves
 * (the store holds the invalidate lock exclusive, or the per-block
 * allocation lock, when it sets or clears an entry).  Node allocation is
 * published with compare-and-swap so concurrent setters of different
 * entries are safe.
 */
#ifndef PUNCHCACHE_BLOCKMAP_H
#define PUNCHCACHE_BLOCKMAP_H

#include <stddef.h>
#include <stdint.h>

#define PC_NO_BLOCK UINT64_MAX

struct pc_blockmap;

/* nblocks: number of logical blocks (may be up to 2^48). 0 or -ENOMEM/-EINVAL. */
int pc_blockmap_create (uint64_t nblocks, struct pc_blockmap **out);
void pc_blockmap_destroy (struct pc_blockmap *map);

uint64_t pc_blockmap_nblocks (const struct pc_blockmap *map);

/* Returns the physical block, or PC_NO_BLOCK if unmapped or lblock out of
 * range. */
uint64_t pc_blockmap_get (const struct pc_blockmap *map, uint64_t lblock);

/* Map lblock -> pblock (pblock < PC_NO_BLOCK).  0, -ERANGE, -ENOMEM. */
int pc_blockmap_set (struct pc_blockmap *map, uint64_t lblock, uint64_t pblock);

/* Unmap lblock; returns the old pblock or PC_NO_BLOCK. */
uint64_t pc_blockmap_clear (struct pc_blockmap *map, uint64_t lblock);

/* First mapped lblock in [lblock, end), or PC_NO_BLOCK.  Skips untouched
 * subtrees without visiting them (extents on huge sparse volumes). */
uint64_t pc_blockmap_next_mapped (const struct pc_blockmap *map,
                                  uint64_t lblock, uint64_t end);

/* Change the logical size.  Shrinking requires that no entry at or beyond
 * new_nblocks is mapped (-EBUSY otherwise).  0, -EBUSY, -ENOMEM. */
int pc_blockmap_resize (struct pc_blockmap *map, uint64_t new_nblocks);

/* Number of mapped entries, and bytes of RAM used by the tree. */
uint64_t pc_blockmap_count (const struct pc_blockmap *map);
size_t pc_blockmap_memory (const struct pc_blockmap *map);

/* Debug: recount entries and compare to the counter.  0 or -EUCLEAN. */
int pc_blockmap_verify (const struct pc_blockmap *map);

#endif
