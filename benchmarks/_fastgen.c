/*
 * The packet-rate benchmarks' load generator loop in C, so the generator
 * costs less per packet than the fastest server it loads (coturn), and a
 * server's measured rate is the server's limit, not ours.
 *
 * Python (benchmarks/_fastgen.py) does everything that needs p2pnet: it
 * opens and connects the sockets, runs any setup exchange (TURN Allocate,
 * relay binding), builds every datagram from p2pnet.wire and checks it.
 * This program only runs the closed loop on those sockets: it reads a plan
 * (below) on stdin, prints "READY", sends the first window, answers every
 * expected datagram with the next one (recvmmsg/sendmmsg batches, epoll),
 * and after warmup + duration prints one JSON line of counters.
 *
 * Plan: little-endian u32 fields, byte strings as (u32 length, bytes).
 *   magic 0x47464e50, mode, nsock, window, warmup_ms, duration_ms,
 *   stall_ms, cpu (0xffffffff: leave affinity alone), spin (1: poll
 *   without sleeping, see below), nsock x fd
 * mode 1 (request/answer; introducer, echo, STUN):
 *   tx_req, tx_ans: offset of the 8 transaction bytes we own (slot u16 +
 *     sequence u48, big-endian) in requests and in answers
 *   id_off (0xffffffff: none), worker: where the 14-byte peer id
 *     "wWWsSSnNNNNNNN" goes; a slot takes a fresh id each cycle
 *   cookie_type, cookie_len, cookie_off: an answer to template 0 whose
 *     byte 1 is cookie_type gives its last cookie_len bytes to the slot's
 *     later templates at cookie_off (other answers give zeros)
 *   ncycle, ncycle x template: each slot sends template 0, 1, ...,
 *     ncycle-1, then a new id and template 0 again
 * mode 2 (table; relays): sockets come in pairs (A = 2i, B = 2i + 1)
 *   nsock x slot_off: where a received datagram carries its slot (u16 BE)
 *   nsock x window x (expected, answer): a datagram equal to expected[k]
 *     is answered with answer[k]; anything else counts as unexpected.
 *     The first window, and a stalled slot's resend, is A's answer[k].
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAGIC 0x47464e50u
#define NONE 0xffffffffu
#define BATCH 64
#define BUFSZ 2048
#define ID_LEN 14
#define MAX_COOKIE 32

typedef struct {
    uint32_t len;
    uint8_t *data;
} bytes_t;

static void die(const char *why) {
    fprintf(stderr, "fastgen: %s\n", why);
    exit(2);
}

static uint32_t rd32(void) {
    uint32_t v;
    if (fread(&v, 4, 1, stdin) != 1)
        die("short plan");
    return v;
}

static bytes_t rdbytes(void) {
    bytes_t b;
    b.len = rd32();
    if (b.len > BUFSZ)
        die("datagram longer than 2048 bytes in plan");
    b.data = malloc(b.len ? b.len : 1);
    if (!b.data || (b.len && fread(b.data, 1, b.len, stdin) != b.len))
        die("short plan");
    return b;
}

static double clock_s(clockid_t which) {
    struct timespec ts;
    clock_gettime(which, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void *zalloc(size_t n) {
    void *p = calloc(1, n ? n : 1);
    if (!p)
        die("out of memory");
    return p;
}

/* settings */
static uint32_t mode, nsock, window, stall_ms, spin;
static double warmup, duration;
static int *fds;
/* mode 1 */
static uint32_t tx_req, tx_ans, id_off, worker, cookie_type, cookie_len, cookie_off, ncycle;
static bytes_t *cycle;
static uint64_t *seqs;   /* [sock][slot] */
static uint32_t *phase;  /* [sock][slot] */
static uint8_t *ids;     /* [sock][slot][ID_LEN] */
static uint8_t *cookies; /* [sock][slot][MAX_COOKIE] */
static uint32_t *id_count;
static double *last_rx;
/* mode 2 */
static uint32_t *slot_off;
static bytes_t *expected, *answer; /* [sock][slot] */
static uint8_t *seen;              /* [pair][slot] */

