// One call that hands each of many sockets its queued bytes, for the relay's
// end-of-turn flush. Through Node's stream layer every write costs a JS call,
// a WriteWrap object and a nextTick; here a whole turn is one call into C and
// one send (sendmsg for several pieces) per socket, or, on Linux with
// io_uring, one io_uring_enter for up to RING_ENTRIES sockets (a fifth to a quarter
// less CPU per delivery than a send() each; doc/PERFORMANCE.md). Only sockets
// whose Node stream is empty come here (so nothing already queued can be
// overtaken); what the kernel does not take goes back to the stream, which
// owns the rest of the socket's life.
#define NAPI_VERSION 8
#include <errno.h>
#include <node_api.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0 // macOS: Node ignores SIGPIPE anyway
#endif

// More pieces than this in one turn: the rest goes through the stream.
#define MAX_IOV 64

// Socket i's pieces: refs from *first on, at most MAX_IOV of them (the
// kernel's count then tells the stream where the rest starts).
static uint32_t pieces_of(const int32_t *ends, uint32_t i, uint32_t *first) {
  *first = i > 0 ? (uint32_t)ends[i - 1] : 0;
  uint32_t n = (uint32_t)ends[i] - *first;
  return n < MAX_IOV ? n : MAX_IOV;
}

static napi_value throw_type(napi_env env, const char *msg) {
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
  return NULL;
}

static int int32_array(napi_env env, napi_value v, int32_t **data, size_t *len) {
  bool is;
  napi_typedarray_type type;
  napi_value ab;
  size_t offset;
  void *p;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return 0;
  if (napi_get_typedarray_info(env, v, &type, len, &p, &ab, &offset) != napi_ok) return 0;
  if (type != napi_int32_array) return 0;
  *data = p;
  return 1;
}


#if defined(__linux__) && defined(__has_include)
#if __has_include(<linux/io_uring.h>)
#define HAVE_RING 1
#endif
#endif

#ifdef HAVE_RING
#include <linux/io_uring.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef IORING_SETUP_SUBMIT_ALL
#define IORING_SETUP_SUBMIT_ALL (1U << 7)
#endif
#ifndef IORING_SETUP_SINGLE_ISSUER
#define IORING_SETUP_SINGLE_ISSUER (1U << 12)
#endif
#ifndef IORING_SETUP_DEFER_TASKRUN
#define IORING_SETUP_DEFER_TASKRUN (1U << 13)
#endif

// Sockets per io_uring_enter; a bigger turn takes several. A kernel without
// preemption cannot switch the relay out inside the call, but entering every
// 16 or 32 sockets cost 4-9% more CPU per delivery and did not move (b)'s p99
// (doc/PERFORMANCE.md, "the eighth host again").
#define RING_ENTRIES 256

// One ring per thread that loads the addon (instance data of its napi_env):
// SINGLE_ISSUER rings may only be used by the thread that made them.
typedef struct {
  int fd; // -1 until set up, or after it failed
  int tried;
  unsigned entries;
  unsigned *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask;
  struct io_uring_sqe *sqes;
  struct io_uring_cqe *cqes;
  void *sq_map, *cq_map, *sqe_map;
  size_t sq_len, cq_len, sqe_len;
  struct msghdr msgs[RING_ENTRIES];
  // Room for every piece of a full batch, so filling it never reallocates
  // (the msghdrs point into it). Pages only a turn with many pieces touches.
  struct iovec iovs[RING_ENTRIES * MAX_IOV];
} ring_t;

// `owned`: r->fd is still the ring's. After io_uring_enter said EBADF or
// EOPNOTSUPP, the number may belong to another file by now: not closed.
static void ring_close(ring_t *r, int owned) {
  if (r->sqe_map != NULL) munmap(r->sqe_map, r->sqe_len);
  if (r->cq_map != NULL && r->cq_map != r->sq_map) munmap(r->cq_map, r->cq_len);
  if (r->sq_map != NULL) munmap(r->sq_map, r->sq_len);
  if (r->fd >= 0 && owned) close(r->fd);
  r->fd = -1;
  r->sq_map = r->cq_map = r->sqe_map = NULL;
}

