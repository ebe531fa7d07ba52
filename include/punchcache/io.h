/* punchcache: pool I/O.
 *
 * The small interface every pool access goes through.  Single transfers
 * are plain pread/pwrite; the transfers of one multi-block request go as
 * one batch through io_uring (lib/io/iobatch.c) where available.  Data blocks
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
/* How batches are issued (pc_io_set_backend). */
enum pc_io_backend { PC_IO_AUTO = 0, PC_IO_URING, PC_IO_SYNC };

#define PC_IO_ALIGN 4096u       /* O_DIRECT alignment of buffers and offsets */
#define PC_IO_MAX_IOV 256u      /* iovecs per pc_io_preadv_data call */

struct pc_io {
  int fd;                /* buffered: metadata, journal, punch, sync */
  int dfd;               /* data blocks: O_DIRECT when direct, else == fd */
  bool direct;
  bool uring;            /* batches go through io_uring (lib/io/iobatch.c) */
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
int pc_io_pwritev_data (struct pc_io *io, const struct iovec *iov,
                        int iovcnt, uint64_t off);
/* 1..PC_IO_MAX_IOV iovecs, each aligned when io->direct: 0 or -EINVAL
 * with a message. */
int pc_io_check_iov (struct pc_io *io, const struct iovec *iov, int iovcnt,
                     uint64_t off);
int pc_io_pwrite (struct pc_io *io, const void *buf, uint64_t count,
                  uint64_t off);

/* ---- batches (lib/io/iobatch.c, on top of lib/io/io.c, which never calls
 * into it) ---- */

/* One transfer of a batch: iovcnt (1..PC_IO_MAX_IOV) buffers, consecutive
 * in the pool from off, through the data descriptor (alignment rules as
 * above).  result: 0 or -errno once the batch returned. */
struct pc_io_op {
  const struct iovec *iov;
  int iovcnt;
  bool write;
  uint64_t off;
  int result;
};

/* Issue every op at once (io_uring when io->uring, else one after another)
 * and wait for all: on return no op is in flight, whatever the result.
 * Returns 0 if all transferred fully, else the first op's -errno. */
int pc_io_data_batch (struct pc_io *io, struct pc_io_op *ops, unsigned n);
/* Create this thread's ring now rather than at its first batch: for
 * threads that live as long as the pool (the core's workers, write-back),
 * so their file descriptors exist from the start (a leak check that
 * counts fds then sees no growth that is not one). */
void pc_io_thread_prepare (const struct pc_io *io);

/* Choose the batch backend: AUTO uses io_uring if this kernel lets us
 * create a ring (else *why says why not), URING fails (-errno) if it
 * cannot, SYNC never uses it (*why = "disabled by io=sync"). */
int pc_io_set_backend (struct pc_io *io, enum pc_io_backend mode,
                       const char **why);
/* Can a ring be created here?  0, or -errno and a static reason. */
int pc_io_probe_uring (const char **why);
/* Deallocate and zero [off, off+count): reads return zeros afterwards. */
int pc_io_punch (struct pc_io *io, uint64_t count, uint64_t off);
/* Zero [off, off+count), keeping it allocated. */
int pc_io_zero (struct pc_io *io, uint64_t count, uint64_t off);
/* The same, only by FALLOC_FL_ZERO_RANGE (a metadata operation): 0, or
 * -EOPNOTSUPP (no fallback tried) or another -errno. */
int pc_io_zero_fast (struct pc_io *io, uint64_t count, uint64_t off);
/* Data and metadata of the file durable (fdatasync). */
int pc_io_sync (struct pc_io *io);

#endif
