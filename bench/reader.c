// The load generator's receivers for (b), in C (bench/reader.mjs builds and
// runs it). At (b)'s 200,000 deliveries a second the JavaScript receivers
// filled a core (89-102% of one), and on a 2-core machine what (b) then
// measured was mostly their queue (doc/PERFORMANCE.md, "a tenth host"). This
// program reads the same sockets, already joined by the load generator, in
// one epoll loop, for 69-72% of a core: what is left is the kernel's receive
// path, the same for confab and Redis.
//
//   reader confab N DELIVER_TYPE ORIGIN_NS             fds 3 to N+2 are confab receivers
//   reader redis N RECORD_BYTES PAYLOAD_AT ORIGIN_NS   fds 3 to N+2 are Redis subscribers
//
// Every message's payload starts with the time it was due (a big-endian
// double, ms on the load generator's performance.now() clock, which is
// CLOCK_MONOTONIC less ORIGIN_NS). Commands come on stdin, one a line:
//   meter EXPECTED             counts from zero (prints "metering"), and prints
//                              "reached N" once EXPECTED deliveries have come
//   report PATH                writes the counts and latencies to PATH, prints "reported"
// Its fds are passed in by its parent (child_process stdio); it exits when
// stdin closes.
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FIRST_FD 3
#define BUF_BYTES (256 * 1024)

typedef struct {
  int fd;
  size_t held; // bytes of an unfinished record kept at the start of buf
  uint8_t *buf;
} Receiver;

static int confab_mode;
static int deliver_type;
static size_t record_bytes, payload_at;
static int64_t origin_ns;

static Receiver *receivers;
static int receiver_count;

// The current meter.
static int64_t expected;
static int64_t counted;
static int32_t *per_receiver;
static double *latencies, *stamps;
static int reached_told;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)((int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec - origin_ns) / 1e6;
}

static double be_double(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
  double d;
  memcpy(&d, &v, 8);
  return d;
}

static uint32_t be32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void say(const char *line) {
  size_t n = strlen(line);
  while (n > 0) {
    ssize_t w = write(1, line, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      exit(1);
    }
    line += w;
    n -= (size_t)w;
  }
}

static void delivered(int who, const uint8_t *payload, double at) {
  per_receiver[who]++;
  double sent = be_double(payload);
  if (counted < expected) {
    latencies[counted] = at - sent;
    stamps[counted] = sent;
  }
  counted++;
  if (!reached_told && expected > 0 && counted >= expected) {
    char line[64];
    snprintf(line, sizeof line, "reached %lld\n", (long long)counted);
    say(line);
    reached_told = 1;
  }
}

// Cuts what the receiver holds into records; keeps an unfinished one.
static void parse(int who, Receiver *r, double at) {
  size_t pos = 0;
  for (;;) {
    size_t left = r->held - pos;
    const uint8_t *p = r->buf + pos;
    size_t len;
    if (confab_mode) {
      if (left < 4) break;
      len = 4 + (size_t)be32(p);
      if (len > BUF_BYTES) {
        fprintf(stderr, "reader: a frame of %zu bytes\n", len);
        exit(1);
      }
      if (left < len) break;
      if (len >= 4 + 1 + 16 + 8 + 8 + 1 && p[4] == deliver_type) {
        size_t body = 4 + 1 + 16 + 8 + 8 + 1 + (size_t)p[4 + 1 + 16 + 8 + 8];
        if (body + 8 <= len) delivered(who, p + body, at);
      }
    } else {
      len = record_bytes;
      if (left < len) break;
      delivered(who, p + payload_at, at);
    }
    pos += len;
  }
  if (pos > 0) {
    memmove(r->buf, r->buf + pos, r->held - pos);
    r->held -= pos;
  }
}

static void start_meter(int64_t n) {
  free(per_receiver);
  free(latencies);
  free(stamps);
  expected = n;
  counted = 0;
  reached_told = 0;
  per_receiver = calloc((size_t)receiver_count, sizeof *per_receiver);
  latencies = malloc((size_t)(n > 0 ? n : 1) * sizeof *latencies);
  stamps = malloc((size_t)(n > 0 ? n : 1) * sizeof *stamps);
  if (per_receiver == NULL || latencies == NULL || stamps == NULL) {
    fprintf(stderr, "reader: out of memory\n");
    exit(1);
  }
  if (n == 0) reached_told = 1;
}

