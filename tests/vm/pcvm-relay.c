/* pcvm-relay: the guest end of the test VM's NBD transport (SPEC §6).
 *
 * What: listens on 127.0.0.1:PORT inside the guest and bridges each
 * accepted TCP connection to one virtio-serial port, named on the command
 * line (the name given to qemu's -device virtserialport,name=...).  On the
 * host side each port is a qemu chardev connected to the NBD server's Unix
 * socket, so one TCP connection from nbd-client becomes one NBD
 * connection to the server.
 *
 * Why a program of its own rather than busybox nc: nbd-client -C N opens
 * N connections to the same address, and each must get a port of its own;
 * and the test needs to know how many bytes each connection carried (a
 * multi-connection client that puts everything on one connection must
 * fail the test).
 *
 * Structure: the parent accepts; each connection is served by a child
 * process that owns one port while it runs (the parent keeps the port busy
 * until it reaps the child).  When either side ends (EOF or error), the
 * child closes the connection, prints one line
 *   pcvm-relay: NAME: N bytes to host, M bytes from host
 * on stderr (the console) and exits.  SIGUSR1 to the parent makes every
 * child print the same line, ending in " so far", and go on.
 *
 * The relay opens every port once and keeps it open (children inherit the
 * descriptors): the guest driver discards what a port has received when
 * it is closed, and qemu sends nothing while the guest has it closed, so
 * a port must never be closed between the server's greeting and the
 * client reading it.
 *
 * Before it listens, the relay waits (up to WAIT seconds) until the host
 * side of every port is connected (poll on a port says POLLHUP while it is
 * not): a port whose chardev is still connecting to a server that has just
 * started would give nbd-client an EOF mid-handshake, and a retry would
 * then meet the server half-way through the first attempt's negotiation.
 *
 * usage: pcvm-relay WAIT PORT NAME...  A connection that finds every port
 * busy is closed at once.  Built static by tests/vm/build-kit.sh; guest
 * only, never linked into punchcache.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>

#define MAX_PORTS 16

static volatile sig_atomic_t report;

static void
on_usr1 (int sig)
{
  (void) sig;
  report = 1;
}

static void
print_counts (const char *name, uint64_t to_host, uint64_t from_host,
              const char *suffix)
{
  fprintf (stderr, "pcvm-relay: %s: %llu bytes to host, %llu bytes from "
           "host%s\n", name, (unsigned long long) to_host,
           (unsigned long long) from_host, suffix);
}

struct port {
  const char *name;
  char dev[300];
  int fd;                       /* open for the relay's whole life */
  pid_t child;                  /* 0 when free */
};

/* Find /dev/vportXpY whose sysfs name is NAME. */
static int
find_port (const char *name, char *dev, size_t len)
{
  DIR *d = opendir ("/sys/class/virtio-ports");
  struct dirent *e;
  int found = -1;

  if (!d) return -1;
  while (found < 0 && (e = readdir (d)) != NULL) {
    char path[300], buf[128];
    FILE *f;

    if (e->d_name[0] == '.') continue;
    snprintf (path, sizeof path, "/sys/class/virtio-ports/%s/name", e->d_name);
    f = fopen (path, "r");
    if (!f) continue;
    if (fgets (buf, sizeof buf, f)) {
      buf[strcspn (buf, "\n")] = '\0';
      if (strcmp (buf, name) == 0) {
        snprintf (dev, len, "/dev/%s", e->d_name);
        found = 0;
      }
    }
    fclose (f);
  }
  closedir (d);
  return found;
}

/* Open port P and wait until its host end is connected. */
static int
open_port (struct port *p, int secs)
{
  int ms;

  p->fd = open (p->dev, O_RDWR | O_CLOEXEC);
  if (p->fd < 0) {
    fprintf (stderr, "pcvm-relay: %s: %s: %m\n", p->name, p->dev);
    return -1;
  }
  for (ms = 0; ms < secs * 1000; ms += 100) {
    struct pollfd pfd = { p->fd, POLLOUT, 0 };

    if (poll (&pfd, 1, 0) >= 0 && !(pfd.revents & POLLHUP))
      return 0;
    usleep (100 * 1000);
  }
  fprintf (stderr, "pcvm-relay: %s: the host side did not connect within "
           "%d s\n", p->name, secs);
  return -1;
}

