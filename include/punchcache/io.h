/* punchcache: pool I/O.
 *
 * The small interface every pool access goes through, so the io_uring
 * backend can replace it later.  Plain pread/pwrite for now; full
 * transfers (short reads/writes and EINTR retried); reads past the end of a
 * sparse file return zeros.  Optional fast paths (PUNCH_HOLE, ZERO_RANGE)
 * switch themselves off on EOPNOTSUPP and fall back to writing zeros.
 * All functions return 0 or -errno; no locks.
 */
#ifndef PUNCHCACHE_IO_H
#define PUNCHCACHE_IO_H

#include <stdbool.h>
#include <stdint.h>

struct pc_io {
  int fd;
  bool is_block_device;
  bool can_punch;        /* cleared on EOPNOTSUPP */
  bool can_zero_range;   /* cleared on EOPNOTSUPP */
  uint64_t size;         /* bytes of file or device at open */
};

/* Open path read-write (or read-only), with O_CLOEXEC. */
int pc_io_open (struct pc_io *io, const char *path, bool readonly);
void pc_io_close (struct pc_io *io);

int pc_io_pread (struct pc_io *io, void *buf, uint64_t count, uint64_t off);
int pc_io_pwrite (struct pc_io *io, const void *buf, uint64_t count,
                  uint64_t off);
/* Deallocate and zero [off, off+count): reads return zeros afterwards. */
int pc_io_punch (struct pc_io *io, uint64_t count, uint64_t off);
/* Zero [off, off+count), keeping it allocated. */
int pc_io_zero (struct pc_io *io, uint64_t count, uint64_t off);
/* Data and metadata of the file durable (fdatasync). */
int pc_io_sync (struct pc_io *io);

#endif
