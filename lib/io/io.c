/* punchcache: pool I/O through plain system calls.
 *
 * What: the narrow interface (include/punchcache/io.h) through which every
 * byte of the pool is read or written, so an io_uring backend can replace
 * it without touching the store.  Why plain pread/pwrite now: correctness
 * first; the store never holds a mutex across these calls, so blocking
 * system calls only block the calling worker thread.  lib/io/iobatch.c
 * (io_uring batches, and the choice of batch backend) is built on top of
 * this file; nothing here calls it.
 *
 * Invariants:
 *  IO1 A call transfers the whole range or fails: short transfers and EINTR
 *      are retried; a read past the end of a regular file returns zeros.
 *  IO2 After pc_io_punch/pc_io_zero succeed, the range reads as zeros, by
 *      the fast path or, when the file system or device refuses it
 *      (EOPNOTSUPP), by writing zeros; a refused fast path is switched off
 *      for the life of the pool (can_punch/can_zero_range).
 *  IO3 Data blocks go through dfd, opened O_DIRECT when the file system or
 *      device really supports it (a probe read at open), so the pool's data
 *      is cached only by lib/cache/cache.c, within its budget.  Metadata, journal
 *      and fallocate use the buffered fd (small, and read whole at open).
 *      The two regions never overlap, and fdatasync on either descriptor
 *      covers the inode, so mixing them is coherent.  Callers align data
 *      transfers to PC_IO_ALIGN; a misaligned one is refused with a
 *      message instead of the kernel's bare EINVAL.
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
#include <sys/uio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "punchcache/io.h"
#include "punchcache/punchcache.h"

int
pc_io_open (struct pc_io *io, const char *path, bool readonly)
{
  struct stat st;

  memset (io, 0, sizeof *io);
  io->dfd = -1;
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

/* Does O_DIRECT really work on dfd?  Some file systems accept the flag at
 * open and refuse the I/O (EINVAL), so read one aligned page. */
static bool
probe_direct (int dfd)
{
  void *buf;
  bool ok;

  if (posix_memalign (&buf, PC_IO_ALIGN, PC_IO_ALIGN) != 0)
    return false;
  ok = pread (dfd, buf, PC_IO_ALIGN, 0) >= 0;
  free (buf);
  return ok;
}

int
pc_io_open_data (struct pc_io *io, const char *path, enum pc_io_direct mode,
                 const char **why)
{
  int flags = (fcntl (io->fd, F_GETFL) & O_ACCMODE) | O_DIRECT | O_CLOEXEC;
  int dfd;

  *why = NULL;
  io->dfd = io->fd;
  io->direct = false;
  if (mode == PC_DIRECT_OFF) {
    *why = "disabled by direct=off";
    return 0;
  }
  dfd = open (path, flags);
  if (dfd >= 0 && !probe_direct (dfd)) {
    close (dfd);
    dfd = -1;
    errno = EINVAL;
  }
  if (dfd == -1) {
    if (mode == PC_DIRECT_ON)
      return pc_error (errno == EINVAL ? EINVAL : errno,
                       "%s: O_DIRECT is not supported here (%m); "
                       "use direct=auto or direct=off", path);
    *why = errno == EINVAL
      ? "the file system does not support O_DIRECT"
      : "O_DIRECT open failed";
    return 0;
  }
  io->dfd = dfd;
  io->direct = true;
  return 0;
}

void
pc_io_close (struct pc_io *io)
{
  if (io->dfd >= 0 && io->dfd != io->fd)
    close (io->dfd);
  if (io->fd >= 0)
    close (io->fd);
  io->fd = io->dfd = -1;
}

