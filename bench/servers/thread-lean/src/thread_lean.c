// thread-lean: the leanest thread-per-connection TCP echo server, written
// as the yardstick for echo-server.
//
// echo-server gives every client an OS thread and a blocking loop. What
// that design costs at best, in memory per client and in messages a
// second, is what a server does that keeps nothing but the design: plain
// C, one detached pthread per client with a 16 KiB stack, blocking
// read/write through a 2 KiB buffer on that stack, SCHED_BATCH for the
// process (every thread inherits it: fewer preemptions between runnable
// threads), a listen backlog of 65535, TCP_NODELAY, and an accept loop
// doing nothing but accept4 and pthread_create. It has no limits, no
// timeouts, no logging and no shutdown: a lower bound for the design, not
// a server to deploy. Where echo-server is close to it, the rest of what
// echo-server does (limits, timeouts, logs, clean stop) costs little.
//
// Rust's main (src/main.rs) parses the arguments and calls
// thread_lean_run. Rust's runtime ignores SIGPIPE before main, so a write
// to a client that has gone returns EPIPE instead of killing the process.

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#define STACK_SIZE (16 * 1024)
#define BUFFER_SIZE (2 * 1024)
#define BACKLOG 65535
// Pause after accept fails for want of descriptors or memory, so that the
// loop does not spin while the condition lasts.
#define ACCEPT_BACKOFF_US 5000

// Echoes one client until EOF or an error, then closes it.
static void *serve(void *arg) {
    int fd = (int)(long)arg;
    char buf[BUFFER_SIZE];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(fd, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) goto done;
            off += w;
        }
    }
done:
    close(fd);
    return NULL;
}

// Listens on bind_ip:port and serves forever. Returns -1 with errno set
// only when it cannot start.
int thread_lean_run(const char *bind_ip, int port) {
    struct sched_param param = {0};
    sched_setscheduler(0, SCHED_BATCH, &param);  // best effort

    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    if (inet_pton(AF_INET, bind_ip, &addr.sin_addr) != 1) {
        errno = EINVAL;
        return -1;
    }
    int one = 1;
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listener < 0) return -1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0) return -1;
    if (listen(listener, BACKLOG) < 0) return -1;

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    int err = pthread_attr_setstacksize(&attr, STACK_SIZE);
    if (err == 0) err = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (err != 0) {
        errno = err;
        return -1;
    }
    fprintf(stderr, "thread-lean listening on %s:%d\n", bind_ip, port);

    for (;;) {
        int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                usleep(ACCEPT_BACKOFF_US);
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        pthread_t thread;
        if (pthread_create(&thread, &attr, serve, (void *)(long)fd) != 0) close(fd);
    }
}
