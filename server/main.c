/* punchcached: the standalone punchcache NBD server.
 *
 * What: the command line (nbdkit's flags where they apply, the plugin's
 * KEY=VALUE parameters through the same parser, lib/core/params.c), the
 * listening sockets (-U, -p/-i, or systemd's LISTEN_FDS), daemonising, the
 * acceptor, signals, and the graceful shutdown: stop accepting, let every
 * connection finish its in-flight requests and send their replies, then
 * commit and close the pool.
 *
 * Threads: the main thread runs the acceptor loop (libev's default loop:
 * listeners and signal watchers); -t loop threads serve connections
 * (loop.c); the core runs parked requests on its own workers; the pool has
 * its committer.  Nothing here touches the data path.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <gnutls/gnutls.h>

#include "punchcache/params.h"
#include "server.h"

#define DEFAULT_PORT "10809"
#define MAX_LISTENERS 16
/* Core workers per event loop.  Parked requests run on them; with too many
 * they starve the loops of CPU when one client writes and trims flat out
 * (bench g, 2 CPUs: reads on another connection kept 12% of their rate
 * with 16 workers, 61-67% with 4 or 8, nbdkit file 44-61%); with too few,
 * cache misses have too little pool I/O in flight. */
#define WORKERS_PER_LOOP 4u

struct pcd_config pcd_config;

static bool verbose;
static bool foreground;
static const char *unix_path;
static const char *port;
static const char *ipaddr;
static char *pidfile;
static int listeners[MAX_LISTENERS];
static ev_io listen_watchers[MAX_LISTENERS];
static unsigned nlisteners;

void
pcd_log (const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  fprintf (stderr, "punchcached: ");
  vfprintf (stderr, fmt, ap);
  fputc ('\n', stderr);
  va_end (ap);
}

void
pcd_debug (const char *fmt, ...)
{
  va_list ap;

  if (!verbose)
    return;
  va_start (ap, fmt);
  fprintf (stderr, "punchcached: debug: ");
  vfprintf (stderr, fmt, ap);
  fputc ('\n', stderr);
  va_end (ap);
}

static void __attribute__ ((noreturn, format (printf, 1, 2)))
die (const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  fprintf (stderr, "punchcached: error: ");
  vfprintf (stderr, fmt, ap);
  fputc ('\n', stderr);
  va_end (ap);
  exit (EXIT_FAILURE);
}

static void
usage (FILE *f)
{
  fprintf (f,
"Usage: punchcached [OPTIONS] [pool=]PATH [KEY=VALUE ...]\n"
"Serve the thin volumes of a punchcache pool over NBD: the standalone\n"
"server (event loops, io_uring pool I/O, TLS), the twin of\n"
"'nbdkit punchcache' with the same keys.\n"
"\n"
"Options (as nbdkit's):\n"
"  -f, --foreground          Do not fork into the background.\n"
"      --exit-with-parent    Exit when the parent process exits.\n"
"  -U, --unix SOCKET         Listen on a Unix domain socket.\n"
"  -p, --port PORT           Listen on TCP port PORT (default 10809).\n"
"  -i, --ipaddr ADDR         Listen on ADDR only (default: all).\n"
"                            With neither -U nor -p/-i, or with LISTEN_FDS\n"
"                            (systemd socket activation), as nbdkit.\n"
"  -P, --pidfile FILE        Write the server's process ID to FILE.\n"
"  -r, --readonly            Serve every volume read-only.\n"
"  -t, --threads N           Event loop threads (default: CPUs).\n"
"  -e, --exportname NAME     The default export (default 'default').\n"
"  -v, --verbose             Debug messages on stderr.\n"
"  -D, --debug punchcache.NAME=VALUE\n"
"                            Debug switches (tests only, never production):\n"
"                            unsafe_no_invalidate_lock, race_delay_us,\n"
"                            fill_delay_us, fail_write_every,\n"
"                            commit_interval_ms, stats_interval_ms.\n"
"      --tls=off|on|require  TLS (STARTTLS): off (default), offered, or\n"
"                            required (plaintext clients refused).\n"
"      --tls-certificates DIR  X.509: DIR/ca-cert.pem, server-cert.pem,\n"
"                            server-key.pem (and ca-crl.pem).\n"
"      --tls-psk FILE        Pre-shared keys, as psktool writes them.\n"
"      --tls-verify-peer     Require a client certificate signed by the CA.\n"
"  -h, --help                This text.\n"
"  -V, --version             Print the version and exit.\n"
"\n"
"Parameters (the same as nbdkit punchcache's):\n"
"%s\n"
"\n"
"Signals: SIGTERM and SIGINT stop the server gracefully (requests in\n"
"flight finish, the pool is committed and closed).  See punchcached(8).\n",
           pc_params_help);
}

