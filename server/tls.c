/* punchcached: TLS with GnuTLS (server/tls.h).
 *
 * What: the credentials a server reads once at start-up (X.509 from a
 * directory laid out as nbdkit reads it, or a psktool(1) PSK file), and
 * one GnuTLS server session per connection, driven non-blocking from the
 * event loop of server/conn.c.
 *
 * Why this structure:
 *  - Every credential file is read here, with read(2), into memory and
 *    handed to GnuTLS's *_mem functions.  GnuTLS's *_file functions report
 *    a missing or unreadable file as a bare GNUTLS_E_FILE_ERROR; reading
 *    ourselves gives the user "DIR/server-key.pem: Permission denied", and
 *    each file is opened exactly once (no check-then-open race).
 *  - The PSK file is parsed and validated here, completely, at start-up:
 *    gnutls_psk_set_server_credentials_file would only read it at each
 *    handshake, so a typo would surface as handshakes failing for every
 *    client, long after the server said it started.  The keys live in
 *    memory (wiped on free) and a GnuTLS callback looks a username up.
 *  - The priority string is GnuTLS's "NORMAL" (the system's policy), plus,
 *    for PSK, the PSK key exchanges NORMAL leaves out: ECDHE-PSK and
 *    DHE-PSK (forward secrecy) and plain PSK: the string libnbd's client
 *    and qemu use, so every NBD client that speaks PSK finds a common suite.
 *  - The session is non-blocking: the fd is given to GnuTLS
 *    (gnutls_transport_set_int) and every GNUTLS_E_AGAIN becomes -EAGAIN
 *    with *want_write from gnutls_record_get_direction(), so the caller
 *    waits for the readiness GnuTLS actually needs (a handshake or a TLS
 *    1.3 key update can need to write inside a receive).
 *
 * Invariants:
 *  - creds are immutable after pcd_tls_creds_load and may be shared by
 *    sessions on any number of threads (GnuTLS credentials and priority
 *    caches are thread-safe for reading); they must outlive their sessions.
 *  - A session is used by one thread at a time (its connection's loop).
 *  - With verify_peer, pcd_tls_handshake returns 0 only after the client
 *    presented a certificate that verified against ca-cert.pem (and the
 *    CRL): GnuTLS verifies it during the handshake
 *    (gnutls_session_set_verify_cert) and we check the result again after.
 *  - pcd_tls_session_free never blocks: close_notify is attempted once,
 *    with GNUTLS_SHUT_WR, and dropped if the socket is not writable.
 *
 * No global initialisation is needed: GnuTLS >= 3.3 initialises itself
 * when the library is loaded (gnutls_global_init is implicit).
 *
 * Timeouts are the caller's: GnuTLS's own handshake timeout is disabled,
 * so conn.c's idle and handshake deadlines apply to TLS like to plaintext.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "tls.h"

#define PRIORITY_X509 "NORMAL"
#define PRIORITY_PSK  "NORMAL:+ECDHE-PSK:+DHE-PSK:+PSK"

/* Credential files are small; a larger one is a mistake (wrong path). */
#define MAX_CRED_FILE (16u << 20)
/* PSK file limits: psktool writes 32-byte keys by default and accepts up
 * to 512; TLS identities are up to 65535 bytes, we keep names readable. */
#define MAX_PSK_USERNAME 255
#define MAX_PSK_KEY 512
#define MAX_PSK_LINE 4096

/* Bounded retries of a record call that GnuTLS interrupted with a
 * non-fatal condition (EINTR, a warning alert). */
#define MAX_RETRIES 16

struct psk_entry {
  char *username;               /* NUL-terminated, printable, no ':' */
  size_t username_len;
  unsigned char *key;           /* wiped on free */
  size_t key_len;
};

enum cred_kind { CRED_X509, CRED_PSK };

struct pcd_tls_creds {
  enum cred_kind kind;
  bool verify_peer;             /* X.509: require a verified client cert */
  gnutls_priority_t priority;
  gnutls_certificate_credentials_t x509;  /* CRED_X509 */
  gnutls_psk_server_credentials_t psk;    /* CRED_PSK */
  struct psk_entry *keys;                 /* CRED_PSK, sorted as in file */
  size_t nkeys;
};

struct pcd_tls_session {
  struct pcd_tls_creds *creds;
  gnutls_session_t gs;
  bool handshake_done;
  bool peer_done;               /* peer[] computed */
  char *peer;                   /* "" or the PSK username / client DN */
  /* PSK: the username the client asked for, printable, for the error
   * message of a failed handshake; and whether we had a key for it. */
  char psk_user[64];
  bool psk_user_known;
  int last_error;               /* GnuTLS code of the last failed record call */
};

