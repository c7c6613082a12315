/*
** covet_plugin.h -- the C ABI of covet-pipe native plugins.
**
** Who includes it: a plugin written in C (or any language with a C ABI) that
** covet-pipe loads as a shared library. A Cython plugin cimports
** covet_pipe/covet_plugin.pxd, which mirrors this file.
**
** Trust model: a native plugin runs inside the server process, with its
** privileges and its memory. It is as trusted as the server's own code.
**
** Threading model: every hook is called on the thread that runs the server's
** event loop, with the Python GIL held, one call at a time. A hook must not
** block (no I/O, no sleeping): it runs on the path of every request.
**
** Three kinds of names, by who implements them:
**   covet_plugin_*   the plugin implements (the entry symbol, the descriptor)
**   covet_host_*     the host implements (the function table, the handles)
**   covet_*          shared types and result codes
**
** Rules both sides keep (see native_abi/README.md for why):
**   - The entry symbol is fixed and carries the ABI major: covet_plugin_entry_v1.
**   - covet_plugin_descriptor and covet_host_api start with their own size and
**     only ever grow at the end; test COVET_HOST_HAS() before calling a host
**     function added after 1.0.
**   - Neither side writes into a struct the other side allocated.
**   - Strings are a pointer and a length, never NUL-terminated by contract
**     (the descriptor's static strings excepted).
**   - Every hook is optional: leave its pointer NULL.
*/

#ifndef COVET_PLUGIN_H
#define COVET_PLUGIN_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ==== Versions ========================================================== */

#define COVET_ABI_MAJOR 1
#define COVET_ABI_MINOR 1
/* major in the high 16 bits, minor in the low 16 bits */
#define COVET_ABI_VERSION ((uint32_t)((COVET_ABI_MAJOR << 16) | COVET_ABI_MINOR))
#define COVET_ABI_VERSION_MAJOR(v) ((uint32_t)(v) >> 16)
#define COVET_ABI_VERSION_MINOR(v) ((uint32_t)(v) & 0xFFFFu)

/* ==== Result codes ====================================================== */

/* A hook returns one of these. */
#define COVET_OK 0        /* go on to the next plugin (request phase) / done (response phase) */
#define COVET_RESPOND 1   /* request phase: answer now with what respond() set; skip the app */
#define COVET_ERROR (-1)  /* failure: the plugin's failure policy applies; say why with error() */

/* A host function returns COVET_OK, or one of these (never COVET_RESPOND). */
#define COVET_E_INVALID (-2)  /* a bad argument: an empty name, a status out of range ... */
#define COVET_E_PHASE (-3)    /* not allowed in this phase (set_status in the request phase ...) */
#define COVET_E_NOTFOUND (-4) /* no such header or config key */

/* Log levels, as Python's logging module numbers them. */
#define COVET_LOG_DEBUG 10
#define COVET_LOG_INFO 20
#define COVET_LOG_WARNING 30
#define COVET_LOG_ERROR 40

/* Descriptor flags. */
#define COVET_FLAG_NONE 0u
#define COVET_FLAG_FAIL_OPEN 1u  /* on COVET_ERROR skip this plugin instead of answering 500 */

/* ==== Strings =========================================================== */

/* Bytes owned by the host.
** OWNERSHIP: the host owns them; they stay valid until the hook (or host
** function) that gave them to you returns. Copy what you need to keep. */
typedef struct covet_host_str {
  const char *ptr;
  size_t len;
} covet_host_str;

/* Bytes owned by the plugin, handed to a host function.
** OWNERSHIP: the plugin owns them; the host copies them before the host
** function returns, so stack buffers are fine. */
typedef struct covet_plugin_str {
  const char *ptr;
  size_t len;
} covet_plugin_str;

/* Make a covet_plugin_str from a string literal or a NUL-terminated string. */
#define COVET_STR(s) ((covet_plugin_str){(s), sizeof(s) - 1})
#define COVET_CSTR(s) ((covet_plugin_str){(s), strlen(s)})

/* ==== Handles =========================================================== */

/* One request, as the host sees it. Pass it back to host functions.
** OWNERSHIP: the host's; valid for the duration of the hook call only. */
typedef struct covet_request_host *covet_request_host_ptr;

/* The host's record of one loaded plugin: its config, its log, its errors.
** OWNERSHIP: the host's; valid from init() until shutdown() returns. Keep it
** in your instance to report errors and log from hooks. */
typedef struct covet_plugin_host *covet_plugin_host_ptr;

/* ==== Views ============================================================= */

/* One header. Names are lower case in the request phase (as ASGI gives them). */
typedef struct covet_header {
  covet_host_str name;
  covet_host_str value;
} covet_header;

