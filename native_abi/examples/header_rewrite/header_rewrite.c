/*
** header_rewrite -- a covet-pipe native plugin that edits headers both ways.
**
** Request phase: sets `x-native: 1`, so the app can tell the request came
** through a native plugin. Response phase: sets `x-powered-by` and removes
** `server`, so clients do not learn what serves them.
**
** Build:  covet-pipe build header_rewrite.c      (-> header_rewrite.so)
*/

#include <stdlib.h>

#include "covet_plugin.h"

/* Per-plugin state. The host table and handle are the host's and stay valid
** until shutdown() returns, so keeping the pointers (not copies) is fine. */
typedef struct header_rewrite {
  const covet_host_api *host;
  covet_plugin_host_ptr plugin;
} header_rewrite;

static int hr_init(const covet_host_api *host, covet_plugin_host_ptr plugin, void **instance) {
  header_rewrite *self = malloc(sizeof *self);
  if (self == NULL) {
    host->error(plugin, COVET_STR("header_rewrite: out of memory"));
    return COVET_ERROR;
  }
  self->host = host;
  self->plugin = plugin;
  *instance = self;
  return COVET_OK;
}

static void hr_shutdown(void *instance) {
  free(instance);
}

static int hr_on_request(void *instance, covet_request_host_ptr req, const covet_request_view *view) {
  header_rewrite *self = instance;
  (void)view; /* headers are edited through the host, never through the view */
  /* set, not add: a client-sent x-native must not reach the app beside ours */
  if (self->host->set_header(req, COVET_STR("x-native"), COVET_STR("1")) != COVET_OK) {
    self->host->error(self->plugin, COVET_STR("header_rewrite: could not set x-native"));
    return COVET_ERROR;
  }
  return COVET_OK;
}

static int hr_on_response(void *instance, covet_request_host_ptr req, const covet_request_view *view) {
  header_rewrite *self = instance;
  (void)view;
  if (self->host->set_header(req, COVET_STR("x-powered-by"), COVET_STR("covet-pipe-native")) != COVET_OK) {
    self->host->error(self->plugin, COVET_STR("header_rewrite: could not set x-powered-by"));
    return COVET_ERROR;
  }
  /* COVET_E_NOTFOUND only means the app sent no server header: ignored on purpose */
  (void)self->host->remove_header(req, COVET_STR("server"));
  return COVET_OK;
}

/* Static: the host reads it for as long as the library is loaded. */
static const covet_plugin_descriptor descriptor = {
  COVET_DESCRIPTOR_HEADER(0),
  .flags = COVET_FLAG_NONE,
  .name = "header_rewrite",
  .version = "1.0.0",
  .priority = 300,
  .init = hr_init,
  .shutdown = hr_shutdown,
  .on_request = hr_on_request,
  .on_response = hr_on_response,
};

COVET_EXPORT const covet_plugin_descriptor *covet_plugin_entry_v1(void) {
  return &descriptor;
}
