/*
** probe.c -- the native test plugin of tests/native: one source, many builds.
**
** Compile-time knobs (cc -D...): NAME, VERSION, PRIORITY, TAG, FLAGS, DEP (one
** dependency string), and, to build broken descriptors, ABI_VERSION, STRUCT_SIZE,
** REQUIRES_MINOR, NULL_NAME, ENTRY_NULL.
**
** What it does per request, so tests can see it in the answer:
**   request phase  appends TAG to the request header x-order, sets x-from-NAME,
**                  and reports in request headers what its view and the host
**                  functions gave it (x-NAME-saw, -notfound, -setstatus, -greeting, -path);
**   response phase appends TAG to x-resp-order and reports x-NAME-data (its
**                  request_data), -view-status, -view-x-py and -respond (respond()'s code);
**   on_request_done frees the request_data and counts itself.
** The request header x-NAME-act picks a misbehaviour: respond, error, code7,
** respond-noop (COVET_RESPOND without respond()), resp-error, resp-code7, resp-respond
** (COVET_RESPOND from on_response), status.
** probe_stats() exports the counters (read through ctypes), with the number of calls
** made without the GIL held.
*/

#include <stdio.h>
#include <stdlib.h>

#include "covet_plugin.h"

#ifndef NAME
#define NAME "probe"
#endif
#ifndef VERSION
#define VERSION "1.0.0"
#endif
#ifndef PRIORITY
#define PRIORITY 100
#endif
#ifndef TAG
#define TAG NAME
#endif
#ifndef FLAGS
#define FLAGS COVET_FLAG_NONE
#endif
#ifndef ABI_VERSION
#define ABI_VERSION COVET_ABI_VERSION
#endif
#ifndef STRUCT_SIZE
#define STRUCT_SIZE sizeof(covet_plugin_descriptor)
#endif
#ifndef REQUIRES_MINOR
#define REQUIRES_MINOR 0
#endif
#ifdef NULL_NAME
#define DESC_NAME NULL
#else
#define DESC_NAME NAME
#endif

/* init, shutdown, on_request, on_response, on_request_done, request_data allocated, freed,
** calls made without the GIL (the ABI promises every hook, init and shutdown hold it) */
static int counters[8];

COVET_EXPORT void probe_stats(int out[8]) { memcpy(out, counters, sizeof counters); }

/* From the interpreter that loaded us, if any (weak: the plugin links against nothing). */
extern int PyGILState_Check(void) __attribute__((weak));

static void check_gil(void) {
  if (PyGILState_Check != NULL && !PyGILState_Check()) counters[7]++;
}

typedef struct instance {
  const covet_host_api *host;
  covet_plugin_host_ptr plugin;
  char greeting[64];
} instance;

typedef struct reqstate {
  char act[32];
  int seq;
} reqstate;

/* header name "x-" NAME "-" suffix */
static covet_plugin_str hname(char *buf, size_t size, const char *suffix) {
  int n = snprintf(buf, size, "x-%s-%s", NAME, suffix);
  return (covet_plugin_str){buf, (size_t)n};
}

static void put_int(const covet_host_api *host, covet_request_host_ptr req, const char *suffix, int v) {
  char name[96], value[32];
  int n = snprintf(value, sizeof value, "%d", v);
  host->set_header(req, hname(name, sizeof name, suffix), (covet_plugin_str){value, (size_t)n});
}

static void put_str(const covet_host_api *host, covet_request_host_ptr req, const char *suffix,
                    const char *p, size_t len) {
  char name[96];
  host->set_header(req, hname(name, sizeof name, suffix), (covet_plugin_str){p, len});
}

static void append(const covet_host_api *host, covet_request_host_ptr req, const char *header) {
  covet_host_str cur;
  char buf[512];
  int n;
  if (host->get_header(req, COVET_CSTR(header), &cur) == COVET_OK && cur.len > 0)
    n = snprintf(buf, sizeof buf, "%.*s,%s", (int)cur.len, cur.ptr, TAG);
  else
    n = snprintf(buf, sizeof buf, "%s", TAG);
  host->set_header(req, COVET_CSTR(header), (covet_plugin_str){buf, (size_t)n});
}

/* The view's value of header `name`, or "-" */
static covet_host_str in_view(const covet_request_view *view, const char *name) {
  size_t len = strlen(name);
  for (size_t i = 0; i < view->n_headers; i++) {
    if (view->headers[i].name.len == len && memcmp(view->headers[i].name.ptr, name, len) == 0)
      return view->headers[i].value;
  }
  return (covet_host_str){"-", 1};
}

static int init(const covet_host_api *host, covet_plugin_host_ptr plugin, void **out) {
  covet_host_str v;
  instance *self;
  counters[0]++;
  check_gil();
  if (host->config_get(plugin, COVET_STR("fail_init"), &v) == COVET_OK) {
    host->error(plugin, COVET_STR("init refused: the setting fail_init is set"));
    return COVET_ERROR;
  }
  self = calloc(1, sizeof *self);
  if (self == NULL) return COVET_ERROR;
  self->host = host;
  self->plugin = plugin;
  if (host->config_get(plugin, COVET_STR("greeting"), &v) == COVET_OK)
    snprintf(self->greeting, sizeof self->greeting, "%.*s", (int)v.len, v.ptr);
  else
    snprintf(self->greeting, sizeof self->greeting, "NOTFOUND");
  *out = self;
  return COVET_OK;
}