// File layout: int64 counted, int64 kept, int32 receivers, int32 per_receiver[receivers], double latencies[kept], double stamps[kept].
static void report(const char *path) {
  FILE *f = fopen(path, "wb");
  if (f == NULL) {
    perror("reader: report");
    exit(1);
  }
  int64_t kept = counted < expected ? counted : expected;
  int32_t n = receiver_count;
  fwrite(&counted, sizeof counted, 1, f);
  fwrite(&kept, sizeof kept, 1, f);
  fwrite(&n, sizeof n, 1, f);
  fwrite(per_receiver, sizeof *per_receiver, (size_t)n, f);
  fwrite(latencies, sizeof *latencies, (size_t)kept, f);
  fwrite(stamps, sizeof *stamps, (size_t)kept, f);
  if (fclose(f) != 0) {
    perror("reader: report");
    exit(1);
  }
  say("reported\n");
}

static char command[4096];
static size_t command_held;

// Returns 0 once stdin has closed.
static int read_commands(void) {
  ssize_t n = read(0, command + command_held, sizeof command - 1 - command_held);
  if (n == 0) return 0;
  if (n < 0) return errno == EINTR || errno == EAGAIN;
  command_held += (size_t)n;
  char *nl;
  while ((nl = memchr(command, '\n', command_held)) != NULL) {
    *nl = '\0';
    long long a;
    char path[4096];
    if (sscanf(command, "meter %lld", &a) == 1 && a >= 0) {
      start_meter(a);
      say("metering\n");
    } else if (sscanf(command, "report %4095s", path) == 1) report(path);
    else {
      fprintf(stderr, "reader: unknown command \"%s\"\n", command);
      exit(1);
    }
    size_t used = (size_t)(nl - command) + 1;
    memmove(command, nl + 1, command_held - used);
    command_held -= used;
  }
  if (command_held == sizeof command - 1) {
    fprintf(stderr, "reader: command too long\n");
    exit(1);
  }
  return 1;
}

int main(int argc, char **argv) {
  int count = argc >= 3 ? atoi(argv[2]) : 0;
  if (argc == 5 && strcmp(argv[1], "confab") == 0) {
    confab_mode = 1;
    deliver_type = atoi(argv[3]);
    origin_ns = strtoll(argv[4], NULL, 10);
  } else if (argc == 6 && strcmp(argv[1], "redis") == 0) {
    record_bytes = (size_t)atol(argv[3]);
    payload_at = (size_t)atol(argv[4]);
    origin_ns = strtoll(argv[5], NULL, 10);
    if (record_bytes == 0 || payload_at + 8 > record_bytes) {
      fprintf(stderr, "reader: bad record layout\n");
      return 2;
    }
  } else {
    fprintf(stderr, "usage: reader confab N DELIVER_TYPE ORIGIN_NS | reader redis N RECORD_BYTES PAYLOAD_AT ORIGIN_NS\n");
    return 2;
  }
  if (count < 1) {
    fprintf(stderr, "reader: no receivers\n");
    return 2;
  }
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) {
    perror("reader: epoll_create1");
    return 1;
  }
  receivers = calloc((size_t)count, sizeof *receivers);
  if (receivers == NULL) return 1;
  for (int fd = FIRST_FD; fd < FIRST_FD + count; fd++) {
    Receiver *r = &receivers[receiver_count];
    r->fd = fd;
    r->buf = malloc(BUF_BYTES);
    if (r->buf == NULL) return 1;
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)receiver_count};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
      perror("reader: epoll_ctl");
      return 1;
    }
    receiver_count++;
  }
  struct epoll_event in = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, 0, &in) != 0) {
    perror("reader: epoll_ctl stdin");
    return 1;
  }
  start_meter(0);
  say("ready\n");
  struct epoll_event events[256];
  for (;;) {
    int n = epoll_wait(ep, events, 256, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("reader: epoll_wait");
      return 1;
    }
    for (int i = 0; i < n; i++) {
      uint32_t who = events[i].data.u32;
      if (who == UINT32_MAX) {
        if (!read_commands()) return 0;
        continue;
      }
      Receiver *r = &receivers[who];
      ssize_t got = recv(r->fd, r->buf + r->held, BUF_BYTES - r->held, MSG_DONTWAIT);
      if (got > 0) {
        r->held += (size_t)got;
        parse((int)who, r, now_ms());
      } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
        // Closed: stop watching it (a receiver the server dropped shows as lost).
        epoll_ctl(ep, EPOLL_CTL_DEL, r->fd, NULL);
      }
    }
  }
}