enum { OPT_TLS = 256, OPT_TLS_CERTS, OPT_TLS_PSK, OPT_TLS_VERIFY,
       OPT_EXIT_WITH_PARENT };

static const struct option long_options[] = {
  { "foreground", no_argument, NULL, 'f' },
  { "exit-with-parent", no_argument, NULL, OPT_EXIT_WITH_PARENT },
  { "unix", required_argument, NULL, 'U' },
  { "port", required_argument, NULL, 'p' },
  { "ipaddr", required_argument, NULL, 'i' },
  { "pidfile", required_argument, NULL, 'P' },
  { "readonly", no_argument, NULL, 'r' },
  { "read-only", no_argument, NULL, 'r' },
  { "threads", required_argument, NULL, 't' },
  { "exportname", required_argument, NULL, 'e' },
  { "export-name", required_argument, NULL, 'e' },
  { "verbose", no_argument, NULL, 'v' },
  { "debug", required_argument, NULL, 'D' },
  { "tls", required_argument, NULL, OPT_TLS },
  { "tls-certificates", required_argument, NULL, OPT_TLS_CERTS },
  { "tls-psk", required_argument, NULL, OPT_TLS_PSK },
  { "tls-verify-peer", no_argument, NULL, OPT_TLS_VERIFY },
  { "help", no_argument, NULL, 'h' },
  { "version", no_argument, NULL, 'V' },
  { NULL, 0, NULL, 0 },
};

static void
set_debug (struct pc_params *p, const char *arg)
{
  static const char prefix[] = "punchcache.";
  const char *eq = strchr (arg, '=');
  char name[64];

  if (strncmp (arg, prefix, sizeof prefix - 1) != 0 || eq == NULL ||
      (size_t) (eq - arg) - (sizeof prefix - 1) >= sizeof name)
    die ("-D %s: expected -D punchcache.NAME=VALUE", arg);
  snprintf (name, sizeof name, "%.*s",
            (int) (eq - arg - (int) (sizeof prefix - 1)),
            arg + sizeof prefix - 1);
  if (pc_params_set_debug (p, name, eq + 1) < 0)
    die ("-D %s: %s", arg, pc_last_error ());
}

static unsigned
parse_threads (const char *s)
{
  char *end;
  long v;

  errno = 0;
  v = strtol (s, &end, 10);
  if (errno || *s == '\0' || *end != '\0' || v < 1 || v > 1024)
    die ("-t %s: expected a number of threads from 1 to 1024", s);
  return (unsigned) v;
}

/* KEY=VALUE, or PATH alone meaning pool=PATH (nbdkit's magic key). */
static void
set_param (struct pc_params *p, const char *arg)
{
  const char *eq = strchr (arg, '=');
  char key[64];

  if (eq == NULL) {
    if (pc_params_set (p, PC_PARAMS_MAGIC_KEY, arg) < 0)
      die ("%s", pc_last_error ());
    return;
  }
  if ((size_t) (eq - arg) >= sizeof key || eq == arg)
    die ("%s: bad parameter (expected KEY=VALUE)", arg);
  snprintf (key, sizeof key, "%.*s", (int) (eq - arg), arg);
  if (pc_params_set (p, key, eq + 1) < 0)
    die ("%s", pc_last_error ());
}