// Whether this kernel's io_uring has both sends: a ring can be set up from
// 5.1, but IORING_OP_SEND came in 5.6 (and the probe itself in 5.6).
static int ring_sends(int fd) {
  size_t size = sizeof(struct io_uring_probe) + 256 * sizeof(struct io_uring_probe_op);
  struct io_uring_probe *probe = calloc(1, size);
  if (probe == NULL) return 0;
  int ok = syscall(__NR_io_uring_register, fd, IORING_REGISTER_PROBE, probe, 256) >= 0 &&
           probe->last_op >= IORING_OP_SEND && (probe->ops[IORING_OP_SEND].flags & IO_URING_OP_SUPPORTED) &&
           (probe->ops[IORING_OP_SENDMSG].flags & IO_URING_OP_SUPPORTED);
  free(probe);
  return ok;
}

// Sets the ring up on first use; false where io_uring is missing, disabled
// (sysctl kernel.io_uring_disabled) or forbidden (container seccomp profiles).
static int ring_ready(ring_t *r) {
  if (r->tried) return r->fd >= 0;
  r->tried = 1;
  // The newest flags first: the submitting thread does the completion work
  // inside io_uring_enter, and one bad entry doesn't stop the rest.
  static const unsigned flag_sets[] = {
      IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL, // 6.1
      IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_SUBMIT_ALL,                              // 6.0
      IORING_SETUP_SUBMIT_ALL,                                                           // 5.18
      0,
  };
  struct io_uring_params p;
  int fd = -1;
  for (size_t i = 0; i < sizeof flag_sets / sizeof flag_sets[0]; i++) {
    memset(&p, 0, sizeof p);
    p.flags = flag_sets[i];
    fd = (int)syscall(__NR_io_uring_setup, RING_ENTRIES, &p);
    if (fd >= 0 || errno != EINVAL) break;
  }
  if (fd < 0) return 0;
  r->fd = fd;
  r->entries = p.sq_entries < RING_ENTRIES ? p.sq_entries : RING_ENTRIES;
  r->sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
  r->cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
  if (p.features & IORING_FEAT_SINGLE_MMAP) {
    if (r->cq_len > r->sq_len) r->sq_len = r->cq_len;
    r->cq_len = r->sq_len;
  }
  void *sq = mmap(NULL, r->sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQ_RING);
  if (sq == MAP_FAILED) goto fail;
  r->sq_map = sq;
  void *cq = sq;
  if (!(p.features & IORING_FEAT_SINGLE_MMAP)) {
    cq = mmap(NULL, r->cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_CQ_RING);
    if (cq == MAP_FAILED) goto fail;
  }
  r->cq_map = cq;
  r->sqe_len = p.sq_entries * sizeof(struct io_uring_sqe);
  void *sqes = mmap(NULL, r->sqe_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQES);
  if (sqes == MAP_FAILED) goto fail;
  r->sqe_map = sqes;
  r->sqes = sqes;
  r->sq_tail = (unsigned *)((char *)sq + p.sq_off.tail);
  r->sq_mask = (unsigned *)((char *)sq + p.sq_off.ring_mask);
  r->sq_array = (unsigned *)((char *)sq + p.sq_off.array);
  r->cq_head = (unsigned *)((char *)cq + p.cq_off.head);
  r->cq_tail = (unsigned *)((char *)cq + p.cq_off.tail);
  r->cq_mask = (unsigned *)((char *)cq + p.cq_off.ring_mask);
  r->cqes = (struct io_uring_cqe *)((char *)cq + p.cq_off.cqes);
  if (!ring_sends(fd)) goto fail;
  return 1;
fail:
  ring_close(r, 1);
  return 0;
}

// Takes this turn's completions; returns how many.
static unsigned ring_reap(ring_t *r, uint32_t count, int32_t *results) {
  unsigned head = *r->cq_head;
  unsigned tail = __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE);
  unsigned n = 0;
  for (; head != tail; head++, n++) {
    struct io_uring_cqe *c = &r->cqes[head & *r->cq_mask];
    if (c->user_data < count) results[c->user_data] = c->res;
  }
  __atomic_store_n(r->cq_head, head, __ATOMIC_RELEASE);
  return n;
}

