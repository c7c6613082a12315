/*
** client_gate -- ABI 1.1: answers 429 with Retry-After to one blocked client
** address (setting "blocked"), and stamps every other request with the client
** it saw (x-native-client: ip:port). requires_minor = 1: a 1.0 host refuses it.
*/

#include <stdio.h>
#include <string.h>

#include "covet_plugin.h"

static const covet_host_api *host_api;
static char blocked[64];
static size_t blocked_len;

static int cg_init(const covet_host_api *host, covet_plugin_host_ptr plugin, void **instance) {
  covet_host_str value;
  host_api = host;
  *instance = NULL;
  if (!COVET_HOST_HAS(host, get_client) || !COVET_HOST_HAS(host, respond_header)) {
    host->error(plugin, COVET_STR("client_gate needs ABI 1.1 (get_client, respond_header)"));
    return COVET_ERROR;
  }
  blocked_len = 0;
  if (host->config_get(plugin, COVET_STR("blocked"), &value) == COVET_OK && value.len < sizeof blocked) {
    memcpy(blocked, value.ptr, value.len);
    blocked_len = value.len;
  }
  return COVET_OK;
}

static int cg_on_request(void *instance, covet_request_host_ptr req, const covet_request_view *view) {
  covet_host_str ip;
  int port = 0;
  char stamp[96];
  int n;
  covet_plugin_str value;
  (void)instance;
  (void)view;
  if (host_api->get_client(req, &ip, &port) != COVET_OK) {
    return host_api->set_header(req, COVET_STR("x-native-client"), COVET_STR("none")) == COVET_OK ? COVET_OK
                                                                                               : COVET_ERROR;
  }
  if (blocked_len && ip.len == blocked_len && memcmp(ip.ptr, blocked, blocked_len) == 0) {
    /* respond_header before respond() is a phase error: check the host says so */
    if (host_api->respond_header(req, COVET_STR("retry-after"), COVET_STR("30")) != COVET_E_PHASE) return COVET_ERROR;
    host_api->respond(req, 429, COVET_STR("text/plain"), COVET_STR("slow down"));
    host_api->respond_header(req, COVET_STR("retry-after"), COVET_STR("30"));
    return COVET_RESPOND;
  }
  n = snprintf(stamp, sizeof stamp, "%.*s:%d", (int)ip.len, ip.ptr, port);
  value.ptr = stamp;
  value.len = (size_t)(n > 0 ? n : 0);
  return host_api->set_header(req, COVET_STR("x-native-client"), value) == COVET_OK ? COVET_OK : COVET_ERROR;
}

static const covet_plugin_descriptor descriptor = {
  COVET_DESCRIPTOR_HEADER(1),
  .flags = COVET_FLAG_NONE,
  .name = "client_gate",
  .version = "1.0.0",
  .priority = 20,
  .init = cg_init,
  .on_request = cg_on_request,
};

COVET_EXPORT const covet_plugin_descriptor *covet_plugin_entry_v1(void) {
  return &descriptor;
}
