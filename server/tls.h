/* punchcached: TLS with GnuTLS (X.509 certificates and PSK), as nbdkit and
 * qemu-nbd offer it.
 *
 * What: credentials loaded once at start-up, and one non-blocking TLS
 * session per connection that server/conn.c drives from its event loop
 * (STARTTLS, then every byte of the connection goes through the session).
 *
 * Files, as nbdkit reads them:
 *  --tls-certificates=DIR: DIR/ca-cert.pem (trust anchors, needed with
 *    --tls-verify-peer), DIR/server-cert.pem, DIR/server-key.pem, and
 *    DIR/ca-crl.pem if present.
 *  --tls-psk=FILE: "username:hexkey" lines, as psktool(1) writes them.
 * --tls-verify-peer: X.509 only; the client must present a certificate
 *  that verifies against ca-cert.pem, or the handshake fails.
 *
 * Non-blocking contract: every call that can need the socket returns
 * -EAGAIN when it cannot go on, and sets *want_write to say which readiness
 * to wait for (true: writable, false: readable).  A send that returned
 * -EAGAIN must be retried with the same buffer and length (GnuTLS keeps the
 * record).  A receive may return data GnuTLS had already decrypted without
 * touching the socket: after a receive, pcd_tls_pending() says whether more
 * is buffered, and the caller must drain it before waiting for readability.
 *
 * Errors: functions return 0 / a byte count, or -errno; a sentence naming
 * the problem (and the file, for credentials) is written to err[errlen]
 * where an err buffer is taken.
 */
#ifndef PUNCHCACHED_TLS_H
#define PUNCHCACHED_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

enum pcd_tls_mode { PCD_TLS_OFF = 0, PCD_TLS_ON, PCD_TLS_REQUIRE };

struct pcd_tls_config {
  enum pcd_tls_mode mode;
  const char *certificates_dir;     /* --tls-certificates, or NULL */
  const char *psk_file;             /* --tls-psk, or NULL */
  bool verify_peer;                 /* --tls-verify-peer */
};

struct pcd_tls_creds;
struct pcd_tls_session;

/* Load the credentials (GnuTLS initialises itself: no global init call is
 * needed).  Every file is read and checked here, the PSK file completely
 * (a malformed line is an error naming FILE:LINE).  Exactly one of
 * certificates_dir and psk_file must be set when mode != OFF; with mode
 * OFF *out is NULL and nothing is loaded.  -EINVAL/-ENOENT/-EACCES/... with
 * err naming the file and GnuTLS's reason. */
int pcd_tls_creds_load (const struct pcd_tls_config *cfg,
                        struct pcd_tls_creds **out, char *err, size_t errlen);
void pcd_tls_creds_free (struct pcd_tls_creds *creds);

/* A server session on a connected non-blocking socket. */
int pcd_tls_session_new (struct pcd_tls_creds *creds, int fd,
                         struct pcd_tls_session **out, char *err,
                         size_t errlen);
/* 0 when the handshake is complete (and, with --tls-verify-peer, the
 * client's certificate verified), -EAGAIN to be called again when the
 * socket is ready as *want_write says, another -errno on failure (err
 * says why: GnuTLS's message): -EACCES for a client certificate missing
 * or rejected, -ECONNRESET if the client went away, -EPROTO otherwise.
 * recv/send before the handshake completed return -ENOTCONN. */
int pcd_tls_handshake (struct pcd_tls_session *s, bool *want_write,
                       char *err, size_t errlen);
/* > 0 bytes received, 0 at end of stream (the peer closed, cleanly or
 * not), -EAGAIN, or -errno (-ECONNRESET, -EPROTO for a TLS error). */
ssize_t pcd_tls_recv (struct pcd_tls_session *s, void *buf, size_t len,
                      bool *want_write);
/* > 0 bytes sent (may be fewer than len), -EAGAIN (retry with the same
 * buffer and length), or -errno. */
ssize_t pcd_tls_send (struct pcd_tls_session *s, const void *buf, size_t len,
                      bool *want_write);
/* GnuTLS's message for the last recv/send that failed or saw the peer
 * close without close_notify, for logs ("" if none). */
const char *pcd_tls_error (struct pcd_tls_session *s);
/* Decrypted bytes buffered inside GnuTLS, readable without the socket. */
size_t pcd_tls_pending (struct pcd_tls_session *s);
/* The authenticated PSK username or certificate DN, for logs ("" if
 * none); valid until the session is freed. */
const char *pcd_tls_peer (struct pcd_tls_session *s);
/* Best-effort close_notify (never blocks), then free.  The fd is not
 * closed. */
void pcd_tls_session_free (struct pcd_tls_session *s);

#endif