static void shutdown_(void *p) {
  counters[1]++;
  check_gil();
  free(p);
}

static int on_request(void *p, covet_request_host_ptr req, const covet_request_view *view) {
  instance *self = p;
  const covet_host_api *host = self->host;
  covet_host_str act = {NULL, 0}, absent, saw;
  char name[96];
  reqstate *st;
  int rc;

  counters[2]++;
  check_gil();
  st = calloc(1, sizeof *st);
  if (st == NULL) return COVET_ERROR;
  counters[5]++;
  st->seq = counters[2];
  host->get_header(req, hname(name, sizeof name, "act"), &act);
  snprintf(st->act, sizeof st->act, "%.*s", (int)act.len, act.ptr ? act.ptr : "");
  host->set_request_data(req, st);

  append(host, req, "x-order");
  saw = in_view(view, "x-py");
  put_str(host, req, "saw", saw.ptr, saw.len);
  put_int(host, req, "notfound", host->get_header(req, COVET_STR("x-absent-header"), &absent));
  put_int(host, req, "setstatus", host->set_status(req, 299));
  put_str(host, req, "greeting", self->greeting, strlen(self->greeting));
  put_str(host, req, "path", view->path.ptr, view->path.len);
  host->set_header(req, hname(name, sizeof name, "from"), COVET_STR(TAG));

  if (strcmp(st->act, "respond") == 0) {
    rc = host->respond(req, 418, COVET_STR("text/plain"), COVET_STR("teapot from " NAME));
    return rc == COVET_OK ? COVET_RESPOND : COVET_ERROR;
  }
  if (strcmp(st->act, "error") == 0) {
    host->error(self->plugin, COVET_STR("boom from " NAME));
    return COVET_ERROR;
  }
  if (strcmp(st->act, "code7") == 0) return 7;
  if (strcmp(st->act, "respond-noop") == 0) return COVET_RESPOND;
  return COVET_OK;
}

static int on_response(void *p, covet_request_host_ptr req, const covet_request_view *view) {
  instance *self = p;
  const covet_host_api *host = self->host;
  reqstate *st = host->request_data(req);
  covet_host_str seen;
  char buf[96], name[96];
  int n;

  counters[3]++;
  check_gil();
  if (st != NULL) {
    n = snprintf(buf, sizeof buf, "%s#%d", TAG, st->seq);
    put_str(host, req, "data", buf, (size_t)n);
  } else {
    put_str(host, req, "data", "NULL", 4);
  }
  append(host, req, "x-resp-order");
  put_int(host, req, "view-status", view->status);
  seen = in_view(view, "x-py");
  put_str(host, req, "view-x-py", seen.ptr, seen.len);
  put_int(host, req, "respond", host->respond(req, 200, COVET_STR(""), COVET_STR("late")));

  if (st == NULL) return COVET_OK;
  if (strcmp(st->act, "status") == 0) {
    put_int(host, req, "badstatus", host->set_status(req, 5));
    host->set_status(req, 203);
    put_int(host, req, "removed", host->remove_header(req, COVET_STR("x-remove-me")));
    put_int(host, req, "removed-again", host->remove_header(req, COVET_STR("x-remove-me")));
    host->set_header(req, hname(name, sizeof name, "replaced"), COVET_STR(TAG));
  }
  if (strcmp(st->act, "resp-error") == 0) {
    host->error(self->plugin, COVET_STR("response boom from " NAME));
    return COVET_ERROR;
  }
  if (strcmp(st->act, "resp-code7") == 0) return 7;
  if (strcmp(st->act, "resp-respond") == 0) return COVET_RESPOND;
  return COVET_OK;
}

static void on_request_done(void *p, covet_request_host_ptr req) {
  instance *self = p;
  reqstate *st = self->host->request_data(req);
  counters[4]++;
  check_gil();
  if (st != NULL) {
    counters[6]++;
    free(st);
  }
  self->host->set_request_data(req, NULL);
}

#ifdef DEP
static const char *const deps[] = {DEP, NULL};
#define DEPS deps
#else
#define DEPS NULL
#endif

static const covet_plugin_descriptor desc = {
    .abi_version = ABI_VERSION,
    .struct_size = STRUCT_SIZE,
    .requires_minor = REQUIRES_MINOR,
    .flags = FLAGS,
    .name = DESC_NAME,
    .version = VERSION,
    .priority = PRIORITY,
    .dependencies = DEPS,
    .init = init,
    .shutdown = shutdown_,
    .on_request = on_request,
    .on_response = on_response,
    .on_request_done = on_request_done,
};

COVET_EXPORT const covet_plugin_descriptor *covet_plugin_entry_v1(void) {
#ifdef ENTRY_NULL
  (void)desc;
  return NULL; /* "this plugin cannot run here" */
#else
  return &desc;
#endif
}
