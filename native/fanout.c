// One call that hands each of many sockets its queued bytes, for the relay's
// end-of-turn flush. Through Node's stream layer every write costs a JS call,
// a WriteWrap object and a nextTick; here a whole turn is one call into C and
// one send (sendmsg for several pieces) per socket. Only sockets whose Node
// stream is empty come here (so nothing already queued can be overtaken); what
// the kernel does not take goes back to the stream, which owns the rest of the
// socket's life.
#define NAPI_VERSION 8
#include <errno.h>
#include <node_api.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/uio.h>

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0 // macOS: Node ignores SIGPIPE anyway
#endif

// More pieces than this in one turn: the rest goes through the stream.
#define MAX_IOV 64

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

// writeMany(fds: Int32Array, count: number, bufs: Uint8Array[], refs: Int32Array, ends: Int32Array, results: Int32Array)
// Socket i gets bufs[refs[k]] for k in ends[i-1] .. ends[i] (ends[-1] = 0) in
// one send or sendmsg; results[i] is the number of bytes the kernel took, or -errno.
// A buffer shared by many sockets is listed once in bufs and looked up once.
static napi_value write_many(napi_env env, napi_callback_info info) {
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

  struct iovec iov[MAX_IOV];
  for (uint32_t i = 0, k = 0; i < count; i++) {
    int n = 0;
    for (; k < (uint32_t)ends[i]; k++)
      if (n < MAX_IOV) iov[n++] = base[refs[k]];
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
      msg.msg_iovlen = (size_t)n;
      do r = sendmsg(fds[i], &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
      while (r < 0 && errno == EINTR);
    }
    results[i] = r < 0 ? -errno : (int32_t)r;
  }
out:
  if (base != local) free(base);
  return result;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  if (napi_create_function(env, "writeMany", NAPI_AUTO_LENGTH, write_many, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "writeMany", fn) != napi_ok) return NULL;
  return exports;
}