static int
write_all (int fd, const char *p, size_t n)
{
  while (n > 0) {
    ssize_t r = write (fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    p += r;
    n -= (size_t) r;
  }
  return 0;
}

/* Copy between the connection and the port until either side ends. */
static void
serve (int sock, struct port *p)
{
  static char buf[256 * 1024];
  uint64_t to_host = 0, from_host = 0;
  int dev = p->fd;

  for (;;) {
    struct pollfd fds[2] = { { sock, POLLIN, 0 }, { dev, POLLIN, 0 } };
    ssize_t r;

    if (report) {
      report = 0;
      print_counts (p->name, to_host, from_host, " so far");
    }
    if (poll (fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[0].revents) {
      r = read (sock, buf, sizeof buf);
      if (r <= 0 || write_all (dev, buf, (size_t) r) < 0) break;
      to_host += (uint64_t) r;
    }
    if (fds[1].revents) {
      r = read (dev, buf, sizeof buf);
      if (r <= 0 || write_all (sock, buf, (size_t) r) < 0) break;
      from_host += (uint64_t) r;
    }
  }
  print_counts (p->name, to_host, from_host, "");
  _exit (0);
}

int
main (int argc, char **argv)
{
  struct port ports[MAX_PORTS];
  struct sockaddr_in addr;
  int nports = argc - 3, lsock, one = 1, i;

  if (argc < 4 || nports > MAX_PORTS) {
    fprintf (stderr, "usage: pcvm-relay WAIT PORT NAME... (at most %d "
             "names)\n", MAX_PORTS);
    return 2;
  }
  for (i = 0; i < nports; i++) {
    ports[i].name = argv[i + 3];
    ports[i].child = 0;
    if (find_port (ports[i].name, ports[i].dev, sizeof ports[i].dev) < 0) {
      fprintf (stderr, "pcvm-relay: no virtio-serial port named %s\n",
               ports[i].name);
      return 1;
    }
    if (open_port (&ports[i], atoi (argv[1])) < 0)
      return 1;
  }
  struct sigaction sa;

  memset (&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1;              /* no SA_RESTART: poll/accept wake */
  sigaction (SIGUSR1, &sa, NULL);
  signal (SIGPIPE, SIG_IGN);
  lsock = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (lsock < 0) { perror ("pcvm-relay: socket"); return 1; }
  setsockopt (lsock, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  memset (&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons ((uint16_t) atoi (argv[2]));
  addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
  if (bind (lsock, (struct sockaddr *) &addr, sizeof addr) < 0 ||
      listen (lsock, MAX_PORTS) < 0) {
    perror ("pcvm-relay: bind/listen");
    return 1;
  }
  for (;;) {
    int sock = accept4 (lsock, NULL, NULL, SOCK_CLOEXEC);
    pid_t pid;
    struct port *p = NULL;

    if (report) {                       /* pass SIGUSR1 on to the children */
      report = 0;
      for (i = 0; i < nports; i++)
        if (ports[i].child > 0) kill (ports[i].child, SIGUSR1);
    }
    if (sock < 0) {
      if (errno == EINTR) continue;
      perror ("pcvm-relay: accept");
      return 1;
    }
    /* Free the ports whose connection has ended. */
    while ((pid = waitpid (-1, NULL, WNOHANG)) > 0)
      for (i = 0; i < nports; i++)
        if (ports[i].child == pid) ports[i].child = 0;
    for (i = 0; i < nports && !p; i++)
      if (ports[i].child == 0) p = &ports[i];
    if (!p) {
      fprintf (stderr, "pcvm-relay: every port is busy; connection refused\n");
      close (sock);
      continue;
    }
    setsockopt (sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    pid = fork ();
    if (pid == 0) { close (lsock); serve (sock, p); }
    if (pid < 0) perror ("pcvm-relay: fork");
    else p->child = pid;
    close (sock);
  }
}
