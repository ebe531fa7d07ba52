/* punchcache: the client of a remote origin export (issue 15).
 *
 * An origin is a remote NBD export, named by any libnbd URI (nbd://,
 * nbd+unix://, nbds://, ...), that a volume reads through.  This module
 * (lib/origin/origin.c, a bottom layer beside lib/util) keeps 1..16
 * connections to it, each driven by its own thread with libnbd's
 * asynchronous API, spreads requests over the connections that are up,
 * reconnects in the background when one dies, and turns every failure
 * into -errno plus a pc_error() message naming the URI.
 *
 * Errors: every function returning int returns 0 on success and -errno on
 * failure, with a sentence in pc_last_error() of the calling thread.  Data
 * is never invented: a read that did not get the origin's bytes fails (EIO),
 * it never returns zeros.
 *
 * Thread safety: every function may be called from any number of threads
 * at once on an open origin, except pc_origin_close(), which must be the
 * last call (no call may be running or start after it begins; callbacks
 * of asynchronous reads still running are completed with EIO by it).
 */
#ifndef PUNCHCACHE_ORIGIN_H
#define PUNCHCACHE_ORIGIN_H

#include <stdbool.h>
#include <stdint.h>

struct pc_origin;

/* Counters since open; a consistent-enough snapshot (each field is read
 * atomically, the set is not). */
struct pc_origin_stats {
  bool connected;                 /* at least one connection up */
  unsigned connections, connections_up;
  uint64_t reads, bytes_read, writes, bytes_written, zeroes, trims, flushes;
  uint64_t errors;                /* requests (as the caller made them)
                                   * that failed */
  uint64_t reconnects;            /* successful reconnections after a drop */
  uint64_t timeouts;              /* NBD commands that got no reply in time
                                   * (each drops its connection) */
  uint64_t read_ns_total, read_ns_max;   /* latency of origin reads (whole
                                          * caller requests, submission to
                                          * completion) */
  uint64_t in_flight;             /* caller requests not yet completed */
};

#define PC_ORIGIN_MAX_CONNECTIONS 16
/* Commands one connection has outstanding at the server at most; more wait
 * in the connection's queue. */
#define PC_ORIGIN_MAX_IN_FLIGHT 64
/* Requests are split at the origin's maximum block size, capped here. */
#define PC_ORIGIN_MAX_REQUEST (32u * 1024 * 1024)
/* Default reply (and connect) timeout. */
#define PC_ORIGIN_DEFAULT_TIMEOUT_MS 30000u
/* Sizes beyond this are refused as implausible (2^60). */
#define PC_ORIGIN_MAX_SIZE (UINT64_C (1) << 60)

/* Connect `connections` (1..16) connections to uri, requesting the
 * base:allocation meta context.  writable: the caller will write
 * (writethrough mode): a read-only origin is refused with -EROFS.  Every
 * connection must report the same size, 0 < size <= 2^60.
 * Failure (nothing is left running):
 *   -EINVAL        "origin=URI: not a valid NBD URI: <libnbd's words>"
 *                  (also connections out of range)
 *   -ECONNREFUSED  "origin URI: cannot connect: <libnbd error>" (refused)
 *   -EHOSTUNREACH  same words (no such socket, host or network unreachable,
 *                  connect timed out)
 *   -EIO           same words (any other failure: handshake, TLS, export
 *                  not found), or a size out of range / disagreeing
 *   -EROFS         writable and the origin is read-only
 *   -ENOMEM
 * The connect (and handshake) of open is bounded by the default timeout. */
int pc_origin_open (const char *uri, unsigned connections, bool writable,
                    struct pc_origin **out);
/* Stop the connection threads and free everything.  Requests still queued
 * or in flight complete with -EIO ("closed").  NULL is allowed. */
void pc_origin_close (struct pc_origin *o);

uint64_t pc_origin_size (const struct pc_origin *o);
const char *pc_origin_uri (const struct pc_origin *o);
bool pc_origin_readonly (const struct pc_origin *o);  /* the origin said so */
unsigned pc_origin_max_request (const struct pc_origin *o); /* split size */

/* How long an NBD command may wait for its reply, and a (re)connect for
 * its handshake, before it fails with EIO ("timed out") and the connection
 * is dropped and reconnected.  ms 0 = the default (30 s).  Applies to
 * commands submitted afterwards. */
void pc_origin_set_timeout (struct pc_origin *o, unsigned ms);

/* Blocking calls (any thread, many at once).  0 or -errno with a pc_error
 * message naming the URI:
 *   -EINVAL  range past the end of the origin or overflowing
 *   -EROFS   a write, zero or trim on a read-only origin
 *   -EIO     the origin failed the command (its errno is in the message),
 *            the connection died with it in flight, no connection is up
 *            ("origin URI is unreachable (reconnecting since N s): <last
 *            error>"), or no reply came within the timeout
 * count 0 succeeds at once.  Large requests are split at
 * pc_origin_max_request() and the parts may run on several connections in
 * parallel; on failure the buffer (pread) or the origin range (writes)
 * holds an unspecified mix of old and new bytes. */
int pc_origin_pread (struct pc_origin *o, void *buf, uint64_t count,
                     uint64_t offset);
int pc_origin_pwrite (struct pc_origin *o, const void *buf, uint64_t count,
                      uint64_t offset, bool fua);
/* The range reads as zeros afterwards: NBD_CMD_WRITE_ZEROES (which may
 * trim) or, if the origin does not support it, writes of zeros. */
int pc_origin_zero (struct pc_origin *o, uint64_t count, uint64_t offset,
                    bool fua);
/* Advisory: NBD_CMD_TRIM if the origin supports it, else nothing (0).
 * The range's contents are unspecified afterwards. */
int pc_origin_trim (struct pc_origin *o, uint64_t count, uint64_t offset,
                    bool fua);
/* NBD_CMD_FLUSH on every connection that is up (writes may have gone to
 * any of them); 0 at once if the origin does not support flush. */
int pc_origin_flush (struct pc_origin *o);

/* Extents of [offset, offset+count): fn(opaque, off, len, zero) for
 * consecutive runs covering exactly the range, in order; zero = the origin
 * said the run reads as zeros (NBD_STATE_ZERO).  Without base:allocation
 * support, or on any error (origin unreachable, a malformed reply), the
 * rest of the range is one run with zero=false: zeros are never claimed
 * unless the origin said so.  The origin's entries are clipped to the
 * range; a zero-length entry ends a reply.  Returns 0, fn's first non-zero
 * return value (which stops the walk), or -EINVAL for a bad range.  fn runs
 * in the calling thread. */
int pc_origin_extents (struct pc_origin *o, uint64_t count, uint64_t offset,
                       int (*fn) (void *opaque, uint64_t off, uint64_t len,
                                  bool zero),
                       void *opaque);

/* Asynchronous read.  Returns 0 if the read was queued: cb(opaque, result)
 * is then called exactly once, from one of the origin's connection threads,
 * with result 0 or -errno (during the call pc_last_error() in that thread
 * explains a failure).  cb must not block for long (it holds up that
 * connection); it may submit further reads.  Returns -errno (and cb is not
 * called) if the request cannot be queued: a bad range, count 0, no
 * connection up, or the origin closing.  buf must stay valid until cb. */
int pc_origin_pread_async (struct pc_origin *o, void *buf, uint64_t count,
                           uint64_t offset,
                           void (*cb) (void *opaque, int result),
                           void *opaque);

void pc_origin_get_stats (struct pc_origin *o, struct pc_origin_stats *st);

#endif /* PUNCHCACHE_ORIGIN_H */
