/* punchcache: pool I/O.
 *
 * The small interface every pool access goes through, so the io_uring
 * backend can replace it later.  Plain pread/pwrite for now; data blocks
 * go through a second, O_DIRECT descriptor where supported (the block
 * cache is then the only cache); full
 * transfers (short reads/writes and EINTR retried); reads past the end of a
 * sparse file return zeros.  Optional fast paths (PUNCH_HOLE, ZERO_RANGE)
 * switch themselves off on EOPNOTSUPP and fall back to writing zeros.
 * All functions return 0 or -errno; no locks.
 */
#ifndef PUNCHCACHE_IO_H
#define PUNCHCACHE_IO_H

#include <stdbool.h>
#include <stdint.h>

/* Data I/O mode (pc_io_open_data). */
enum pc_io_direct { PC_DIRECT_AUTO = 0, PC_DIRECT_ON, PC_DIRECT_OFF };

#define PC_IO_ALIGN 4096u       /* O_DIRECT alignment of buffers and offsets */
#define PC_IO_MAX_IOV 256u      /* iovecs per pc_io_preadv_data call */

struct pc_io {
  int fd;                /* buffered: metadata, journal, punch, sync */
  int dfd;               /* data blocks: O_DIRECT when direct, else == fd */
  bool direct;
  bool is_block_device;
  bool can_punch;        /* cleared on EOPNOTSUPP */
  bool can_zero_range;   /* cleared on EOPNOTSUPP */
  uint64_t size;         /* bytes of file or device at open */
};

/* Open path read-write (or read-only), with O_CLOEXEC. */
int pc_io_open (struct pc_io *io, const char *path, bool readonly);
void pc_io_close (struct pc_io *io);

/* Open the data descriptor: O_DIRECT if mode allows and the file system
 * or device supports it (probed with a real aligned read), otherwise the
 * buffered descriptor.  mode ON fails with -EINVAL if O_DIRECT does not
 * work.  On fallback (AUTO), *why gets a static reason, else NULL. */
int pc_io_open_data (struct pc_io *io, const char *path, enum pc_io_direct mode,
                     const char **why);

int pc_io_pread (struct pc_io *io, void *buf, uint64_t count, uint64_t off);
/* Data blocks through dfd.  When io->direct, buf, count and off must be
 * multiples of PC_IO_ALIGN (-EINVAL with a message otherwise). */
int pc_io_pread_data (struct pc_io *io, void *buf, uint64_t count,
                      uint64_t off);
int pc_io_pwrite_data (struct pc_io *io, const void *buf, uint64_t count,
                       uint64_t off);
/* Scatter read of consecutive bytes at off into iov (same rules). */
struct iovec;
int pc_io_preadv_data (struct pc_io *io, const struct iovec *iov, int iovcnt,
                       uint64_t off);
int pc_io_pwrite (struct pc_io *io, const void *buf, uint64_t count,
                  uint64_t off);
/* Deallocate and zero [off, off+count): reads return zeros afterwards. */
int pc_io_punch (struct pc_io *io, uint64_t count, uint64_t off);
/* Zero [off, off+count), keeping it allocated. */
int pc_io_zero (struct pc_io *io, uint64_t count, uint64_t off);
/* Data and metadata of the file durable (fdatasync). */
int pc_io_sync (struct pc_io *io);

#endif