/* counters */
static uint64_t answered, stalls, unexpected, send_errors, polls, peer_ids;

/* one batch of outgoing datagrams */
static uint8_t out_buf[BATCH][BUFSZ];
static struct iovec out_iov[BATCH];
static struct mmsghdr out_msg[BATCH];
static unsigned out_n;

static void new_id(uint32_t s, uint32_t slot) {
    char text[32];
    id_count[s]++;
    peer_ids++;
    snprintf(text, sizeof text, "w%02us%02un%07u", worker % 100, s % 100, id_count[s] % 10000000u);
    memcpy(ids + ((size_t)s * window + slot) * ID_LEN, text, ID_LEN);
}

/* Build slot's next request (mode 1) into dst; returns its length. */
static uint32_t build(uint32_t s, uint32_t slot, uint8_t *dst) {
    size_t i = (size_t)s * window + slot;
    uint64_t seq = (seqs[i] + 1) & 0xffffffffffffull;
    const bytes_t *t = &cycle[phase[i]];
    seqs[i] = seq;
    memcpy(dst, t->data, t->len);
    dst[tx_req] = slot >> 8;
    dst[tx_req + 1] = slot & 0xff;
    for (int b = 0; b < 6; b++)
        dst[tx_req + 2 + b] = (seq >> (8 * (5 - b))) & 0xff;
    if (id_off != NONE)
        memcpy(dst + id_off, ids + i * ID_LEN, ID_LEN);
    if (phase[i] > 0 && cookie_len)
        memcpy(dst + cookie_off, cookies + i * MAX_COOKIE, cookie_len);
    return t->len;
}

static void queue(const uint8_t *data, uint32_t len) {
    memcpy(out_buf[out_n], data, len);
    out_iov[out_n].iov_len = len;
    out_n++;
}

static void flush(int fd) {
    unsigned done = 0;
    while (done < out_n) {
        int r = sendmmsg(fd, out_msg + done, out_n - done, 0);
        if (r <= 0) {
            if (r < 0 && errno == EINTR)
                continue;
            send_errors += out_n - done;
            break;
        }
        done += r;
    }
    out_n = 0;
}

static void send_one(int fd, const uint8_t *data, uint32_t len) {
    if (send(fd, data, len, 0) < 0)
        send_errors++;
}

/* mode 1: an answer arrived on socket s; queue the slot's next request */
static void on_answer(uint32_t s, const uint8_t *d, uint32_t len) {
    if (len < tx_ans + 8)
        return;
    uint32_t slot = (uint32_t)d[tx_ans] << 8 | d[tx_ans + 1];
    uint64_t seq = 0;
    for (int b = 0; b < 6; b++)
        seq = seq << 8 | d[tx_ans + 2 + b];
    if (slot >= window)
        return;
    size_t i = (size_t)s * window + slot;
    if (seq != seqs[i])
        return; /* a late answer to a resent window */
    if (ncycle > 1) {
        if (phase[i] == 0) {
            uint8_t *c = cookies + i * MAX_COOKIE;
            if (d[1] == cookie_type && len >= cookie_len)
                memcpy(c, d + len - cookie_len, cookie_len);
            else
                memset(c, 0, cookie_len);
        }
        if (++phase[i] == ncycle) {
            phase[i] = 0;
            new_id(s, slot);
        }
    }
    answered++;
    out_iov[out_n].iov_len = build(s, slot, out_buf[out_n]);
    out_n++;
}

/* mode 2: a datagram arrived on socket s; queue its answer */
static void on_table(uint32_t s, const uint8_t *d, uint32_t len) {
    uint32_t off = slot_off[s];
    if (len < off + 2) {
        unexpected++;
        return;
    }
    uint32_t k = (uint32_t)d[off] << 8 | d[off + 1];
    size_t i = (size_t)s * window + k;
    if (k >= window || expected[i].len != len || memcmp(expected[i].data, d, len) != 0) {
        unexpected++;
        return;
    }
    answered++;
    seen[(size_t)(s / 2) * window + k] = 1;
    queue(answer[i].data, answer[i].len);
}

