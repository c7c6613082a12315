/* The header-rewriting plugin of the native-vs-Python comparison: on the request, set
   x-native: 1; on the response, set x-powered-by and remove server. */
#include "covet_plugin.h"

typedef struct { const covet_host_api *host; } rewrite_t;
static rewrite_t state;

static int init(const covet_host_api *host, covet_plugin_host_ptr plugin, void **instance) {
  (void)plugin;
  state.host = host;
  *instance = &state;
  return COVET_OK;
}

static int on_request(void *instance, covet_request_host_ptr req, const covet_request_view *view) {
  (void)view;
  rewrite_t *s = instance;
  return s->host->set_header(req, COVET_STR("x-native"), COVET_STR("1"));
}

static int on_response(void *instance, covet_request_host_ptr req, const covet_request_view *view) {
  (void)view;
  rewrite_t *s = instance;
  s->host->set_header(req, COVET_STR("x-powered-by"), COVET_STR("covet-pipe"));
  s->host->remove_header(req, COVET_STR("server"));   /* COVET_E_NOTFOUND is fine */
  return COVET_OK;
}

static const covet_plugin_descriptor descriptor = {
  COVET_DESCRIPTOR_HEADER(0),
  .name = "rewrite_native", .version = "1.0.0", .priority = 100,
  .init = init, .on_request = on_request, .on_response = on_response,
};

COVET_EXPORT const covet_plugin_descriptor *covet_plugin_entry_v1(void) { return &descriptor; }
