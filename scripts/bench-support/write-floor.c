// write-floor.c - the sender's CPU cost of one small write() per TCP loopback socket, the shape of
// a fan-out (one write per recipient): the floor under Switchboard's CPU per delivery
// (docs/PERFORMANCE.md). Build and run: cc -O2 -o write-floor write-floor.c && ./write-floor sleep 500 400
// Usage: ./write-floor <mode> [N] [rounds]
//   mode: sleep   - one 80B write() per socket per round, 10 ms sleep between rounds
//         nosleep - same, no sleep between rounds (receiver busy)
//         writev  - one writev() of 5x80B iovecs per socket per round, 10 ms sleep
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#define MSG 80
#define NIOV 5

static void die(const char *s) { perror(s); exit(1); }
static double tv_us(struct timeval t) { return t.tv_sec * 1e6 + t.tv_usec; }
static double now_us(void) {
    struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

struct rstat { double user_us, sys_us; long long bytes; long nvcsw, nivcsw; };

static void receiver(int lfd, int n, int ready_w, int res_w) {
    int one = 1;
    int *fds = malloc(sizeof(int) * n);
    int ep = epoll_create1(0);
    for (int i = 0; i < n; i++) {
        int c = accept(lfd, NULL, NULL);
        if (c < 0) die("accept");
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        fcntl(c, F_SETFL, fcntl(c, F_GETFL) | O_NONBLOCK);
        struct epoll_event ev = { .events = EPOLLIN, .data.fd = c };
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev) < 0) die("epoll_ctl");
        fds[i] = c;
    }
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    char x = 'r';
    if (write(ready_w, &x, 1) != 1) die("ready");
    long long bytes = 0;
    int open = n;
    char buf[65536];
    struct epoll_event evs[512];
    while (open > 0) {
        int k = epoll_wait(ep, evs, 512, -1);
        if (k < 0) { if (errno == EINTR) continue; die("epoll_wait"); }
        for (int i = 0; i < k; i++) {
            int fd = evs[i].data.fd;
            for (;;) {  // read everything available
                ssize_t m = read(fd, buf, sizeof buf);
                if (m > 0) { bytes += m; continue; }
                if (m == 0) { epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL); close(fd); open--; break; }
                if (errno == EAGAIN) break;
                if (errno == EINTR) continue;
                die("read");
            }
        }
    }
    getrusage(RUSAGE_SELF, &r1);
    struct rstat s = {
        tv_us(r1.ru_utime) - tv_us(r0.ru_utime),
        tv_us(r1.ru_stime) - tv_us(r0.ru_stime),
        bytes, r1.ru_nvcsw - r0.ru_nvcsw, r1.ru_nivcsw - r0.ru_nivcsw };
    if (write(res_w, &s, sizeof s) != sizeof s) die("res");
    _exit(0);
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s sleep|nosleep|writev [N] [rounds]\n", argv[0]); return 1; }
    const char *mode = argv[1];
    int n = argc > 2 ? atoi(argv[2]) : 500;
    int rounds = argc > 3 ? atoi(argv[3]) : 400;
    int do_sleep = strcmp(mode, "nosleep") != 0;
    int use_writev = strcmp(mode, "writev") == 0;

    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = 0 };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
    if (listen(lfd, 4096) < 0) die("listen");
    socklen_t al = sizeof a;
    getsockname(lfd, (struct sockaddr *)&a, &al);

    int rp[2], sp[2];
    if (pipe(rp) || pipe(sp)) die("pipe");
    pid_t pid = fork();
    if (pid == 0) { close(rp[0]); close(sp[0]); receiver(lfd, n, rp[1], sp[1]); }
    close(lfd); close(rp[1]); close(sp[1]);

    int *fds = malloc(sizeof(int) * n);
    for (int i = 0; i < n; i++) {
        int c = socket(AF_INET, SOCK_STREAM, 0);
        if (c < 0) die("socket");
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(c, (struct sockaddr *)&a, sizeof a) < 0) die("connect");
        fds[i] = c;  // blocking socket
    }
    char x;
    if (read(rp[0], &x, 1) != 1) die("wait ready");

    char msg[NIOV][MSG];
    for (int j = 0; j < NIOV; j++) memset(msg[j], 'a' + j, MSG);
    struct iovec iov[NIOV];
    for (int j = 0; j < NIOV; j++) { iov[j].iov_base = msg[j]; iov[j].iov_len = MSG; }

    // warm-up round (not measured)
    for (int i = 0; i < n; i++) if (write(fds[i], msg[0], MSG) != MSG) die("write");
    usleep(20000);

    struct rusage r0, r1;
    double loop_wall = 0;
    getrusage(RUSAGE_SELF, &r0);
    for (int r = 0; r < rounds; r++) {
        if (do_sleep) usleep(10000);
        double t0 = now_us();
        if (use_writev) {
            for (int i = 0; i < n; i++)
                if (writev(fds[i], iov, NIOV) != MSG * NIOV) die("writev");
        } else {
            for (int i = 0; i < n; i++)
                if (write(fds[i], msg[0], MSG) != MSG) die("write");
        }
        loop_wall += now_us() - t0;
    }
    getrusage(RUSAGE_SELF, &r1);

    for (int i = 0; i < n; i++) close(fds[i]);
    struct rstat s;
    if (read(sp[0], &s, sizeof s) != sizeof s) die("read res");
    waitpid(pid, NULL, 0);

    double calls = (double)n * rounds;
    double msgs = calls * (use_writev ? NIOV : 1);
    double su = tv_us(r1.ru_utime) - tv_us(r0.ru_utime);
    double ss = tv_us(r1.ru_stime) - tv_us(r0.ru_stime);
    double rmsgs = (double)s.bytes / MSG;
    printf("mode=%s N=%d rounds=%d syscalls=%.0f msgs=%.0f\n", mode, n, rounds, calls, msgs);
    printf("SENDER per_syscall user=%.3f sys=%.3f total=%.3f us | per_msg user=%.3f sys=%.3f total=%.3f us | wall_in_loops per_syscall=%.3f us | vcsw=%ld ivcsw=%ld\n",
           su / calls, ss / calls, (su + ss) / calls,
           su / msgs, ss / msgs, (su + ss) / msgs, loop_wall / calls,
           r1.ru_nvcsw - r0.ru_nvcsw, r1.ru_nivcsw - r0.ru_nivcsw);
    printf("RECEIVER msgs=%.0f per_msg user=%.3f sys=%.3f total=%.3f us | vcsw=%ld ivcsw=%ld\n",
           rmsgs, s.user_us / rmsgs, s.sys_us / rmsgs, (s.user_us + s.sys_us) / rmsgs,
           s.nvcsw, s.nivcsw);
    return 0;
}
