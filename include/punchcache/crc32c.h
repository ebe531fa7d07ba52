/* punchcache: CRC-32C (Castagnoli), the checksum of every on-disk
 * structure.  Table driven (slice-by-8); uses SSE4.2 when the CPU has it. */
#ifndef PUNCHCACHE_CRC32C_H
#define PUNCHCACHE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* crc32c(0, "123456789", 9) == 0xE3069283.  Chain by passing the previous
 * result as crc. */
uint32_t pc_crc32c (uint32_t crc, const void *buf, size_t len);

#endif
