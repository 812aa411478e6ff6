/*
 * The kernel's cost of moving one UDP datagram over loopback, one system
 * call per datagram against one per batch (benchmarks/syscall_cost.py runs
 * it and explains the output).
 *
 * usage: _syscost SIZE COUNT BATCH REPEATS
 * prints one JSON object: the best microseconds per datagram of each of
 * sendto, recvfrom, sendmmsg and recvmmsg over REPEATS rounds of COUNT.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void fail(const char *what)
{
    perror(what);
    exit(1);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s SIZE COUNT BATCH REPEATS\n", argv[0]);
        return 2;
    }
    int size = atoi(argv[1]), count = atoi(argv[2]), batch = atoi(argv[3]), repeats = atoi(argv[4]);
    if (size < 1 || size > 2048 || count < batch || batch < 1 || batch > 1024 || repeats < 1) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    count -= count % batch;

    int reader = socket(AF_INET, SOCK_DGRAM, 0), writer = socket(AF_INET, SOCK_DGRAM, 0);
    if (reader < 0 || writer < 0)
        fail("socket");
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(reader, (struct sockaddr *)&to, sizeof to) != 0)
        fail("bind");
    socklen_t length = sizeof to;
    if (getsockname(reader, (struct sockaddr *)&to, &length) != 0)
        fail("getsockname");
    /* Room for a whole round queued at once. */
    int room = 64 << 20;
    setsockopt(reader, SOL_SOCKET, SO_RCVBUFFORCE, &room, sizeof room);
    setsockopt(reader, SOL_SOCKET, SO_RCVBUF, &room, sizeof room);

    char *out = calloc(1, size);
    char (*in)[2048] = calloc(batch, 2048);
    struct sockaddr_in *from = calloc(batch, sizeof *from);
    struct iovec *send_iov = calloc(batch, sizeof *send_iov), *recv_iov = calloc(batch, sizeof *recv_iov);
    struct mmsghdr *sends = calloc(batch, sizeof *sends), *recvs = calloc(batch, sizeof *recvs);
    if (!out || !in || !from || !send_iov || !recv_iov || !sends || !recvs)
        fail("calloc");
    for (int i = 0; i < batch; i++) {
        send_iov[i] = (struct iovec){.iov_base = out, .iov_len = size};
        sends[i].msg_hdr = (struct msghdr){.msg_name = &to, .msg_namelen = sizeof to,
                                           .msg_iov = &send_iov[i], .msg_iovlen = 1};
        recv_iov[i] = (struct iovec){.iov_base = in[i], .iov_len = 2048};
    }

    double best[4] = {1e9, 1e9, 1e9, 1e9};
    for (int round = 0; round < repeats; round++) {
        double t0 = seconds();
        for (int i = 0; i < count; i++)
            if (sendto(writer, out, size, 0, (struct sockaddr *)&to, sizeof to) != size)
                fail("sendto");
        double t1 = seconds();
        for (int i = 0; i < count; i++) {
            struct sockaddr_in source;
            socklen_t source_length = sizeof source;
            if (recvfrom(reader, in[0], 2048, MSG_DONTWAIT, (struct sockaddr *)&source, &source_length) != size)
                fail("recvfrom");
        }
        double t2 = seconds();
        for (int i = 0; i < count; i += batch)
            if (sendmmsg(writer, sends, batch, 0) != batch)
                fail("sendmmsg");
        double t3 = seconds();
        for (int got = 0; got < count;) {
            for (int i = 0; i < batch; i++)
                recvs[i].msg_hdr = (struct msghdr){.msg_name = &from[i], .msg_namelen = sizeof from[i],
                                                   .msg_iov = &recv_iov[i], .msg_iovlen = 1};
            int n = recvmmsg(reader, recvs, batch, MSG_DONTWAIT, NULL);
            if (n <= 0)
                fail("recvmmsg (a datagram was lost?)");
            got += n;
        }
        double t4 = seconds();
        double took[4] = {t1 - t0, t2 - t1, t3 - t2, t4 - t3};
        for (int k = 0; k < 4; k++)
            if (took[k] / count * 1e6 < best[k])
                best[k] = took[k] / count * 1e6;
    }
    printf("{\"sendto\": %.4f, \"recvfrom\": %.4f, \"sendmmsg\": %.4f, \"recvmmsg\": %.4f, \"count\": %d}\n",
           best[0], best[1], best[2], best[3], count);
    return 0;
}