static uint8_t in_buf[BATCH][BUFSZ];
static struct iovec in_iov[BATCH];
static struct mmsghdr in_msg[BATCH];

static void drain(uint32_t s, double now) {
    int fd = fds[s];
    int got = 0;
    for (;;) {
        for (int m = 0; m < BATCH; m++)
            in_msg[m].msg_hdr.msg_flags = 0;
        int r = recvmmsg(fd, in_msg, BATCH, MSG_DONTWAIT, NULL);
        if (r <= 0)
            break;
        got = 1;
        for (int m = 0; m < r; m++) {
            if (mode == 1)
                on_answer(s, in_buf[m], in_msg[m].msg_len);
            else
                on_table(s, in_buf[m], in_msg[m].msg_len);
        }
        flush(fd);
        if (r < BATCH)
            break;
    }
    if (got && mode == 1)
        last_rx[s] = now;
}

static void read_plan(void) {
    uint32_t cpu;
    if (rd32() != MAGIC)
        die("bad plan magic");
    mode = rd32();
    nsock = rd32();
    window = rd32();
    if (mode != 1 && mode != 2)
        die("unknown mode");
    if (!nsock || !window || window > 65535 || (mode == 2 && nsock % 2))
        die("bad socket or window count");
    warmup = rd32() / 1000.0;
    duration = rd32() / 1000.0;
    stall_ms = rd32();
    cpu = rd32();
    spin = rd32();
    if (cpu != NONE) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        if (sched_setaffinity(0, sizeof set, &set) != 0)
            die("sched_setaffinity failed");
    }
    fds = zalloc(nsock * sizeof *fds);
    for (uint32_t s = 0; s < nsock; s++)
        fds[s] = (int)rd32();
    size_t slots = (size_t)nsock * window;
    last_rx = zalloc(nsock * sizeof *last_rx);
    if (mode == 1) {
        tx_req = rd32();
        tx_ans = rd32();
        id_off = rd32();
        worker = rd32();
        cookie_type = rd32();
        cookie_len = rd32();
        cookie_off = rd32();
        ncycle = rd32();
        if (!ncycle || cookie_len > MAX_COOKIE)
            die("bad cycle or cookie length");
        cycle = zalloc(ncycle * sizeof *cycle);
        for (uint32_t c = 0; c < ncycle; c++) {
            cycle[c] = rdbytes();
            if (cycle[c].len < tx_req + 8 || (id_off != NONE && cycle[c].len < id_off + ID_LEN) ||
                (c > 0 && cookie_len && cycle[c].len < cookie_off + cookie_len))
                die("template too short for its offsets");
        }
        seqs = zalloc(slots * sizeof *seqs);
        phase = zalloc(slots * sizeof *phase);
        ids = zalloc(slots * ID_LEN);
        cookies = zalloc(slots * MAX_COOKIE);
        id_count = zalloc(nsock * sizeof *id_count);
        if (id_off != NONE)
            for (uint32_t s = 0; s < nsock; s++)
                for (uint32_t k = 0; k < window; k++)
                    new_id(s, k);
    } else {
        slot_off = zalloc(nsock * sizeof *slot_off);
        for (uint32_t s = 0; s < nsock; s++)
            slot_off[s] = rd32();
        expected = zalloc(slots * sizeof *expected);
        answer = zalloc(slots * sizeof *answer);
        for (size_t i = 0; i < slots; i++) {
            expected[i] = rdbytes();
            answer[i] = rdbytes();
        }
        seen = zalloc(slots / 2 + 1);
    }
    peer_ids = 0; /* ids made before the load starts are not counted */
}

static void kick(uint32_t s, uint32_t k) {
    /* the first datagram of slot k (mode 1: a fresh request; mode 2: A's) */
    uint8_t buf[BUFSZ];
    if (mode == 1)
        send_one(fds[s], buf, build(s, k, buf));
    else
        send_one(fds[s], answer[(size_t)s * window + k].data, answer[(size_t)s * window + k].len);
}

