/* punchcache: pool I/O through plain system calls.
 *
 * What: the narrow interface (include/punchcache/io.h) through which every
 * byte of the pool is read or written, so an io_uring backend can replace
 * it without touching the store.  Why plain pread/pwrite now: correctness
 * first; the store never holds a mutex across these calls, so blocking
 * system calls only block the calling worker thread.
 *
 * Invariants:
 *  IO1 A call transfers the whole range or fails: short transfers and EINTR
 *      are retried; a read past the end of a regular file returns zeros.
 *  IO2 After pc_io_punch/pc_io_zero succeed, the range reads as zeros, by
 *      the fast path or, when the file system or device refuses it
 *      (EOPNOTSUPP), by writing zeros; a refused fast path is switched off
 *      for the life of the pool (can_punch/can_zero_range).
 *
 * Locks: none.  can_punch/can_zero_range are only ever cleared, and a
 * stale read of them costs one extra refused fallocate.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "punchcache/io.h"
#include "punchcache/punchcache.h"

int
pc_io_open (struct pc_io *io, const char *path, bool readonly)
{
  struct stat st;

  memset (io, 0, sizeof *io);
  io->fd = open (path, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
  if (io->fd == -1)
    return pc_error (errno, "open %s: %m", path);
  if (fstat (io->fd, &st) == -1) {
    int r = pc_error (errno, "stat %s: %m", path);
    close (io->fd);
    return r;
  }
  io->is_block_device = S_ISBLK (st.st_mode);
  io->size = (uint64_t) st.st_size;
  if (io->is_block_device &&
      ioctl (io->fd, BLKGETSIZE64, &io->size) == -1) {
    int r = pc_error (errno, "BLKGETSIZE64 %s: %m", path);
    close (io->fd);
    return r;
  }
  if (!io->is_block_device && !S_ISREG (st.st_mode)) {
    close (io->fd);
    return pc_error (EINVAL, "%s is neither a regular file nor a block device",
                     path);
  }
  io->can_punch = io->can_zero_range = true;
  return 0;
}

void
pc_io_close (struct pc_io *io)
{
  if (io->fd >= 0)
    close (io->fd);
  io->fd = -1;
}

int
pc_io_pread (struct pc_io *io, void *buf, uint64_t count, uint64_t off)
{
  char *p = buf;

  while (count > 0) {
    ssize_t r = pread (io->fd, p, count, (off_t) off);
    if (r == -1) {
      if (errno == EINTR) continue;
      return pc_error (errno, "pool read at offset %llu: %m",
                       (unsigned long long) off);
    }
    if (r == 0) {               /* past EOF of a sparse file: zeros */
      memset (p, 0, count);
      return 0;
    }
    p += r; off += (uint64_t) r; count -= (uint64_t) r;
  }
  return 0;
}

int
pc_io_pwrite (struct pc_io *io, const void *buf, uint64_t count, uint64_t off)
{
  const char *p = buf;

  while (count > 0) {
    ssize_t r = pwrite (io->fd, p, count, (off_t) off);
    if (r == -1) {
      if (errno == EINTR) continue;
      return pc_error (errno, "pool write at offset %llu: %m",
                       (unsigned long long) off);
    }
    p += r; off += (uint64_t) r; count -= (uint64_t) r;
  }
  return 0;
}

/* Fallback for IO2: write zeros in chunks. */
static int
write_zeros (struct pc_io *io, uint64_t count, uint64_t off)
{
  static const char zeros[65536];

  while (count > 0) {
    uint64_t n = count < sizeof zeros ? count : sizeof zeros;
    int r = pc_io_pwrite (io, zeros, n, off);
    if (r < 0) return r;
    off += n; count -= n;
  }
  return 0;
}

static int
try_fallocate (struct pc_io *io, bool *enabled, int mode,
               uint64_t count, uint64_t off)
{
  if (!__atomic_load_n (enabled, __ATOMIC_RELAXED))
    return -EOPNOTSUPP;
  if (fallocate (io->fd, mode, (off_t) off, (off_t) count) == 0)
    return 0;
  if (errno == EOPNOTSUPP || errno == ENOSYS || errno == EINVAL) {
    __atomic_store_n (enabled, false, __ATOMIC_RELAXED);
    return -EOPNOTSUPP;
  }
  return pc_error (errno, "pool fallocate at offset %llu: %m",
                   (unsigned long long) off);
}

int
pc_io_punch (struct pc_io *io, uint64_t count, uint64_t off)
{
  int r = try_fallocate (io, &io->can_punch,
                         FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                         count, off);
  return r == -EOPNOTSUPP ? write_zeros (io, count, off) : r;
}

int
pc_io_zero (struct pc_io *io, uint64_t count, uint64_t off)
{
  int r = try_fallocate (io, &io->can_zero_range,
                         FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
                         count, off);
  if (r == -EOPNOTSUPP)
    r = pc_io_punch (io, count, off);
  return r;
}

int
pc_io_sync (struct pc_io *io)
{
  if (fdatasync (io->fd) == -1)
    return pc_error (errno, "pool fdatasync: %m");
  return 0;
}