static int
read_full (int fd, void *buf, uint64_t count, uint64_t off)
{
  char *p = buf;

  while (count > 0) {
    ssize_t r = pread (fd, p, count, (off_t) off);
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

static int
write_full (int fd, const void *buf, uint64_t count, uint64_t off)
{
  const char *p = buf;

  while (count > 0) {
    ssize_t r = pwrite (fd, p, count, (off_t) off);
    if (r == -1) {
      if (errno == EINTR) continue;
      return pc_error (errno, "pool write at offset %llu: %m",
                       (unsigned long long) off);
    }
    p += r; off += (uint64_t) r; count -= (uint64_t) r;
  }
  return 0;
}

int
pc_io_pread (struct pc_io *io, void *buf, uint64_t count, uint64_t off)
{
  return read_full (io->fd, buf, count, off);
}

int
pc_io_pwrite (struct pc_io *io, const void *buf, uint64_t count, uint64_t off)
{
  return write_full (io->fd, buf, count, off);
}

/* IO3: refuse what O_DIRECT would refuse, with a message naming it. */
static int
check_aligned (struct pc_io *io, const void *buf, uint64_t count,
               uint64_t off)
{
  if (io->direct &&
      (((uintptr_t) buf | count | off) & (PC_IO_ALIGN - 1)))
    return pc_error (EINVAL, "internal error: unaligned O_DIRECT transfer "
                     "(buffer %p, %llu bytes at offset %llu)", buf,
                     (unsigned long long) count, (unsigned long long) off);
  return 0;
}

int
pc_io_pread_data (struct pc_io *io, void *buf, uint64_t count, uint64_t off)
{
  int r = check_aligned (io, buf, count, off);
  return r < 0 ? r : read_full (io->dfd, buf, count, off);
}

int
pc_io_pwrite_data (struct pc_io *io, const void *buf, uint64_t count,
                   uint64_t off)
{
  int r = check_aligned (io, buf, count, off);
  return r < 0 ? r : write_full (io->dfd, buf, count, off);
}

int
pc_io_check_iov (struct pc_io *io, const struct iovec *iov, int iovcnt,
                 uint64_t off)
{
  int r;

  if (iovcnt < 1 || (unsigned) iovcnt > PC_IO_MAX_IOV)
    return pc_error (EINVAL, "internal error: %d iovecs", iovcnt);
  for (int i = 0; i < iovcnt; i++)
    if ((r = check_aligned (io, iov[i].iov_base, iov[i].iov_len, off)) < 0)
      return r;
  return 0;
}

/* preadv/pwritev until done (IO1): a short transfer advances through the
 * vector and goes on; a read at the end of a sparse file gives zeros. */
static int
rw_vec (struct pc_io *io, bool write, const struct iovec *iov, int iovcnt,
        uint64_t off)
{
  struct iovec v[PC_IO_MAX_IOV];
  int i = 0, r;

  if ((r = pc_io_check_iov (io, iov, iovcnt, off)) < 0)
    return r;
  memcpy (v, iov, sizeof v[0] * (size_t) iovcnt);
  while (i < iovcnt) {
    ssize_t n = write ? pwritev (io->dfd, &v[i], iovcnt - i, (off_t) off)
                      : preadv (io->dfd, &v[i], iovcnt - i, (off_t) off);
    if (n == -1) {
      if (errno == EINTR) continue;
      return pc_error (errno, "pool %s at offset %llu: %m",
                       write ? "write" : "read", (unsigned long long) off);
    }
    if (n == 0 && !write) {             /* past EOF of a sparse file */
      for (; i < iovcnt; i++) memset (v[i].iov_base, 0, v[i].iov_len);
      return 0;
    }
    off += (uint64_t) n;
    while (i < iovcnt && (size_t) n >= v[i].iov_len) {
      n -= (ssize_t) v[i].iov_len;
      i++;
    }
    if (i < iovcnt) {
      v[i].iov_base = (char *) v[i].iov_base + n;
      v[i].iov_len -= (size_t) n;
    }
  }
  return 0;
}

int
pc_io_preadv_data (struct pc_io *io, const struct iovec *iov, int iovcnt,
                   uint64_t off)
{
  return rw_vec (io, false, iov, iovcnt, off);
}

int
pc_io_pwritev_data (struct pc_io *io, const struct iovec *iov, int iovcnt,
                    uint64_t off)
{
  return rw_vec (io, true, iov, iovcnt, off);
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
pc_io_zero_fast (struct pc_io *io, uint64_t count, uint64_t off)
{
  return try_fallocate (io, &io->can_zero_range,
                        FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
                        count, off);
}

int
pc_io_sync (struct pc_io *io)
{
  if (fdatasync (io->fd) == -1)
    return pc_error (errno, "pool fdatasync: %m");
  return 0;
}