// Sends sockets from..count through the ring, RING_ENTRIES at a time, and
// returns the first socket it could not hand to the kernel (count when all
// went): the caller sends the rest with send(). A ring that fails is closed
// for good.
static uint32_t ring_write(ring_t *r, const int32_t *fds, uint32_t count, const struct iovec *base,
                           const int32_t *refs, const int32_t *ends, int32_t *results) {
  uint32_t done = 0;
  while (done < count) {
    unsigned n = count - done < r->entries ? count - done : r->entries;
    unsigned tail = *r->sq_tail;
    size_t used = 0;
    for (unsigned j = 0; j < n; j++) {
      uint32_t i = done + j;
      uint32_t k, pieces = pieces_of(ends, i, &k);
      unsigned slot = (tail + j) & *r->sq_mask;
      struct io_uring_sqe *e = &r->sqes[slot];
      memset(e, 0, sizeof *e);
      e->fd = fds[i];
      // MSG_DONTWAIT: a full socket completes at once with -EAGAIN (the
      // stream takes over) instead of waiting in the ring for room.
      e->msg_flags = MSG_DONTWAIT | MSG_NOSIGNAL;
      e->user_data = i;
      if (pieces <= 1) {
        e->opcode = IORING_OP_SEND;
        if (pieces == 1) {
          e->addr = (uintptr_t)base[refs[k]].iov_base;
          e->len = (uint32_t)base[refs[k]].iov_len;
        }
      } else {
        struct iovec *iov = r->iovs + used;
        for (uint32_t m = 0; m < pieces; m++) iov[m] = base[refs[k + m]];
        used += pieces;
        struct msghdr *msg = &r->msgs[j];
        memset(msg, 0, sizeof *msg);
        msg->msg_iov = iov;
        msg->msg_iovlen = pieces;
        e->opcode = IORING_OP_SENDMSG;
        e->addr = (uintptr_t)msg;
        e->len = 1;
      }
      r->sq_array[slot] = slot;
      results[i] = -EIO;
    }
    __atomic_store_n(r->sq_tail, tail + n, __ATOMIC_RELEASE);
    unsigned submitted = 0, reaped = 0, stalls = 0;
    while (reaped < n) {
      long got = syscall(__NR_io_uring_enter, r->fd, n - submitted, n - reaped, IORING_ENTER_GETEVENTS, NULL, 0);
      int err = got < 0 ? errno : 0;
      unsigned before = reaped;
      if (got > 0) submitted += (unsigned)got;
      reaped += ring_reap(r, count, results);
      // EINTR is retried as send() retries it; EAGAIN and EBUSY (no memory
      // for requests, a completion backlog) a few times while nothing moves,
      // so the event loop can never spin here.
      if (got > 0 || reaped > before) stalls = 0;
      if (err == 0 || err == EINTR || ((err == EAGAIN || err == EBUSY) && ++stalls < 16)) continue;
      // Unusable from here. If nothing of this batch went in, send() takes it
      // whole; otherwise what went in is reaped and what didn't (still -EIO)
      // goes to the streams.
      ring_close(r, err != EBADF && err != EOPNOTSUPP);
      return submitted == 0 ? done : done + n;
    }
    done += n;
  }
  return count;
}

static void ring_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  ring_t *r = data;
  ring_close(r, 1);
  free(r);
}

static ring_t *ring_of(napi_env env) {
  void *data = NULL;
  if (napi_get_instance_data(env, &data) == napi_ok && data != NULL) return data;
  ring_t *r = calloc(1, sizeof *r);
  if (r == NULL) return NULL;
  r->fd = -1;
  if (napi_set_instance_data(env, r, ring_finalize, NULL) != napi_ok) {
    free(r);
    return NULL;
  }
  return r;
}
#endif