/* What a hook sees of the request (request phase) or response (response phase).
** OWNERSHIP: the host's, read-only, valid until the hook returns. It reflects
** edits made by earlier plugins, not edits made during this hook (read them
** back with get_header). */
typedef struct covet_request_view {
  uint32_t struct_size;        /* sizeof(covet_request_view) in the host */
  int32_t status;              /* response phase: the status; request phase: 0 */
  covet_host_str method;       /* "GET", ... */
  covet_host_str path;         /* route path: decoded, less root_path ("/a/b"; docs/security.md) */
  covet_host_str query;        /* raw query string, without '?' */
  const covet_header *headers; /* request headers, or response headers in the response phase */
  size_t n_headers;
  covet_host_str protocol;     /* "http", "websocket", ... */
} covet_request_view;

/* ==== The host function table =========================================== */

/* Host functions, passed to init(). Grow at the END only; bump COVET_ABI_MINOR.
** OWNERSHIP: the host's; valid until shutdown() returns. */
typedef struct covet_host_api {
  uint32_t struct_size; /* sizeof(covet_host_api) in the host that filled it */
  uint32_t abi_version; /* COVET_ABI_VERSION of the host */

  /* get_header: the first value of header `name` (request headers in the
  ** request phase, response headers in the response phase) into *out.
  ** @return COVET_OK, or COVET_E_NOTFOUND (and *out is {NULL, 0}). */
  int (*get_header)(covet_request_host_ptr req, covet_plugin_str name, covet_host_str *out);

  /* set_header: replace every header `name` with one of `value`.
  ** add_header: append a header, keeping others of the same name.
  ** remove_header: remove every header `name`; COVET_E_NOTFOUND if none.
  ** In the request phase they edit what the app sees; in the response phase,
  ** what the client gets. @return COVET_OK or a COVET_E_* code. */
  int (*set_header)(covet_request_host_ptr req, covet_plugin_str name, covet_plugin_str value);
  int (*add_header)(covet_request_host_ptr req, covet_plugin_str name, covet_plugin_str value);
  int (*remove_header)(covet_request_host_ptr req, covet_plugin_str name);

  /* set_status: response phase only. @return COVET_OK, COVET_E_PHASE or COVET_E_INVALID. */
  int (*set_status)(covet_request_host_ptr req, int status);

  /* respond: request phase only; then return COVET_RESPOND from the hook.
  ** `content_type` may be empty. The body is copied and must be short (it is
  ** sent in one piece). @return COVET_OK, COVET_E_PHASE or COVET_E_INVALID. */
  int (*respond)(covet_request_host_ptr req, int status, covet_plugin_str content_type,
                 covet_plugin_str body);

  /* error: say why the hook (or init) is about to return COVET_ERROR. The
  ** host logs it under the plugin's name; the client never sees it. */
  void (*error)(covet_plugin_host_ptr plugin, covet_plugin_str message);

  /* log: a line in the server's log, under the plugin's name. */
  void (*log)(covet_plugin_host_ptr plugin, int level, covet_plugin_str message);

  /* config_get: the plugin's setting `key` (from PluginConfig.plugin_settings
  ** or the plugin's manifest), as text, into *out (valid until shutdown()).
  ** @return COVET_OK or COVET_E_NOTFOUND. */
  int (*config_get)(covet_plugin_host_ptr plugin, covet_plugin_str key, covet_host_str *out);

  /* request_data / set_request_data: one pointer per plugin per request, for
  ** state shared by this plugin's hooks of one request. Free what it points to
  ** in on_request_done, which always runs. */
  void *(*request_data)(covet_request_host_ptr req);
  void (*set_request_data)(covet_request_host_ptr req, void *data);

  /* ---- ABI 1.1 (test with COVET_HOST_HAS before calling; set requires_minor = 1 to need them) */

  /* get_client: the client's address (IP text such as "203.0.113.7" or "::1") into
  ** *host and its port into *port: the socket peer, or the real client a trusted
  ** PROXY layer reported. @return COVET_OK, or COVET_E_NOTFOUND (no address: a unix
  ** socket, a test call) with *host = {NULL, 0} and *port = 0. */
  int (*get_client)(covet_request_host_ptr req, covet_host_str *host, int *port);

  /* respond_header: request phase, after respond(): add a header to that answer
  ** (WWW-Authenticate, Retry-After ...). @return COVET_OK, COVET_E_PHASE (no
  ** respond() yet, or the response phase) or COVET_E_INVALID (an empty name). */
  int (*respond_header)(covet_request_host_ptr req, covet_plugin_str name, covet_plugin_str value);

  /* ABI 1.2 and later: add new host functions below this line. */
} covet_host_api;

/* Whether the host's table has function `fn` (it may be an older host). */
#define COVET_HOST_HAS(api, fn) \
  ((api)->struct_size >= offsetof(covet_host_api, fn) + sizeof((api)->fn) && (api)->fn != NULL)