static void
seterr (char *err, size_t errlen, const char *fmt, ...)
{
  va_list ap;

  if (err == NULL || errlen == 0)
    return;
  va_start (ap, fmt);
  vsnprintf (err, errlen, fmt, ap);
  va_end (ap);
}

/* GnuTLS error code to -errno: allocation failures are -ENOMEM, file
 * errors -EIO, the rest are bad input (-EINVAL). */
static int
cred_errno (int gerr)
{
  switch (gerr) {
  case GNUTLS_E_MEMORY_ERROR: return -ENOMEM;
  case GNUTLS_E_FILE_ERROR: return -EIO;
  default: return -EINVAL;
  }
}

/* Read all of PATH into a NUL-terminated malloc'd buffer (free it with
 * free_file, which wipes it).  -errno, err set naming PATH.
 * With MISSING_OK, a missing file returns -ENOENT without setting err. */
static int
read_file (const char *path, gnutls_datum_t *out, bool missing_ok,
           char *err, size_t errlen)
{
  struct stat st;
  unsigned char *buf = NULL;
  size_t len = 0, cap;
  int fd, r = 0;

  fd = open (path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd == -1) {
    r = -errno;
    if (!(missing_ok && r == -ENOENT))
      seterr (err, errlen, "%s: %s", path, strerror (-r));
    return r;
  }
  if (fstat (fd, &st) == -1) {
    r = -errno;
    seterr (err, errlen, "%s: %s", path, strerror (-r));
    goto out;
  }
  if (S_ISDIR (st.st_mode)) {
    r = -EISDIR;
    seterr (err, errlen, "%s: is a directory, not a file", path);
    goto out;
  }
  if (S_ISREG (st.st_mode) && (uint64_t) st.st_size > MAX_CRED_FILE) {
    r = -EFBIG;
    seterr (err, errlen, "%s: %jd bytes, larger than any credential file "
            "(limit %u MiB)", path, (intmax_t) st.st_size,
            MAX_CRED_FILE >> 20);
    goto out;
  }
  /* The size is a hint (the file may change, or be a pipe): grow as
   * needed, always keeping a byte for the NUL, up to the limit. */
  cap = S_ISREG (st.st_mode) ? (size_t) st.st_size + 2 : 4096;
  for (;;) {
    ssize_t n;

    if (buf == NULL || len + 2 > cap) {
      size_t ncap = buf == NULL ? cap : 2 * cap;
      unsigned char *nb;

      if (ncap > MAX_CRED_FILE + 2)
        ncap = MAX_CRED_FILE + 2;
      nb = malloc (ncap);       /* not realloc: the old copy is wiped */
      if (nb == NULL) {
        r = -ENOMEM;
        seterr (err, errlen, "%s: out of memory", path);
        goto out;
      }
      if (buf) {
        memcpy (nb, buf, len);
        gnutls_memset (buf, 0, len);
        free (buf);
      }
      buf = nb;
      cap = ncap;
    }
    n = read (fd, buf + len, cap - 1 - len);
    if (n == -1 && errno == EINTR)
      continue;
    if (n == -1) {
      r = -errno;
      seterr (err, errlen, "%s: read: %s", path, strerror (-r));
      goto out;
    }
    if (n == 0)
      break;
    len += (size_t) n;
    if (len > MAX_CRED_FILE) {
      r = -EFBIG;
      seterr (err, errlen, "%s: larger than any credential file "
              "(limit %u MiB)", path, MAX_CRED_FILE >> 20);
      goto out;
    }
  }
  buf[len] = '\0';
  out->data = buf;
  out->size = (unsigned) len;
  buf = NULL;
 out:
  if (buf) {
    gnutls_memset (buf, 0, len);
    free (buf);
  }
  close (fd);
  return r;
}

/* Wipe and free a file buffer (it may hold a private key). */
static void
free_file (gnutls_datum_t *d)
{
  if (d->data) {
    gnutls_memset (d->data, 0, d->size);
    free (d->data);
  }
  d->data = NULL;
  d->size = 0;
}

static char *
path_join (const char *dir, const char *name, char *err, size_t errlen)
{
  char *p;

  if (asprintf (&p, "%s/%s", dir, name) == -1) {
    seterr (err, errlen, "out of memory");
    return NULL;
  }
  return p;
}

/* ---- X.509 ---- */

/* Parse the server's certificate chain and key on their own first, so that
 * an error names the one file that is wrong (gnutls_certificate_set_x509_
 * key_mem2 only says that one of the two is). */