// writeMany(fds: Int32Array, count: number, bufs: Uint8Array[], refs: Int32Array, ends: Int32Array, results: Int32Array)
// Socket i gets bufs[refs[k]] for k in ends[i-1] .. ends[i] (ends[-1] = 0) in
// one send or sendmsg; results[i] is the number of bytes the kernel took, or -errno.
// A buffer shared by many sockets is listed once in bufs and looked up once.
// ringWriteMany takes the same arguments and does the same through io_uring
// where ringReady() is true, with send() where it isn't.
static napi_value write_many_with(napi_env env, napi_callback_info info, int use_ring) {
  size_t argc = 6;
  napi_value argv[6];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 6)
    return throw_type(env, "writeMany takes 6 arguments");
  int32_t *fds, *refs, *ends, *results;
  size_t nfds, nrefs, nends, nresults;
  uint32_t count, nbufs;
  bool is_array;
  if (!int32_array(env, argv[0], &fds, &nfds) || !int32_array(env, argv[3], &refs, &nrefs) ||
      !int32_array(env, argv[4], &ends, &nends) || !int32_array(env, argv[5], &results, &nresults))
    return throw_type(env, "fds, refs, ends and results must be Int32Arrays");
  if (napi_get_value_uint32(env, argv[1], &count) != napi_ok) return throw_type(env, "count must be a number");
  if (napi_is_array(env, argv[2], &is_array) != napi_ok || !is_array) return throw_type(env, "bufs must be an array");
  napi_get_array_length(env, argv[2], &nbufs);
  if (count > nfds || count > nends || count > nresults) return throw_type(env, "count exceeds an array");

  struct iovec local[256];
  struct iovec *base = nbufs <= 256 ? local : malloc(nbufs * sizeof *base);
  if (base == NULL) {
    napi_throw_error(env, "ENOMEM", "writeMany: out of memory");
    return NULL;
  }
  napi_value result = NULL;
  for (uint32_t b = 0; b < nbufs; b++) {
    napi_value buf;
    bool is;
    napi_typedarray_type type;
    napi_value ab;
    size_t offset;
    if (napi_get_element(env, argv[2], b, &buf) != napi_ok || napi_is_typedarray(env, buf, &is) != napi_ok || !is ||
        napi_get_typedarray_info(env, buf, &type, &base[b].iov_len, &base[b].iov_base, &ab, &offset) != napi_ok ||
        type != napi_uint8_array) {
      throw_type(env, "bufs must be Uint8Arrays");
      goto out;
    }
  }

  // Check every index before the first send, so a bad call writes nothing.
  for (uint32_t i = 0, k = 0; i < count; i++) {
    if (ends[i] < 0 || (uint32_t)ends[i] < k || (uint32_t)ends[i] > nrefs) {
      throw_type(env, "ends must rise within refs");
      goto out;
    }
    for (; k < (uint32_t)ends[i]; k++) {
      if (refs[k] < 0 || (uint32_t)refs[k] >= nbufs) {
        throw_type(env, "refs must index bufs");
        goto out;
      }
    }
  }

  uint32_t from = 0;
#ifdef HAVE_RING
  if (use_ring) {
    ring_t *r = ring_of(env);
    if (r != NULL && ring_ready(r)) from = ring_write(r, fds, count, base, refs, ends, results);
  }
#else
  (void)use_ring;
#endif
  struct iovec iov[MAX_IOV];
  for (uint32_t i = from; i < count; i++) {
    uint32_t k, n = pieces_of(ends, i, &k);
    for (uint32_t m = 0; m < n; m++) iov[m] = base[refs[k + m]];
    ssize_t r;
    // MSG_NOSIGNAL: a peer that has gone gives EPIPE, never SIGPIPE.
    if (n == 1) {
      // The usual case, one shared buffer: send() skips sendmsg's copy of the
      // msghdr and iovec from user space, about 5% of the kernel's time per write.
      do r = send(fds[i], iov[0].iov_base, iov[0].iov_len, MSG_DONTWAIT | MSG_NOSIGNAL);
      while (r < 0 && errno == EINTR);
    } else {
      struct msghdr msg = {0};
      msg.msg_iov = iov;
      msg.msg_iovlen = n;
      do r = sendmsg(fds[i], &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
      while (r < 0 && errno == EINTR);
    }
    results[i] = r < 0 ? -errno : (int32_t)r;
  }
out:
  if (base != local) free(base);
  return result;
}

static napi_value write_many(napi_env env, napi_callback_info info) { return write_many_with(env, info, 0); }

static napi_value ring_write_many(napi_env env, napi_callback_info info) { return write_many_with(env, info, 1); }

// ringReady(): whether ringWriteMany goes through io_uring in this thread.
static napi_value ring_ready_js(napi_env env, napi_callback_info info) {
  (void)info;
  int ok = 0;
#ifdef HAVE_RING
  ring_t *r = ring_of(env);
  ok = r != NULL && ring_ready(r);
#endif
  napi_value v;
  napi_get_boolean(env, ok, &v);
  return v;
}

NAPI_MODULE_INIT() {
  static const struct {
    const char *name;
    napi_callback cb;
  } fns[] = {{"writeMany", write_many}, {"ringWriteMany", ring_write_many}, {"ringReady", ring_ready_js}};
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value fn;
    if (napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].cb, NULL, &fn) != napi_ok) return NULL;
    if (napi_set_named_property(env, exports, fns[i].name, fn) != napi_ok) return NULL;
  }
  return exports;
}
