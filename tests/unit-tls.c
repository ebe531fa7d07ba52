/* Description: unit tests of punchcached's TLS module (server/tls.c)
 * without the server: a real GnuTLS client in a thread, on one end of a
 * socketpair, against pcd_tls_session_* driven non-blocking with poll(2)
 * on the other end, as server/conn.c drives it.
 *
 * Credentials are made at test time with certtool and psktool (gnutls-bin)
 * in a temporary directory: a CA, a server certificate for "localhost", a
 * client certificate, a client certificate from a rogue CA with our CA's
 * name but another key (a client only offers a certificate whose issuer
 * the server names), a CRL revoking the client, and PSK files.  Skips (77) without the tools.
 *
 * Checks: X.509 handshake (the client verifies the server as "localhost")
 * and 256 KiB each way, with small server reads that must drain
 * pcd_tls_pending(); close_notify reaching the client; PSK likewise with
 * the username as peer; a client hanging up after the handshake reads as
 * end of stream, and pcd_tls_error says whether it sent close_notify;
 * --tls-verify-peer passing a good client
 * certificate (peer = its DN) and refusing none, an untrusted one and a
 * revoked one; a wrong PSK and an unknown PSK user refused; and
 * pcd_tls_creds_load's errors: exactly one of dir/psk, missing and
 * unreadable files, garbage certificates, a key not matching its
 * certificate, and each kind of malformed PSK line, each naming the file.
 *
 * Every wait is bounded: a stuck handshake or transfer fails the test
 * (10 s), a client thread that does not finish exits the program.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <gnutls/gnutls.h>

#include "tls.h"

#define XFER (256 * 1024)       /* bytes each way */
#define DEADLINE_MS 10000       /* one handshake or transfer */
#define SMALL_READ 1000         /* < a TLS record: leaves data pending */

static char dir[64];            /* the temporary directory */

/* ---- helpers ---- */

static char *
path (const char *name)
{
  static char bufs[8][256];
  static int next;
  char *p = bufs[next++ % 8];

  snprintf (p, sizeof bufs[0], "%s/%s", dir, name);
  return p;
}

static int run (const char *fmt, ...)
  __attribute__ ((format (printf, 1, 2)));

static int
run (const char *fmt, ...)
{
  char cmd[2048];
  va_list ap;
  int n;

  va_start (ap, fmt);
  n = vsnprintf (cmd, sizeof cmd, fmt, ap);
  va_end (ap);
  if (n < 0 || (size_t) n >= sizeof cmd)
    return -1;
  return system (cmd);
}

static void
write_text (const char *file, const char *text)
{
  FILE *f = fopen (file, "w");

  assert_non_null (f);
  assert_int_equal (fputs (text, f) >= 0, 1);
  assert_int_equal (fclose (f), 0);
}