static int
check_cert_file (const char *file, const gnutls_datum_t *d,
                 char *err, size_t errlen)
{
  gnutls_x509_crt_t *crts = NULL;
  unsigned n = 0, i;
  int g;

  g = gnutls_x509_crt_list_import2 (&crts, &n, d, GNUTLS_X509_FMT_PEM, 0);
  if (g < 0) {
    seterr (err, errlen, "%s: not a PEM certificate: %s", file,
            gnutls_strerror (g));
    return cred_errno (g);
  }
  for (i = 0; i < n; i++)
    gnutls_x509_crt_deinit (crts[i]);
  gnutls_free (crts);
  if (n == 0) {
    seterr (err, errlen, "%s: no PEM certificate in the file", file);
    return -EINVAL;
  }
  return 0;
}

static int
check_key_file (const char *file, const gnutls_datum_t *d,
                char *err, size_t errlen)
{
  gnutls_x509_privkey_t k;
  int g;

  if ((g = gnutls_x509_privkey_init (&k)) < 0) {
    seterr (err, errlen, "%s: %s", file, gnutls_strerror (g));
    return cred_errno (g);
  }
  g = gnutls_x509_privkey_import2 (k, d, GNUTLS_X509_FMT_PEM, NULL, 0);
  gnutls_x509_privkey_deinit (k);
  if (g < 0) {
    seterr (err, errlen, "%s: not a PEM private key (unencrypted): %s",
            file, gnutls_strerror (g));
    return cred_errno (g);
  }
  return 0;
}

static int
load_x509 (struct pcd_tls_creds *c, const char *dir, bool verify_peer,
           char *err, size_t errlen)
{
  char *ca = NULL, *crl = NULL, *cert = NULL, *key = NULL;
  gnutls_datum_t d_ca = { 0 }, d_crl = { 0 }, d_cert = { 0 }, d_key = { 0 };
  struct stat st;
  int r, g;

  if (stat (dir, &st) == -1) {
    r = -errno;
    seterr (err, errlen, "--tls-certificates=%s: %s", dir, strerror (-r));
    return r;
  }
  if (!S_ISDIR (st.st_mode)) {
    seterr (err, errlen, "--tls-certificates=%s: not a directory", dir);
    return -ENOTDIR;
  }

  if ((ca = path_join (dir, "ca-cert.pem", err, errlen)) == NULL ||
      (crl = path_join (dir, "ca-crl.pem", err, errlen)) == NULL ||
      (cert = path_join (dir, "server-cert.pem", err, errlen)) == NULL ||
      (key = path_join (dir, "server-key.pem", err, errlen)) == NULL) {
    r = -ENOMEM;
    goto out;
  }

  g = gnutls_certificate_allocate_credentials (&c->x509);
  if (g < 0) {
    c->x509 = NULL;
    r = cred_errno (g);
    seterr (err, errlen, "TLS credentials: %s", gnutls_strerror (g));
    goto out;
  }

  /* The server's certificate (chain) and key. */
  if ((r = read_file (cert, &d_cert, false, err, errlen)) < 0 ||
      (r = read_file (key, &d_key, false, err, errlen)) < 0)
    goto out;
  if ((r = check_cert_file (cert, &d_cert, err, errlen)) < 0 ||
      (r = check_key_file (key, &d_key, err, errlen)) < 0)
    goto out;
  g = gnutls_certificate_set_x509_key_mem2 (c->x509, &d_cert, &d_key,
                                            GNUTLS_X509_FMT_PEM, NULL, 0);
  if (g < 0) {
    r = cred_errno (g);
    seterr (err, errlen, "%s and %s: %s", cert, key, gnutls_strerror (g));
    goto out;
  }

  /* Trust anchors: needed to verify clients; loaded whenever present. */
  r = read_file (ca, &d_ca, !verify_peer, err, errlen);
  if (r == -ENOENT && !verify_peer)
    r = 0;
  else if (r < 0) {
    if (r == -ENOENT)
      seterr (err, errlen, "%s: %s (needed by --tls-verify-peer)", ca,
              strerror (ENOENT));
    goto out;
  }
  else {
    g = gnutls_certificate_set_x509_trust_mem (c->x509, &d_ca,
                                               GNUTLS_X509_FMT_PEM);
    if (g < 0) {
      r = cred_errno (g);
      seterr (err, errlen, "%s: not a PEM CA certificate: %s", ca,
              gnutls_strerror (g));
      goto out;
    }
    if (g == 0) {
      r = -EINVAL;
      seterr (err, errlen, "%s: no PEM certificate in the file", ca);
      goto out;
    }

    /* The revocation list, optional. */
    r = read_file (crl, &d_crl, true, err, errlen);
    if (r == -ENOENT)
      r = 0;
    else if (r < 0)
      goto out;
    else {
      g = gnutls_certificate_set_x509_crl_mem (c->x509, &d_crl,
                                               GNUTLS_X509_FMT_PEM);
      if (g < 0) {
        r = cred_errno (g);
        seterr (err, errlen, "%s: not a PEM CRL: %s", crl,
                gnutls_strerror (g));
        goto out;
      }
      if (g == 0) {
        r = -EINVAL;
        seterr (err, errlen, "%s: no PEM CRL in the file", crl);
        goto out;
      }
    }
  }

  /* For DHE with clients that do not negotiate RFC 7919 groups. */
  gnutls_certificate_set_known_dh_params (c->x509, GNUTLS_SEC_PARAM_MEDIUM);
  r = 0;
 out:
  free_file (&d_key);
  free_file (&d_cert);
  free_file (&d_ca);
  free_file (&d_crl);
  free (ca);
  free (crl);
  free (cert);
  free (key);
  return r;
}