/* ==== Hooks the plugin implements ======================================= */

/* init: called once, before any hook. Store what you need in *instance.
** @param host   the host function table (valid until shutdown returns)
** @param plugin the host's handle for this plugin (for error, log, config_get)
** @param instance out: your per-plugin state, handed to every other hook
** @return COVET_OK, or COVET_ERROR after host->error(plugin, ...): the plugin
**         is then marked failed and never called again. */
typedef int (*covet_plugin_init_fn)(const covet_host_api *host, covet_plugin_host_ptr plugin,
                                    void **instance);

/* shutdown: called once, after the last hook returned. Free your instance. */
typedef void (*covet_plugin_shutdown_fn)(void *instance);

/* on_request: request phase, in (priority, name) order.
** @return COVET_OK to go on, COVET_RESPOND after host->respond(), or COVET_ERROR. */
typedef int (*covet_plugin_request_fn)(void *instance, covet_request_host_ptr req,
                                       const covet_request_view *view);

/* on_response: response phase, in reverse order, for plugins whose on_request ran.
** @return COVET_OK, or COVET_ERROR. */
typedef int (*covet_plugin_response_fn)(void *instance, covet_request_host_ptr req,
                                        const covet_request_view *view);

/* on_request_done: always called once per request for a plugin whose on_request
** ran, whatever happened after it (answered, failed, client gone). Free your
** request_data here. It cannot fail. */
typedef void (*covet_plugin_done_fn)(void *instance, covet_request_host_ptr req);

/* ==== The descriptor ==================================================== */

/* What the entry symbol returns: the plugin's declaration.
** Grow at the END only; bump COVET_ABI_MINOR.
** OWNERSHIP: the plugin's, static, read-only; must stay valid while the
** library is loaded. The host never writes into it. */
typedef struct covet_plugin_descriptor {
  uint32_t abi_version;   /* COVET_ABI_VERSION the plugin was built with */
  uint32_t struct_size;   /* sizeof(covet_plugin_descriptor) the plugin was built with */
  uint32_t requires_minor; /* the oldest host ABI minor that has everything this plugin calls */
  uint32_t flags;         /* COVET_FLAG_* */
  const char *name;       /* NUL-terminated: letters, digits, _ - . */
  const char *version;    /* NUL-terminated PEP 440 version: "1.2.0" */
  int32_t priority;       /* lower runs first; ties broken by name */
  int32_t reserved;       /* 0 */
  const char *const *dependencies; /* NULL-terminated list of "name>=1,<2", or NULL */
  const char *const *protocols;    /* NULL-terminated list, or NULL for {"http"} */
  covet_plugin_init_fn init;
  covet_plugin_shutdown_fn shutdown;
  covet_plugin_request_fn on_request;
  covet_plugin_response_fn on_response;
  covet_plugin_done_fn on_request_done;
  /* ABI 1.1 and later: add new fields below this line. */
} covet_plugin_descriptor;

/* ==== The entry symbol ================================================== */

/* The one symbol a C plugin exports. It returns the plugin's static descriptor,
** or NULL if the plugin cannot run here (the host then refuses to load it). */
#define COVET_PLUGIN_ENTRY covet_plugin_entry_v1
/* A Cython (CPython extension) plugin is imported, not dlopened: it exports its
** descriptor as a module attribute __covet_plugin_entry_v1__, a PyCapsule of this name. */
#define COVET_PLUGIN_CAPSULE "covet_plugin_entry_v1"
typedef const covet_plugin_descriptor *(*covet_plugin_entry_fn)(void);

#if defined(__GNUC__)
#define COVET_EXPORT __attribute__((visibility("default")))
#else
#define COVET_EXPORT
#endif

/* The prototype gives the entry C linkage in C++ plugins and checks its signature in C. */
COVET_EXPORT const covet_plugin_descriptor *covet_plugin_entry_v1(void);

/* ==== Helper macros ===================================================== */

/* Start a descriptor with the fields the header fills for you:
**   static const covet_plugin_descriptor desc = {
**     COVET_DESCRIPTOR_HEADER(0),
**     .name = "api_key", .version = "1.0.0", .priority = 100,
**     .on_request = on_request,
**   };
**   COVET_EXPORT const covet_plugin_descriptor *covet_plugin_entry_v1(void) { return &desc; }
*/
#define COVET_DESCRIPTOR_HEADER(required_minor)                                          \
  .abi_version = COVET_ABI_VERSION, .struct_size = sizeof(covet_plugin_descriptor),     \
  .requires_minor = (required_minor)

#ifdef __cplusplus
}
#endif

#endif /* COVET_PLUGIN_H */

/*
** covet-pipe is MIT licensed; this header may be copied into plugins under any licence.
*/