static uint64_t
ms_now (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

/* Byte I of stream SEED: a pattern that detects lost, repeated or
 * reordered bytes. */
static unsigned char
pat (unsigned seed, size_t i)
{
  return (unsigned char) ((i * 2654435761u) >> 13 ^ seed ^ (i >> 8));
}

/* The "user:hexkey" line of a psktool file: returns the hex key. */
static char *
psk_key_of (const char *file, char *buf, size_t len)
{
  FILE *f = fopen (file, "r");
  char *colon;

  assert_non_null (f);
  assert_non_null (fgets (buf, (int) len, f));
  fclose (f);
  buf[strcspn (buf, "\r\n")] = '\0';
  colon = strchr (buf, ':');
  assert_non_null (colon);
  return colon + 1;
}

/* ---- credentials, made once ---- */

static const char ca_tmpl[] =
  "cn = punchcache unit-tls CA\nca\ncert_signing_key\nexpiration_days = 2\n";

static const char server_tmpl[] =
  "cn = localhost\ndns_name = localhost\ntls_www_server\n"
  "signing_key\nencryption_key\nexpiration_days = 2\n";
static const char client_tmpl[] =
  "cn = unit-tls client\ntls_www_client\nsigning_key\nencryption_key\n"
  "expiration_days = 2\n";
static const char crl_tmpl[] = "crl_next_update = 2\ncrl_number = 1\n";

#define CT "certtool --key-type=ecdsa </dev/null >>'%s/log' 2>&1 "

static int
make_credentials (void)
{
  const char *l = dir;

  write_text (path ("ca.info"), ca_tmpl);
  write_text (path ("server.info"), server_tmpl);
  write_text (path ("client.info"), client_tmpl);
  write_text (path ("crl.info"), crl_tmpl);
  if (run ("mkdir '%s/x509' '%s/x509crl' '%s/rogue'", dir, dir, dir) != 0)
    return -1;
#define SIGNED(key, cert, tmpl, ca)                                      \
  run (CT "--generate-privkey --outfile '%s/" key "'", l, dir) != 0 ||   \
  run (CT "--generate-certificate --load-privkey '%s/" key "' "         \
       "--load-ca-certificate '%s/" ca "-cert.pem' "                     \
       "--load-ca-privkey '%s/" ca "-key.pem' --template '%s/" tmpl "' "  \
       "--outfile '%s/" cert "'", l, dir, dir, dir, dir, dir) != 0
#define SELF(name, tmpl)                                                 \
  run (CT "--generate-privkey --outfile '%s/" name "-key.pem'", l, dir)  \
  != 0 ||                                                                \
  run (CT "--generate-self-signed --load-privkey '%s/" name "-key.pem' " \
       "--template '%s/" tmpl "' --outfile '%s/" name "-cert.pem'",      \
       l, dir, dir, dir) != 0
  if (SELF ("x509/ca", "ca.info") || SELF ("rogue/ca", "ca.info") ||
      SIGNED ("x509/server-key.pem", "x509/server-cert.pem", "server.info",
              "x509/ca") ||
      SIGNED ("client-key.pem", "client-cert.pem", "client.info", "x509/ca")
      || SIGNED ("rogue-key.pem", "rogue-cert.pem", "client.info",
                 "rogue/ca"))
    return -1;
#undef SELF
#undef SIGNED
  /* x509crl: the same CA and server, and a CRL revoking the client. */
  if (run ("cp '%s/x509/'*.pem '%s/x509crl/'", dir, dir) != 0 ||
      run (CT "--generate-crl --load-ca-privkey '%s/x509/ca-key.pem' "
           "--load-ca-certificate '%s/x509/ca-cert.pem' "
           "--load-certificate '%s/client-cert.pem' --template '%s/crl.info' "
           "--outfile '%s/x509crl/ca-crl.pem'", l, dir, dir, dir, dir, dir)
      != 0)
    return -1;
  /* The CA's key has no business in the server's directory. */
  unlink (path ("x509/ca-key.pem"));
  unlink (path ("x509crl/ca-key.pem"));
  if (run ("psktool -u alice -p '%s/keys.psk' >>'%s/log' 2>&1", dir, dir)
      != 0 ||
      run ("psktool -u alice -p '%s/wrong.psk' >>'%s/log' 2>&1", dir, dir)
      != 0)
    return -1;
  return 0;
}

/* ---- the client thread ---- */

struct client {
  /* in */
  int fd;
  const char *psk_user, *psk_key;       /* PSK, or NULL: X.509 */
  const char *cert, *key;               /* client certificate, optional */
  atomic_bool send_blocked;             /* the server saw -EAGAIN */
  int hangup;                           /* after the handshake: */
#define HANGUP_ABRUPT 1                 /* close the socket */
#define HANGUP_CLEAN 2                  /* close_notify, then close */
  /* out */
  int handshake;                        /* GnuTLS code */
  bool data_ok;                         /* received and sent XFER */
  bool eof_ok;                          /* then a clean close_notify */
  char why[256];
};

static void *
client_main (void *arg)
{
  struct client *c = arg;
  gnutls_session_t s = NULL;
  gnutls_certificate_credentials_t xc = NULL;
  gnutls_psk_client_credentials_t pc = NULL;
  static unsigned char buf[XFER];
  struct timeval tv = { .tv_sec = DEADLINE_MS / 1000 };
  size_t got = 0, sent = 0, i;
  ssize_t n;
  int g;

  setsockopt (c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt (c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  c->handshake = GNUTLS_E_INTERNAL_ERROR;
  if (gnutls_init (&s, GNUTLS_CLIENT | GNUTLS_NO_SIGNAL) < 0)
    goto out;
  if (c->psk_user) {
    gnutls_datum_t key = { (unsigned char *) c->psk_key,
                           (unsigned) strlen (c->psk_key) };
    if (gnutls_psk_allocate_client_credentials (&pc) < 0 ||
        gnutls_psk_set_client_credentials (pc, c->psk_user, &key,
                                           GNUTLS_PSK_KEY_HEX) < 0 ||
        gnutls_credentials_set (s, GNUTLS_CRD_PSK, pc) < 0 ||
        gnutls_priority_set_direct (s, "NORMAL:+ECDHE-PSK:+DHE-PSK:+PSK",
                                    NULL) < 0)
      goto out;
  }
  else {
    if (gnutls_certificate_allocate_credentials (&xc) < 0 ||
        gnutls_certificate_set_x509_trust_file (xc, path ("x509/ca-cert.pem"),
                                                GNUTLS_X509_FMT_PEM) != 1 ||
        (c->cert &&
         gnutls_certificate_set_x509_key_file (xc, c->cert, c->key,
                                               GNUTLS_X509_FMT_PEM) < 0) ||
        gnutls_credentials_set (s, GNUTLS_CRD_CERTIFICATE, xc) < 0 ||
        gnutls_set_default_priority (s) < 0)
      goto out;
    /* The client checks the server too, as nbdinfo does. */
    gnutls_session_set_verify_cert (s, "localhost", 0);
  }
  gnutls_handshake_set_timeout (s, DEADLINE_MS);
  gnutls_transport_set_int (s, c->fd);
  do
    g = gnutls_handshake (s);
  while (g < 0 && gnutls_error_is_fatal (g) == 0);
  c->handshake = g;
  if (g < 0) {
    snprintf (c->why, sizeof c->why, "handshake: %s", gnutls_strerror (g));
    goto out;
  }

  if (c->hangup == HANGUP_CLEAN)
    gnutls_bye (s, GNUTLS_SHUT_WR);
  if (c->hangup)
    goto out;

  /* The server sends XFER bytes of pattern 1; we send back pattern 2.
   * Read nothing until its sends fill the socket (or 2 s): then a send
   * returned -EAGAIN, whatever the scheduling. */
  for (i = 0; i < 2000 && !atomic_load (&c->send_blocked); i++)
    usleep (1000);
  while (got < XFER) {
    n = gnutls_record_recv (s, buf + got, XFER - got);
    if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
      continue;
    if (n <= 0) {
      snprintf (c->why, sizeof c->why, "recv after %zu: %s", got,
                n == 0 ? "EOF" : gnutls_strerror ((int) n));
      goto out;
    }
    got += (size_t) n;
  }
  for (i = 0; i < XFER; i++)
    if (buf[i] != pat (1, i)) {
      snprintf (c->why, sizeof c->why, "byte %zu received wrong", i);
      goto out;
    }
  for (i = 0; i < XFER; i++)
    buf[i] = pat (2, i);
  while (sent < XFER) {
    n = gnutls_record_send (s, buf + sent, XFER - sent);
    if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
      continue;
    if (n < 0) {
      snprintf (c->why, sizeof c->why, "send: %s", gnutls_strerror ((int) n));
      goto out;
    }
    sent += (size_t) n;
  }
  c->data_ok = true;
  do
    n = gnutls_record_recv (s, buf, 1);
  while (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED);
  c->eof_ok = n == 0;
  if (!c->eof_ok)
    snprintf (c->why, sizeof c->why, "no close_notify: %s",
              n > 0 ? "data" : gnutls_strerror ((int) n));
 out:
  if (s)
    gnutls_deinit (s);
  if (xc)
    gnutls_certificate_free_credentials (xc);
  if (pc)
    gnutls_psk_free_client_credentials (pc);
  shutdown (c->fd, SHUT_RDWR);
  return NULL;
}

/* ---- the server side, non-blocking ---- */

struct result {
  int handshake;                /* pcd_tls_handshake's final return */
  char err[512];
  bool data_ok;
  size_t pending_seen;          /* receives served from pcd_tls_pending */
  size_t send_eagain;           /* sends that returned -EAGAIN */
  char peer[256];
  ssize_t eof;                  /* with client.hangup: the last recv */
  struct client client;
};

/* Wait until FD is ready as WANT_WRITE says, or the deadline. */
static bool
wait_fd (int fd, bool want_write, uint64_t deadline)
{
  struct pollfd p = { .fd = fd, .events = want_write ? POLLOUT : POLLIN };
  uint64_t now = ms_now ();

  if (now >= deadline)
    return false;
  return poll (&p, 1, (int) (deadline - now)) == 1;
}

static void
serve (struct pcd_tls_session *s, int fd, struct result *r)
{
  static unsigned char buf[XFER];
  uint64_t deadline = ms_now () + DEADLINE_MS;
  size_t done = 0, i;
  bool ww;
  ssize_t n;

  for (i = 0; i < XFER; i++)
    buf[i] = pat (1, i);
  while (done < XFER) {
    n = pcd_tls_send (s, buf + done, XFER - done, &ww);
    if (n == -EAGAIN) {
      r->send_eagain++;
      atomic_store (&r->client.send_blocked, true);
      if (!wait_fd (fd, ww, deadline))
        return;
      continue;                 /* same buffer and length */
    }
    assert_true (n > 0);
    done += (size_t) n;
  }

  memset (buf, 0, sizeof buf);
  done = 0;
  while (done < XFER) {
    size_t want = XFER - done < SMALL_READ ? XFER - done : SMALL_READ;
    n = pcd_tls_recv (s, buf + done, want, &ww);
    if (n == -EAGAIN) {
      assert_int_equal (pcd_tls_pending (s), 0);
      if (!wait_fd (fd, ww, deadline))
        return;
      continue;
    }
    assert_true (n > 0);
    done += (size_t) n;
    /* Drain what GnuTLS already decrypted before waiting again. */
    while (done < XFER && pcd_tls_pending (s) > 0) {
      want = XFER - done < SMALL_READ ? XFER - done : SMALL_READ;
      n = pcd_tls_recv (s, buf + done, want, &ww);
      assert_true (n > 0);
      done += (size_t) n;
      r->pending_seen++;
    }
  }
  for (i = 0; i < XFER; i++)
    if (buf[i] != pat (2, i))
      return;
  r->data_ok = true;
}

/* Run one connection: CLIENT (its fd filled in here) against a session
 * on CREDS.  Fills *r; the caller checks. */
static void
connect_pair (struct pcd_tls_creds *creds, struct result *r)
{
  struct pcd_tls_session *s = NULL;
  pthread_t th;
  struct timespec ts;
  uint64_t deadline;
  int sv[2];
  bool ww;

  assert_int_equal (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
                    0);
  assert_int_equal (fcntl (sv[0], F_SETFL, O_NONBLOCK), 0);
  /* A small send buffer: XFER cannot go out without -EAGAIN, so the
   * retry with the same buffer and want_write are exercised. */
  assert_int_equal (setsockopt (sv[0], SOL_SOCKET, SO_SNDBUF,
                                &(int) { 16384 }, sizeof (int)), 0);
  r->client.fd = sv[1];
  assert_int_equal (pthread_create (&th, NULL, client_main, &r->client), 0);

  assert_int_equal (pcd_tls_session_new (creds, sv[0], &s, r->err,
                                         sizeof r->err), 0);
  /* Nothing goes through a session before its handshake. */
  assert_int_equal (pcd_tls_recv (s, r->peer, 1, &ww), -ENOTCONN);
  assert_int_equal (pcd_tls_pending (s), 0);
  deadline = ms_now () + DEADLINE_MS;
  for (;;) {
    r->handshake = pcd_tls_handshake (s, &ww, r->err, sizeof r->err);
    if (r->handshake != -EAGAIN)
      break;
    if (!wait_fd (sv[0], ww, deadline)) {
      r->handshake = -ETIMEDOUT;
      break;
    }
  }
  if (r->handshake == 0 && r->client.hangup) {
    /* The end of the stream: 0, whether the client said goodbye or not;
     * pcd_tls_error tells which. */
    char byte;
    do {
      r->eof = pcd_tls_recv (s, &byte, 1, &ww);
    } while (r->eof == -EAGAIN && wait_fd (sv[0], ww, deadline));
    snprintf (r->err, sizeof r->err, "%s", pcd_tls_error (s));
  }
  else if (r->handshake == 0) {
    snprintf (r->peer, sizeof r->peer, "%s", pcd_tls_peer (s));
    serve (s, sv[0], r);
    snprintf (r->err, sizeof r->err, "%s", pcd_tls_error (s));
  }
  pcd_tls_session_free (s);     /* close_notify */
  shutdown (sv[0], SHUT_RDWR);
  atomic_store (&r->client.send_blocked, true);   /* stop waiting */

  clock_gettime (CLOCK_REALTIME, &ts);
  ts.tv_sec += 2 * DEADLINE_MS / 1000;
  if (pthread_timedjoin_np (th, NULL, &ts) != 0) {
    fprintf (stderr, "unit-tls: the client thread is stuck\n");
    exit (1);
  }
  close (sv[0]);
  close (sv[1]);
}

static struct pcd_tls_creds *
load_ok (const char *certdir, const char *psk, bool verify_peer)
{
  struct pcd_tls_config cfg = {
    .mode = PCD_TLS_REQUIRE, .certificates_dir = certdir, .psk_file = psk,
    .verify_peer = verify_peer,
  };
  struct pcd_tls_creds *c = NULL;
  char err[512] = "";
  int r = pcd_tls_creds_load (&cfg, &c, err, sizeof err);

  if (r != 0)
    fprintf (stderr, "pcd_tls_creds_load: %d %s\n", r, err);
  assert_int_equal (r, 0);
  assert_non_null (c);
  return c;
}

static void
expect_success (const struct result *r)
{
  if (r->handshake != 0 || !r->data_ok || !r->client.data_ok ||
      !r->client.eof_ok)
    fprintf (stderr, "server: handshake %d (%s) data %d; client: %s\n",
             r->handshake, r->err, r->data_ok, r->client.why);
  assert_int_equal (r->handshake, 0);
  assert_int_equal (r->client.handshake, 0);
  assert_string_equal (r->err, "");     /* no record error */
  assert_true (r->data_ok);
  assert_true (r->client.data_ok);
  assert_true (r->client.eof_ok);
  assert_true (r->pending_seen > 0);
  assert_true (r->send_eagain > 0);
}

/* The server must refuse the handshake with WANT (-errno) and an error
 * message containing SAY; the client must get no data. */
static void
expect_refused (const struct result *r, int want, const char *say)
{
  fprintf (stderr, "  refused as expected? %d: %s\n", r->handshake, r->err);
  assert_int_equal (r->handshake, want);
  assert_non_null (strstr (r->err, say));
  assert_false (r->client.data_ok);
}

/* ---- connection tests ---- */

static void
test_x509 (void **state)
{
  struct pcd_tls_creds *c = load_ok (path ("x509"), NULL, false);
  struct result r = { 0 };

  connect_pair (c, &r);
  expect_success (&r);
  assert_string_equal (r.peer, "");     /* no client certificate asked */
  fprintf (stderr, "  x509: %zu sends waited, %zu reads from pending\n",
           r.send_eagain, r.pending_seen);
  pcd_tls_creds_free (c);
}

static void
test_x509_verify_good (void **state)
{
  struct pcd_tls_creds *c = load_ok (path ("x509"), NULL, true);
  struct result r = { .client = { .cert = path ("client-cert.pem"),
                                  .key = path ("client-key.pem") } };

  connect_pair (c, &r);
  expect_success (&r);
  assert_non_null (strstr (r.peer, "CN=unit-tls client"));
  pcd_tls_creds_free (c);
}

static void
test_x509_verify_none (void **state)
{
  struct pcd_tls_creds *c = load_ok (path ("x509"), NULL, true);
  struct result r = { 0 };

  connect_pair (c, &r);
  expect_refused (&r, -EACCES, "no certificate");
  pcd_tls_creds_free (c);
}

static void
test_x509_verify_untrusted (void **state)
{
  struct pcd_tls_creds *c = load_ok (path ("x509"), NULL, true);
  struct result r = { .client = { .cert = path ("rogue-cert.pem"),
                                  .key = path ("rogue-key.pem") } };

  connect_pair (c, &r);
  expect_refused (&r, -EACCES, "NOT trusted");
  pcd_tls_creds_free (c);
}

static void
test_x509_verify_revoked (void **state)
{
  struct pcd_tls_creds *c = load_ok (path ("x509crl"), NULL, true);
  struct result r = { .client = { .cert = path ("client-cert.pem"),
                                  .key = path ("client-key.pem") } };

  connect_pair (c, &r);
  expect_refused (&r, -EACCES, "revoked");
  pcd_tls_creds_free (c);
}

static void
test_psk (void **state)
{
  struct pcd_tls_creds *c = load_ok (NULL, path ("keys.psk"), false);
  char line[1200];
  struct result r = { .client = {
      .psk_user = "alice",
      .psk_key = psk_key_of (path ("keys.psk"), line, sizeof line) } };

  connect_pair (c, &r);
  expect_success (&r);
  assert_string_equal (r.peer, "alice");
  pcd_tls_creds_free (c);
}

static void
test_psk_wrong_key (void **state)
{
  struct pcd_tls_creds *c = load_ok (NULL, path ("keys.psk"), false);
  char line[1200];
  struct result r = { .client = {
      .psk_user = "alice",
      .psk_key = psk_key_of (path ("wrong.psk"), line, sizeof line) } };

  connect_pair (c, &r);
  expect_refused (&r, -EPROTO, "PSK username \"alice\"");
  pcd_tls_creds_free (c);
}

static void
test_psk_unknown_user (void **state)
{
  struct pcd_tls_creds *c = load_ok (NULL, path ("keys.psk"), false);
  char line[1200];
  struct result r = { .client = {
      .psk_user = "mallory\n",
      .psk_key = psk_key_of (path ("keys.psk"), line, sizeof line) } };

  connect_pair (c, &r);
  expect_refused (&r, -EPROTO, "unknown PSK username \"mallory?\"");
  pcd_tls_creds_free (c);
}

/* The client hangs up after the handshake: with close_notify, or not. */
static void
test_hangup (void **state)
{
  struct pcd_tls_creds *c = load_ok (NULL, path ("keys.psk"), false);
  char line[1200];
  struct result r = { .client = {
      .psk_user = "alice", .hangup = HANGUP_CLEAN,
      .psk_key = psk_key_of (path ("keys.psk"), line, sizeof line) } };

  connect_pair (c, &r);
  assert_int_equal (r.handshake, 0);
  assert_int_equal (r.eof, 0);
  assert_string_equal (r.err, "");

  memset (&r, 0, sizeof r);
  r.client.psk_user = "alice";
  r.client.psk_key = line + strlen ("alice:");
  r.client.hangup = HANGUP_ABRUPT;
  connect_pair (c, &r);
  assert_int_equal (r.handshake, 0);
  assert_int_equal (r.eof, 0);
  fprintf (stderr, "  abrupt hang-up: %s\n", r.err);
  assert_non_null (strstr (r.err, "non-properly terminated"));
  pcd_tls_creds_free (c);
}

/* ---- credential errors ---- */

/* pcd_tls_creds_load must fail with WANT and say each of SAY1, SAY2. */
static void
expect_load_fail (const char *certdir, const char *psk, bool verify_peer,
                  int want, const char *say1, const char *say2)
{
  struct pcd_tls_config cfg = {
    .mode = PCD_TLS_ON, .certificates_dir = certdir, .psk_file = psk,
    .verify_peer = verify_peer,
  };
  struct pcd_tls_creds *c = (struct pcd_tls_creds *) &cfg; /* not NULL */
  char err[512] = "";
  int r = pcd_tls_creds_load (&cfg, &c, err, sizeof err);

  fprintf (stderr, "  %d: %s\n", r, err);
  assert_int_equal (r, want);
  assert_null (c);
  assert_non_null (strstr (err, say1));
  if (say2)
    assert_non_null (strstr (err, say2));
}

static void
test_config (void **state)
{
  struct pcd_tls_config off = { .mode = PCD_TLS_OFF,
                                .certificates_dir = "/nonexistent" };
  struct pcd_tls_creds *c = (struct pcd_tls_creds *) &off;
  char err[256];

  assert_int_equal (pcd_tls_creds_load (&off, &c, err, sizeof err), 0);
  assert_null (c);
  expect_load_fail (NULL, NULL, false, -EINVAL, "--tls-certificates",
                    "--tls-psk");
  expect_load_fail (path ("x509"), path ("keys.psk"), false, -EINVAL,
                    "cannot be used together", NULL);
}

/* A copy of x509/ named NAME with FILE replaced by CONTENT (NULL: removed,
 * "" : made a directory). */
static const char *
x509_variant (const char *name, const char *file, const char *content)
{
  char *d = path (name);
  char f[512];

  assert_int_equal (run ("rm -rf '%s' && cp -r '%s' '%s'", d,
                         path ("x509"), d), 0);
  snprintf (f, sizeof f, "%s/%s", d, file);
  unlink (f);
  if (content && *content)
    write_text (f, content);
  else if (content)
    assert_int_equal (mkdir (f, 0700), 0);
  return d;
}

static void
test_x509_errors (void **state)
{
  const char *d;

  expect_load_fail (path ("nonexistent"), NULL, false, -ENOENT,
                    "nonexistent", "No such file");
  expect_load_fail (path ("keys.psk"), NULL, false, -ENOTDIR,
                    "keys.psk", "not a directory");

  d = x509_variant ("v-nokey", "server-key.pem", NULL);
  expect_load_fail (d, NULL, false, -ENOENT, "v-nokey/server-key.pem",
                    "No such file");
  d = x509_variant ("v-nocert", "server-cert.pem", NULL);
  expect_load_fail (d, NULL, false, -ENOENT, "v-nocert/server-cert.pem",
                    "No such file");
  /* Unreadable: root reads anything, so as root use a directory. */
  if (geteuid () == 0) {
    d = x509_variant ("v-dirkey", "server-key.pem", "");
    expect_load_fail (d, NULL, false, -EISDIR, "v-dirkey/server-key.pem",
                      "directory");
  }
  else {
    d = x509_variant ("v-unreadable", "server-key.pem", NULL);
    assert_int_equal (run ("cp '%s' '%s/server-key.pem' && chmod 0 "
                           "'%s/server-key.pem'",
                           path ("x509/server-key.pem"), d, d), 0);
    expect_load_fail (d, NULL, false, -EACCES,
                      "v-unreadable/server-key.pem", "Permission denied");
  }
  d = x509_variant ("v-badcert", "server-cert.pem", "not a certificate\n");
  expect_load_fail (d, NULL, false, -EINVAL, "v-badcert/server-cert.pem: ",
                    "not a PEM certificate");
  d = x509_variant ("v-badkey", "server-key.pem", "-----BEGIN PRIVATE KEY"
                    "-----\nAAAA\n-----END PRIVATE KEY-----\n");
  expect_load_fail (d, NULL, false, -EINVAL, "v-badkey/server-key.pem: ",
                    "not a PEM private key");
  d = x509_variant ("v-mismatch", "server-key.pem", NULL);
  assert_int_equal (run ("cp '%s' '%s/server-key.pem'",
                         path ("client-key.pem"), d), 0);
  expect_load_fail (d, NULL, false, -EINVAL, "v-mismatch/server-cert.pem",
                    "match");
  /* No CA: fine without --tls-verify-peer, an error with it. */
  d = x509_variant ("v-noca", "ca-cert.pem", NULL);
  pcd_tls_creds_free (load_ok (d, NULL, false));
  expect_load_fail (d, NULL, true, -ENOENT, "v-noca/ca-cert.pem",
                    "--tls-verify-peer");
  d = x509_variant ("v-badca", "ca-cert.pem", "garbage\n");
  expect_load_fail (d, NULL, false, -EINVAL, "v-badca/ca-cert.pem",
                    "no PEM certificate");
  d = x509_variant ("v-badcrl", "ca-crl.pem", "garbage\n");
  expect_load_fail (d, NULL, true, -EINVAL, "v-badcrl/ca-crl.pem: ",
                    "not a PEM CRL");
}

static void
test_psk_errors (void **state)
{
  static const struct {
    const char *content, *say;
  } bad[] = {
    { "alice\n", ":1: not \"username:hexkey\"" },
    { "alice:0g12\n", ":1: key is not hexadecimal" },
    { "alice:abc\n", ":1: key has an odd number" },
    { ":abcd\n", ":1: empty username" },
    { "alice:\n", ":1: empty key" },
    { "alice:abcd\nbob:12\nalice:3456\n", ":3: username \"alice\" given" },
    { "alice:abcd\n\nbob\n", ":3: not \"username" },
    { "", "no \"username:hexkey\" line" },
    { "\n\n", "no \"username:hexkey\" line" },
    { "al\001ce:abcd\n", ":1: control character" },
  };
  char *f = path ("bad.psk");
  size_t i;

  expect_load_fail (NULL, path ("missing.psk"), false, -ENOENT,
                    "missing.psk", "No such file");
  for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    write_text (f, bad[i].content);
    expect_load_fail (NULL, f, false, -EINVAL, "bad.psk", bad[i].say);
  }
  /* Accepted: CRLF line ends, blank lines, several users, no final
   * newline. */
  write_text (f, "alice:abcd\r\n\nbob:0123456789ABCDEF");
  pcd_tls_creds_free (load_ok (NULL, f, false));
}

static int
setup (void **state)
{
  strcpy (dir, "/tmp/unit-tls.XXXXXX");
  if (mkdtemp (dir) == NULL)
    return -1;
  if (make_credentials () != 0) {
    run ("cat '%s/log' >&2", dir);
    return -1;
  }
  return 0;
}

static int
teardown (void **state)
{
  run ("rm -rf '%s'", dir);
  return 0;
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_x509),
    cmocka_unit_test (test_x509_verify_good),
    cmocka_unit_test (test_x509_verify_none),
    cmocka_unit_test (test_x509_verify_untrusted),
    cmocka_unit_test (test_x509_verify_revoked),
    cmocka_unit_test (test_psk),
    cmocka_unit_test (test_psk_wrong_key),
    cmocka_unit_test (test_psk_unknown_user),
    cmocka_unit_test (test_hangup),
    cmocka_unit_test (test_config),
    cmocka_unit_test (test_x509_errors),
    cmocka_unit_test (test_psk_errors),
  };

  if (system ("certtool --version >/dev/null 2>&1") != 0 ||
      system ("psktool --version >/dev/null 2>&1") != 0) {
    fprintf (stderr, "SKIP: certtool/psktool (gnutls-bin) not installed\n");
    return 77;
  }
  return cmocka_run_group_tests_name ("tls", tests, setup, teardown);
}