/* ---- PSK ---- */

static int
hexval (int ch)
{
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

/* Parse one "username:hexkey" line (without its newline) into *e.
 * -EINVAL with err "FILE:LINENO: reason", -ENOMEM. */
static int
parse_psk_line (const char *file, size_t lineno, const char *line,
                size_t len, struct psk_entry *e, char *err, size_t errlen)
{
  const char *colon = memchr (line, ':', len);
  const char *hex;
  size_t ulen, hlen, i;

  if (colon == NULL) {
    seterr (err, errlen, "%s:%zu: not \"username:hexkey\" (no ':')",
            file, lineno);
    return -EINVAL;
  }
  ulen = (size_t) (colon - line);
  hex = colon + 1;
  hlen = len - ulen - 1;
  if (ulen == 0) {
    seterr (err, errlen, "%s:%zu: empty username", file, lineno);
    return -EINVAL;
  }
  if (ulen > MAX_PSK_USERNAME) {
    seterr (err, errlen, "%s:%zu: username longer than %d bytes",
            file, lineno, MAX_PSK_USERNAME);
    return -EINVAL;
  }
  for (i = 0; i < ulen; i++) {
    unsigned char ch = (unsigned char) line[i];
    if (ch < 0x20 || ch == 0x7f) {
      seterr (err, errlen, "%s:%zu: control character in the username",
              file, lineno);
      return -EINVAL;
    }
  }
  if (hlen == 0) {
    seterr (err, errlen, "%s:%zu: empty key", file, lineno);
    return -EINVAL;
  }
  if (hlen % 2 != 0) {
    seterr (err, errlen, "%s:%zu: key has an odd number of hex digits "
            "(%zu)", file, lineno, hlen);
    return -EINVAL;
  }
  if (hlen / 2 > MAX_PSK_KEY) {
    seterr (err, errlen, "%s:%zu: key longer than %d bytes",
            file, lineno, MAX_PSK_KEY);
    return -EINVAL;
  }
  for (i = 0; i < hlen; i++) {
    if (hexval ((unsigned char) hex[i]) < 0) {
      seterr (err, errlen, "%s:%zu: key is not hexadecimal (column %zu)",
              file, lineno, ulen + 2 + i);
      return -EINVAL;
    }
  }

  e->username = strndup (line, ulen);
  e->key = malloc (hlen / 2);
  if (e->username == NULL || e->key == NULL) {
    seterr (err, errlen, "%s: out of memory", file);
    return -ENOMEM;
  }
  e->username_len = ulen;
  e->key_len = hlen / 2;
  for (i = 0; i < e->key_len; i++)
    e->key[i] = (unsigned char) (hexval ((unsigned char) hex[2 * i]) << 4 |
                                 hexval ((unsigned char) hex[2 * i + 1]));
  return 0;
}

static void
free_psk_entries (struct psk_entry *keys, size_t n)
{
  size_t i;

  for (i = 0; i < n; i++) {
    if (keys[i].key) {
      gnutls_memset (keys[i].key, 0, keys[i].key_len);
      free (keys[i].key);
    }
    free (keys[i].username);
  }
  free (keys);
}

/* Parse the whole psktool file into c->keys.  Blank lines are skipped;
 * every other line must be valid, and usernames unique. */
static int
parse_psk_file (struct pcd_tls_creds *c, const char *file,
                char *err, size_t errlen)
{
  gnutls_datum_t d = { 0 };
  const char *p, *end;
  size_t lineno = 0, cap = 0, i;
  int r;

  r = read_file (file, &d, false, err, errlen);
  if (r < 0)
    return r;
  if (memchr (d.data, '\0', d.size) != NULL) {
    seterr (err, errlen, "%s: contains a NUL byte: not a psktool key file",
            file);
    r = -EINVAL;
    goto out;
  }

  p = (const char *) d.data;
  end = p + d.size;
  while (p < end) {
    const char *nl = memchr (p, '\n', (size_t) (end - p));
    size_t len = nl ? (size_t) (nl - p) : (size_t) (end - p);
    struct psk_entry e = { 0 };

    lineno++;
    if (len > 0 && p[len - 1] == '\r')
      len--;
    if (len > MAX_PSK_LINE) {
      seterr (err, errlen, "%s:%zu: line longer than %d bytes",
              file, lineno, MAX_PSK_LINE);
      r = -EINVAL;
      goto out;
    }
    if (len > 0) {
      r = parse_psk_line (file, lineno, p, len, &e, err, errlen);
      if (r == 0) {
        for (i = 0; i < c->nkeys; i++) {
          if (c->keys[i].username_len == e.username_len &&
              memcmp (c->keys[i].username, e.username, e.username_len) == 0) {
            seterr (err, errlen, "%s:%zu: username \"%s\" given twice",
                    file, lineno, e.username);
            r = -EINVAL;
            break;
          }
        }
      }
      if (r == 0 && c->nkeys == cap) {
        size_t ncap = cap ? 2 * cap : 8;
        struct psk_entry *nk = realloc (c->keys, ncap * sizeof *nk);
        if (nk == NULL) {
          seterr (err, errlen, "%s: out of memory", file);
          r = -ENOMEM;
        }
        else {
          c->keys = nk;
          cap = ncap;
        }
      }
      if (r < 0) {
        if (e.key) {
          gnutls_memset (e.key, 0, e.key_len);
          free (e.key);
        }
        free (e.username);
        goto out;
      }
      c->keys[c->nkeys++] = e;
    }
    p = nl ? nl + 1 : end;
  }

  if (c->nkeys == 0) {
    seterr (err, errlen, "%s: no \"username:hexkey\" line (make one with "
            "psktool -u NAME -p %s)", file, file);
    r = -EINVAL;
    goto out;
  }
  r = 0;
 out:
  free_file (&d);
  return r;
}

/* GnuTLS asks for the key of USERNAME during a PSK handshake.  The key is
 * copied into gnutls_malloc'd memory, which GnuTLS wipes and frees. */
static int
psk_lookup (gnutls_session_t gs, const gnutls_datum_t *username,
            gnutls_datum_t *key)
{
  struct pcd_tls_session *s = gnutls_session_get_ptr (gs);
  struct pcd_tls_creds *c;
  size_t i;

  if (s == NULL)
    return -1;
  c = s->creds;
  /* The name comes from the client: keep a printable, bounded copy. */
  for (i = 0; i < username->size && i < sizeof s->psk_user - 1; i++) {
    unsigned char ch = username->data[i];
    s->psk_user[i] = ch >= 0x20 && ch < 0x7f ? (char) ch : '?';
  }
  s->psk_user[i] = '\0';
  for (i = 0; i < c->nkeys; i++) {
    const struct psk_entry *e = &c->keys[i];
    if (e->username_len == username->size &&
        memcmp (e->username, username->data, username->size) == 0) {
      key->data = gnutls_malloc (e->key_len);
      if (key->data == NULL)
        return -1;
      memcpy (key->data, e->key, e->key_len);
      key->size = (unsigned) e->key_len;
      s->psk_user_known = true;
      return 0;
    }
  }
  return -1;                    /* unknown user: the handshake fails */
}

static int
load_psk (struct pcd_tls_creds *c, const char *file, char *err, size_t errlen)
{
  int r, g;

  r = parse_psk_file (c, file, err, errlen);
  if (r < 0)
    return r;
  g = gnutls_psk_allocate_server_credentials (&c->psk);
  if (g < 0) {
    c->psk = NULL;
    seterr (err, errlen, "TLS credentials: %s", gnutls_strerror (g));
    return cred_errno (g);
  }
  gnutls_psk_set_server_credentials_function2 (c->psk, psk_lookup);
  gnutls_psk_set_server_known_dh_params (c->psk, GNUTLS_SEC_PARAM_MEDIUM);
  return 0;
}

/* ---- credentials ---- */

int
pcd_tls_creds_load (const struct pcd_tls_config *cfg,
                    struct pcd_tls_creds **out, char *err, size_t errlen)
{
  struct pcd_tls_creds *c;
  const char *prio, *errpos = NULL;
  int r, g;

  *out = NULL;
  if (err && errlen)
    err[0] = '\0';
  if (cfg->mode == PCD_TLS_OFF)
    return 0;
  if (cfg->mode != PCD_TLS_ON && cfg->mode != PCD_TLS_REQUIRE) {
    seterr (err, errlen, "TLS: invalid mode %d", (int) cfg->mode);
    return -EINVAL;
  }
  if ((cfg->certificates_dir != NULL) == (cfg->psk_file != NULL)) {
    seterr (err, errlen, cfg->psk_file
            ? "--tls-certificates and --tls-psk cannot be used together"
            : "--tls=on/require needs --tls-certificates=DIR or "
              "--tls-psk=FILE");
    return -EINVAL;
  }
  if (gnutls_check_version ("3.7.0") == NULL) {
    seterr (err, errlen, "GnuTLS %s is older than 3.7.0",
            gnutls_check_version (NULL));
    return -ENOTSUP;
  }

  c = calloc (1, sizeof *c);
  if (c == NULL) {
    seterr (err, errlen, "out of memory");
    return -ENOMEM;
  }
  if (cfg->certificates_dir) {
    c->kind = CRED_X509;
    c->verify_peer = cfg->verify_peer;
    r = load_x509 (c, cfg->certificates_dir, cfg->verify_peer, err, errlen);
    prio = PRIORITY_X509;
  }
  else {
    /* --tls-verify-peer with PSK: knowing the key is the client's
     * authentication, so there is nothing more to verify (as nbdkit). */
    c->kind = CRED_PSK;
    r = load_psk (c, cfg->psk_file, err, errlen);
    prio = PRIORITY_PSK;
  }
  if (r < 0)
    goto fail;

  g = gnutls_priority_init (&c->priority, prio, &errpos);
  if (g < 0) {
    c->priority = NULL;
    seterr (err, errlen, "TLS priority \"%s\" (at \"%s\"): %s", prio,
            errpos ? errpos : "", gnutls_strerror (g));
    r = cred_errno (g);
    goto fail;
  }
  *out = c;
  return 0;
 fail:
  pcd_tls_creds_free (c);
  return r;
}

void
pcd_tls_creds_free (struct pcd_tls_creds *c)
{
  if (c == NULL)
    return;
  if (c->priority)
    gnutls_priority_deinit (c->priority);
  if (c->x509)
    gnutls_certificate_free_credentials (c->x509);
  if (c->psk)
    gnutls_psk_free_server_credentials (c->psk);
  free_psk_entries (c->keys, c->nkeys);
  free (c);
}

/* ---- sessions ---- */

int
pcd_tls_session_new (struct pcd_tls_creds *c, int fd,
                     struct pcd_tls_session **out, char *err, size_t errlen)
{
  struct pcd_tls_session *s;
  int g;

  *out = NULL;
  if (c == NULL || fd < 0) {
    seterr (err, errlen, "TLS session: no credentials or no socket");
    return -EINVAL;
  }
  s = calloc (1, sizeof *s);
  if (s == NULL) {
    seterr (err, errlen, "TLS session: out of memory");
    return -ENOMEM;
  }
  s->creds = c;

  /* No session tickets: a resumed session would skip the client
   * certificate check, and nothing here shares ticket keys anyway. */
  g = gnutls_init (&s->gs, GNUTLS_SERVER | GNUTLS_NONBLOCK |
                   GNUTLS_NO_SIGNAL | GNUTLS_NO_TICKETS);
  if (g < 0) {
    s->gs = NULL;
    goto gerr;
  }
  gnutls_session_set_ptr (s->gs, s);
  if ((g = gnutls_priority_set (s->gs, c->priority)) < 0)
    goto gerr;
  if (c->kind == CRED_X509) {
    g = gnutls_credentials_set (s->gs, GNUTLS_CRD_CERTIFICATE, c->x509);
    if (g < 0)
      goto gerr;
    if (c->verify_peer) {
      gnutls_certificate_server_set_request (s->gs, GNUTLS_CERT_REQUIRE);
      gnutls_session_set_verify_cert (s->gs, NULL, 0);
    }
    else
      gnutls_certificate_server_set_request (s->gs, GNUTLS_CERT_IGNORE);
  }
  else {
    g = gnutls_credentials_set (s->gs, GNUTLS_CRD_PSK, c->psk);
    if (g < 0)
      goto gerr;
  }
  gnutls_handshake_set_timeout (s->gs, 0);
  gnutls_transport_set_int (s->gs, fd);
  *out = s;
  return 0;

 gerr:
  seterr (err, errlen, "TLS session: %s", gnutls_strerror (g));
  pcd_tls_session_free (s);
  return g == GNUTLS_E_MEMORY_ERROR ? -ENOMEM : -EPROTO;
}

/* Why the client's certificate did not verify (STATUS from GnuTLS). */
static void
status_error (unsigned status, char *err, size_t errlen)
{
  gnutls_datum_t msg = { 0 };

  if (gnutls_certificate_verification_status_print
      (status, GNUTLS_CRT_X509, &msg, 0) == 0) {
    while (msg.size > 0 && msg.data[msg.size - 1] == ' ')
      msg.data[--msg.size] = '\0';
    seterr (err, errlen, "TLS handshake: client certificate rejected: %s",
            (const char *) msg.data);
    gnutls_free (msg.data);
  }
  else
    seterr (err, errlen, "TLS handshake: client certificate rejected "
            "(verification status 0x%x)", status);
}

/* Explain a failed handshake: GnuTLS's reason, the alert the client sent,
 * or why its certificate did not verify. */
static void
handshake_error (struct pcd_tls_session *s, int g, char *err, size_t errlen)
{
  if (g == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
    status_error (gnutls_session_get_verify_cert_status (s->gs), err, errlen);
    return;
  }
  if (g == GNUTLS_E_NO_CERTIFICATE_FOUND ||
      g == GNUTLS_E_CERTIFICATE_REQUIRED) {
    seterr (err, errlen, "TLS handshake: the client sent no certificate "
            "(--tls-verify-peer): %s", gnutls_strerror (g));
    return;
  }
  if (s->creds->kind == CRED_PSK && s->psk_user[0] != '\0') {
    if (!s->psk_user_known)
      seterr (err, errlen, "TLS handshake: unknown PSK username \"%s\" "
              "(%s)", s->psk_user, gnutls_strerror (g));
    else
      seterr (err, errlen, "TLS handshake: PSK username \"%s\": %s%s",
              s->psk_user, gnutls_strerror (g),
              /* what a key mismatch looks like (TLS 1.3 binder, 1.2 MAC) */
              g == GNUTLS_E_RECEIVED_ILLEGAL_PARAMETER ||
              g == GNUTLS_E_DECRYPTION_FAILED ||
              g == GNUTLS_E_MAC_VERIFY_FAILED ? " (a wrong key?)" : "");
    return;
  }
  if (g == GNUTLS_E_FATAL_ALERT_RECEIVED) {
    seterr (err, errlen, "TLS handshake: the client sent alert \"%s\"",
            gnutls_alert_get_name (gnutls_alert_get (s->gs)));
    return;
  }
  seterr (err, errlen, "TLS handshake: %s", gnutls_strerror (g));
}

/* GnuTLS record/handshake error to -errno. */
static int
record_errno (int g)
{
  switch (g) {
  case GNUTLS_E_PUSH_ERROR:
  case GNUTLS_E_PULL_ERROR:
    return -ECONNRESET;
  case GNUTLS_E_MEMORY_ERROR:
    return -ENOMEM;
  default:
    return -EPROTO;
  }
}

/* After a handshake with verify_peer: the client's chain was verified by
 * GnuTLS during the handshake; check it again so that no configuration
 * slip (a resumed session, a future flag) can let an unverified client
 * in.  0 or -EACCES. */
static int
check_peer (struct pcd_tls_session *s, char *err, size_t errlen)
{
  unsigned status = 0, n = 0;
  int g;

  if (gnutls_certificate_type_get2 (s->gs, GNUTLS_CTYPE_CLIENT) !=
      GNUTLS_CRT_X509 ||
      gnutls_certificate_get_peers (s->gs, &n) == NULL || n == 0) {
    seterr (err, errlen, "TLS handshake: the client sent no certificate "
            "(--tls-verify-peer)");
    return -EACCES;
  }
  g = gnutls_certificate_verify_peers2 (s->gs, &status);
  if (g < 0) {
    seterr (err, errlen, "TLS handshake: verifying the client certificate: "
            "%s", gnutls_strerror (g));
    return -EACCES;
  }
  if (status != 0) {
    status_error (status, err, errlen);
    return -EACCES;
  }
  return 0;
}

int
pcd_tls_handshake (struct pcd_tls_session *s, bool *want_write,
                   char *err, size_t errlen)
{
  int g, i;

  *want_write = false;
  if (s->handshake_done)
    return 0;
  for (i = 0; i < MAX_RETRIES; i++) {
    g = gnutls_handshake (s->gs);
    if (g == GNUTLS_E_SUCCESS)
      break;
    if (g == GNUTLS_E_AGAIN) {
      *want_write = gnutls_record_get_direction (s->gs) == 1;
      return -EAGAIN;
    }
    /* EINTR, a warning alert, ...: go on. */
    if (gnutls_error_is_fatal (g) == 0)
      continue;
    handshake_error (s, g, err, errlen);
    if (g == GNUTLS_E_PREMATURE_TERMINATION || g == GNUTLS_E_PUSH_ERROR ||
        g == GNUTLS_E_PULL_ERROR)
      return -ECONNRESET;
    if (g == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR ||
        g == GNUTLS_E_NO_CERTIFICATE_FOUND ||
        g == GNUTLS_E_CERTIFICATE_REQUIRED)
      return -EACCES;
    return record_errno (g);
  }
  if (g != GNUTLS_E_SUCCESS) {
    /* Only non-fatal conditions, MAX_RETRIES times: wait for input. */
    *want_write = gnutls_record_get_direction (s->gs) == 1;
    return -EAGAIN;
  }
  if (s->creds->kind == CRED_X509 && s->creds->verify_peer) {
    int r = check_peer (s, err, errlen);
    if (r < 0)
      return r;
  }
  s->handshake_done = true;
  return 0;
}

ssize_t
pcd_tls_recv (struct pcd_tls_session *s, void *buf, size_t len,
              bool *want_write)
{
  ssize_t n;
  int i;

  *want_write = false;
  if (!s->handshake_done)
    return -ENOTCONN;
  if (len == 0)
    return -EINVAL;
  for (i = 0; i < MAX_RETRIES; i++) {
    n = gnutls_record_recv (s->gs, buf, len);
    if (n >= 0)
      return n;                 /* 0: close_notify */
    switch (n) {
    case GNUTLS_E_AGAIN:
      *want_write = gnutls_record_get_direction (s->gs) == 1;
      return -EAGAIN;
    case GNUTLS_E_INTERRUPTED:
    case GNUTLS_E_WARNING_ALERT_RECEIVED:
      continue;
    case GNUTLS_E_PREMATURE_TERMINATION:
      s->last_error = (int) n;
      return 0;                 /* the peer closed without close_notify */
    case GNUTLS_E_REHANDSHAKE:
      /* TLS 1.2 renegotiation: not offered by NBD clients; refuse. */
      s->last_error = (int) n;
      return -EPROTO;
    default:
      if (gnutls_error_is_fatal ((int) n) == 0)
        continue;
      s->last_error = (int) n;
      return record_errno ((int) n);
    }
  }
  /* Non-fatal conditions only: wait for more input. */
  *want_write = false;
  return -EAGAIN;
}

ssize_t
pcd_tls_send (struct pcd_tls_session *s, const void *buf, size_t len,
              bool *want_write)
{
  ssize_t n;
  int i;

  *want_write = false;
  if (!s->handshake_done)
    return -ENOTCONN;
  if (len == 0)
    return -EINVAL;
  for (i = 0; i < MAX_RETRIES; i++) {
    n = gnutls_record_send (s->gs, buf, len);
    if (n > 0)
      return n;
    if (n == GNUTLS_E_AGAIN) {
      *want_write = gnutls_record_get_direction (s->gs) == 1;
      return -EAGAIN;
    }
    if (n == GNUTLS_E_INTERRUPTED || n == 0)
      continue;
    s->last_error = (int) n;
    return record_errno ((int) n);
  }
  *want_write = true;
  return -EAGAIN;
}

const char *
pcd_tls_error (struct pcd_tls_session *s)
{
  return s->last_error ? gnutls_strerror (s->last_error) : "";
}

size_t
pcd_tls_pending (struct pcd_tls_session *s)
{
  return s->handshake_done ? gnutls_record_check_pending (s->gs) : 0;
}

/* The PSK username or the client certificate's DN (RFC 4514, escaped by
 * GnuTLS), computed once. */
const char *
pcd_tls_peer (struct pcd_tls_session *s)
{
  if (s->peer_done)
    return s->peer ? s->peer : "";
  if (!s->handshake_done)
    return "";
  s->peer_done = true;

  if (s->creds->kind == CRED_PSK) {
    gnutls_datum_t u = { 0 };
    if (gnutls_psk_server_get_username2 (s->gs, &u) == 0 && u.size > 0)
      s->peer = strndup ((const char *) u.data, u.size);
  }
  else {
    unsigned n = 0;
    const gnutls_datum_t *certs = gnutls_certificate_get_peers (s->gs, &n);
    gnutls_x509_crt_t crt;
    gnutls_datum_t dn = { 0 };

    if (certs && n > 0 && gnutls_x509_crt_init (&crt) == 0) {
      if (gnutls_x509_crt_import (crt, &certs[0], GNUTLS_X509_FMT_DER) == 0 &&
          gnutls_x509_crt_get_dn3 (crt, &dn, 0) == 0) {
        s->peer = strndup ((const char *) dn.data, dn.size);
        gnutls_free (dn.data);
      }
      gnutls_x509_crt_deinit (crt);
    }
  }
  return s->peer ? s->peer : "";
}

void
pcd_tls_session_free (struct pcd_tls_session *s)
{
  if (s == NULL)
    return;
  if (s->gs) {
    /* One attempt: on a non-blocking socket this returns GNUTLS_E_AGAIN
     * rather than waiting, and the alert is then simply not sent. */
    if (s->handshake_done)
      (void) gnutls_bye (s->gs, GNUTLS_SHUT_WR);
    gnutls_deinit (s->gs);
  }
  free (s->peer);
  free (s);
}