static enum pcd_tls_mode
parse_tls (const char *s)
{
  if (strcmp (s, "off") == 0) return PCD_TLS_OFF;
  if (strcmp (s, "on") == 0) return PCD_TLS_ON;
  if (strcmp (s, "require") == 0) return PCD_TLS_REQUIRE;
  die ("--tls=%s: expected off, on or require", s);
}

/* ---- listeners ---- */

static void
add_listener (int fd)
{
  if (nlisteners == MAX_LISTENERS)
    die ("too many listening sockets (at most %d)", MAX_LISTENERS);
  listeners[nlisteners++] = fd;
}

static void
listen_unix (const char *path)
{
  struct sockaddr_un sun = { .sun_family = AF_UNIX };
  int fd;

  if (strlen (path) >= sizeof sun.sun_path)
    die ("-U %s: socket path too long (at most %zu bytes)", path,
         sizeof sun.sun_path - 1);
  strcpy (sun.sun_path, path);
  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    die ("socket: %m");
  if (bind (fd, (struct sockaddr *) &sun, sizeof sun) < 0)
    die ("bind %s: %m", path);
  if (listen (fd, SOMAXCONN) < 0)
    die ("listen %s: %m", path);
  add_listener (fd);
}

static void
listen_tcp (const char *addr, const char *svc)
{
  struct addrinfo hints = { .ai_flags = AI_PASSIVE | AI_ADDRCONFIG,
                            .ai_socktype = SOCK_STREAM };
  struct addrinfo *ai, *a;
  int r, one = 1;

  if ((r = getaddrinfo (addr, svc, &hints, &ai)) != 0)
    die ("%s:%s: %s", addr ? addr : "*", svc, gai_strerror (r));
  for (a = ai; a; a = a->ai_next) {
    int fd = socket (a->ai_family, a->ai_socktype | SOCK_CLOEXEC |
                     SOCK_NONBLOCK, a->ai_protocol);
    if (fd < 0)
      die ("socket: %m");
    setsockopt (fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (a->ai_family == AF_INET6)
      setsockopt (fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind (fd, a->ai_addr, a->ai_addrlen) < 0)
      die ("bind %s port %s: %m", addr ? addr : "*", svc);
    if (listen (fd, SOMAXCONN) < 0)
      die ("listen: %m");
    add_listener (fd);
  }
  freeaddrinfo (ai);
}

/* systemd socket activation: LISTEN_PID is us, LISTEN_FDS from fd 3. */
static bool
listen_systemd (void)
{
  const char *pid = getenv ("LISTEN_PID"), *fds = getenv ("LISTEN_FDS");
  char *end;
  long n, i;

  if (pid == NULL || fds == NULL || strtol (pid, &end, 10) != getpid () ||
      *end)
    return false;
  n = strtol (fds, &end, 10);
  if (*end || n < 1 || n > MAX_LISTENERS)
    die ("LISTEN_FDS=%s: expected 1 to %d sockets", fds, MAX_LISTENERS);
  for (i = 0; i < n; i++) {
    int fd = 3 + (int) i;
    fcntl (fd, F_SETFD, FD_CLOEXEC);
    fcntl (fd, F_SETFL, fcntl (fd, F_GETFL) | O_NONBLOCK);
    add_listener (fd);
  }
  unsetenv ("LISTEN_PID");
  unsetenv ("LISTEN_FDS");
  unsetenv ("LISTEN_FDNAMES");
  return true;
}

static void
on_accept (struct ev_loop *ev, ev_io *w, int revents)
{
  for (;;) {
    int fd = accept4 (w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    int one = 1;

    if (fd < 0) {
      if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
        pcd_log ("accept: %m");              /* EMFILE etc.: try later */
      return;
    }
    setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    pcd_loops_adopt (fd);
  }
}

static unsigned
core_workers (unsigned loops)
{
  unsigned n = loops * WORKERS_PER_LOOP;

  return n < 4 ? 4 : n > 64 ? 64 : n;
}

static void
on_stats_tick (struct ev_loop *ev, ev_timer *w, int revents)
{
  pcd_stats_push ();
}

static void
on_signal (struct ev_loop *ev, ev_signal *w, int revents)
{
  pcd_debug ("signal %d: stopping", w->signum);
  ev_break (ev, EVBREAK_ALL);
}

/* ---- start-up ---- */

static void
note (void *opaque, const char *msg)
{
  pcd_log ("note: %s", msg);
}

static void
write_pidfile (void)
{
  FILE *f;

  if (pidfile == NULL)
    return;
  if ((f = fopen (pidfile, "w")) == NULL ||
      fprintf (f, "%d\n", (int) getpid ()) < 0 || fclose (f) != 0)
    die ("pidfile %s: %m", pidfile);
}

/* Fork into the background.  The parent waits until the child says it
 * serves (the PID file written, every thread started) and exits 0, or
 * exits 1 if the child died first, so "punchcached ... && client" works
 * and a PID file exists as soon as the command returns. */
static int ready_fd = -1;

static void
daemonise (void)
{
  int fds[2], fd;
  pid_t pid;
  char c;

  if (pipe2 (fds, O_CLOEXEC) < 0)
    die ("pipe: %m");
  if ((pid = fork ()) < 0)
    die ("fork: %m");
  if (pid > 0) {
    close (fds[1]);
    _exit (read (fds[0], &c, 1) == 1 ? EXIT_SUCCESS : EXIT_FAILURE);
  }
  close (fds[0]);
  ready_fd = fds[1];
  setsid ();
  if (chdir ("/") < 0)
    die ("chdir /: %m");
  if ((fd = open ("/dev/null", O_RDWR)) >= 0) {
    dup2 (fd, 0);
    dup2 (fd, 1);
    if (fd > 2) close (fd);
  }
}

static void
tell_parent_ready (void)
{
  if (ready_fd >= 0) {
    if (write (ready_fd, "r", 1) != 1)
      pcd_log ("could not tell the parent we serve: %m");
    close (ready_fd);
    ready_fd = -1;
  }
}

static void
open_everything (struct pc_params *params, struct pcd_tls_config *tls)
{
  char err[512];
  int r;

  if ((r = pc_params_complete (params)) < 0)
    die ("%s", pc_last_error ());
  if (tls->mode != PCD_TLS_OFF) {
    if ((r = gnutls_global_init ()) < 0)
      die ("gnutls_global_init: %s", gnutls_strerror (r));
    if (pcd_tls_creds_load (tls, &pcd_config.tls_creds, err, sizeof err) < 0)
      die ("%s", err);
  }
  pcd_config.tls_mode = tls->mode;
  if ((r = pc_params_open_pool (params, pcd_config.readonly, note, NULL,
                                &pcd_config.pool)) < 0)
    die ("%s", pc_last_error ());
}

int
main (int argc, char *argv[])
{
  struct pc_params params;
  struct pcd_tls_config tls = { .mode = PCD_TLS_OFF };
  unsigned nthreads = 0, i;
  struct ev_loop *ev;
  ev_signal sigterm, sigint;
  ev_timer stats_tick;
  int c, r, status = EXIT_SUCCESS;
  long ncpu;

  pc_params_init (&params);
  pcd_config.default_export = PC_DEFAULT_VOLUME;
  /* "+"-less optstring: GNU getopt permutes, so options and KEY=VALUE
   * parameters may be mixed, as users do with nbdkit. */
  while ((c = getopt_long (argc, argv, "fU:p:i:P:rt:e:vD:hV", long_options,
                           NULL)) != -1) {
    switch (c) {
    case 'f': foreground = true; break;
    case OPT_EXIT_WITH_PARENT: prctl (PR_SET_PDEATHSIG, SIGTERM); break;
    case 'U': unix_path = optarg; break;
    case 'p': port = optarg; break;
    case 'i': ipaddr = optarg; break;
    case 'P':
      if ((pidfile = realpath (".", NULL)) == NULL) die ("getcwd: %m");
      if (optarg[0] == '/') { free (pidfile); pidfile = strdup (optarg); }
      else {
        char *abs;
        if (asprintf (&abs, "%s/%s", pidfile, optarg) < 0) die ("%m");
        free (pidfile);
        pidfile = abs;
      }
      break;
    case 'r': pcd_config.readonly = true; break;
    case 't': nthreads = parse_threads (optarg); break;
    case 'e': pcd_config.default_export = optarg; break;
    case 'v': verbose = pcd_config.verbose = true; break;
    case 'D': set_debug (&params, optarg); break;
    case OPT_TLS: tls.mode = parse_tls (optarg); break;
    case OPT_TLS_CERTS: tls.certificates_dir = optarg; break;
    case OPT_TLS_PSK: tls.psk_file = optarg; break;
    case OPT_TLS_VERIFY: tls.verify_peer = true; break;
    case 'h': usage (stdout); return EXIT_SUCCESS;
    case 'V': printf ("punchcached %s\n", PACKAGE_VERSION); return EXIT_SUCCESS;
    default:
      fprintf (stderr, "Try 'punchcached --help'.\n");
      return EXIT_FAILURE;
    }
  }
  for (i = (unsigned) optind; i < (unsigned) argc; i++)
    set_param (&params, argv[i]);
  if (tls.mode != PCD_TLS_OFF && !tls.certificates_dir && !tls.psk_file)
    die ("--tls=%s needs --tls-certificates=DIR or --tls-psk=FILE",
         tls.mode == PCD_TLS_ON ? "on" : "require");
  if (unix_path && (port || ipaddr))
    die ("-U cannot be combined with -p or -i");
  if (nthreads == 0)
    nthreads = (ncpu = sysconf (_SC_NPROCESSORS_ONLN)) > 0 ? (unsigned) ncpu : 2;

  /* Errors from here up to the fork reach the user's terminal. */
  open_everything (&params, &tls);
  if (!listen_systemd ()) {
    if (unix_path) listen_unix (unix_path);
    else listen_tcp (ipaddr, port ? port : DEFAULT_PORT);
  }
  signal (SIGPIPE, SIG_IGN);
  if (!foreground)
    daemonise ();
  write_pidfile ();
  if ((r = pc_params_start_pool (pcd_config.pool)) < 0 ||
      (r = pc_core_create (pcd_config.pool, core_workers (nthreads),
                           &pcd_config.core)) < 0)
    die ("%s", pc_last_error ());
  if ((r = pcd_loops_start (nthreads)) < 0)
    die ("starting %u event loops: %s", nthreads, strerror (-r));
  pcd_debug ("serving with %u event loops, %u core workers", nthreads,
             core_workers (nthreads));
  tell_parent_ready ();

  ev = ev_default_loop (EVFLAG_AUTO);
  for (i = 0; i < nlisteners; i++) {
    ev_io_init (&listen_watchers[i], on_accept, listeners[i], EV_READ);
    ev_io_start (ev, &listen_watchers[i]);
  }
  ev_signal_init (&sigterm, on_signal, SIGTERM);
  ev_signal_init (&sigint, on_signal, SIGINT);
  ev_signal_start (ev, &sigterm);
  ev_signal_start (ev, &sigint);
  ev_timer_init (&stats_tick, on_stats_tick, 0., 1.);
  ev_timer_start (ev, &stats_tick);
  ev_run (ev, 0);

  /* Graceful shutdown. */
  for (i = 0; i < nlisteners; i++) {
    ev_io_stop (ev, &listen_watchers[i]);
    close (listeners[i]);
  }
  if (unix_path)
    unlink (unix_path);
  pcd_loops_stop ();                    /* pushes the final figures */
  pc_core_destroy (pcd_config.core);
  if (pc_params_close_pool (pcd_config.pool) < 0) {
    pcd_log ("closing the pool: %s", pc_last_error ());
    status = EXIT_FAILURE;
  }
  if (pcd_config.tls_creds) {
    pcd_tls_creds_free (pcd_config.tls_creds);
    gnutls_global_deinit ();
  }
  if (pidfile) unlink (pidfile);
  free (pidfile);
  pc_params_free (&params);
  return status;
}