int main(void) {
    read_plan();
    for (int m = 0; m < BATCH; m++) {
        in_iov[m].iov_base = in_buf[m];
        in_iov[m].iov_len = BUFSZ;
        in_msg[m].msg_hdr.msg_iov = &in_iov[m];
        in_msg[m].msg_hdr.msg_iovlen = 1;
        out_iov[m].iov_base = out_buf[m];
        out_msg[m].msg_hdr.msg_iov = &out_iov[m];
        out_msg[m].msg_hdr.msg_iovlen = 1;
    }
    int ep = epoll_create1(0);
    if (ep < 0)
        die("epoll_create1 failed");
    for (uint32_t s = 0; s < nsock; s++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = s};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[s], &ev) != 0)
            die("epoll_ctl failed (is every fd open?)");
    }
    printf("READY\n");
    fflush(stdout);

    double start = clock_s(CLOCK_MONOTONIC);
    double measure_from = start + warmup, end = measure_from + duration;
    double stall = stall_ms / 1000.0, next_check = start + stall;
    double wall0 = 0, cpu0 = 0, idle = 0, idle0 = 0;
    uint64_t answered0 = 0, polls0 = 0, peer_ids0 = 0, idle_polls = 0, idle_polls0 = 0;
    int measuring = 0;
    for (uint32_t s = 0; s < nsock; s++) {
        last_rx[s] = start;
        if (mode == 1 || s % 2 == 0)
            for (uint32_t k = 0; k < window; k++)
                kick(s, k);
    }
    struct epoll_event evs[64];
    for (;;) {
        double now = clock_s(CLOCK_MONOTONIC);
        if (!measuring && now >= measure_from) {
            measuring = 1;
            wall0 = now;
            cpu0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
            answered0 = answered;
            polls0 = polls;
            peer_ids0 = peer_ids;
            idle0 = idle;
            idle_polls0 = idle_polls;
        }
        if (now >= end)
            break;
        if (mode == 1) {
            for (uint32_t s = 0; s < nsock; s++)
                if (now - last_rx[s] > stall) {
                    /* nothing heard: resend the whole window, fresh sequences */
                    stalls++;
                    last_rx[s] = now;
                    for (uint32_t k = 0; k < window; k++)
                        kick(s, k);
                }
        } else if (now >= next_check) {
            next_check = now + stall;
            for (uint32_t p = 0; p < nsock / 2; p++)
                for (uint32_t k = 0; k < window; k++) {
                    uint8_t *row = seen + (size_t)p * window;
                    if (!row[k]) {
                        stalls++;
                        kick(2 * p, k);
                    }
                    row[k] = 0;
                }
        }
        polls++;
        int n = epoll_wait(ep, evs, 64, spin ? 0 : 10);
        if (n <= 0) {
            idle_polls++;
            idle += clock_s(CLOCK_MONOTONIC) - now;
        }
        for (int e = 0; e < n; e++)
            drain(evs[e].data.u32, now);
    }
    double wall = clock_s(CLOCK_MONOTONIC) - wall0;
    double cpu = clock_s(CLOCK_PROCESS_CPUTIME_ID) - cpu0;
    printf("{\"answered\": %llu, \"seconds\": %.6f, \"cpu_seconds\": %.6f, \"stalls\": %llu, "
           "\"unexpected\": %llu, \"send_errors\": %llu, \"polls\": %llu, \"idle_polls\": %llu, "
           "\"idle_seconds\": %.6f, \"peer_ids\": %llu}\n",
           (unsigned long long)(answered - answered0), wall, cpu, (unsigned long long)stalls,
           (unsigned long long)unexpected, (unsigned long long)send_errors,
           (unsigned long long)(polls - polls0), (unsigned long long)(idle_polls - idle_polls0),
           idle - idle0, (unsigned long long)(peer_ids - peer_ids0));
    return 0;
}
