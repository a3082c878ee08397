/* http.h: the HTTP front end of vdminid on libmicrohttpd (its own thread pool, never a thread
 * per connection): routing, the OpenAI-compatible video API, SSE, /metrics, health and static
 * files from the web directory. */
#ifndef VD_HTTP_H
#define VD_HTTP_H

#include <stddef.h>

#include "server.h"

typedef struct vd_http vd_http;

/* Listens on srv->config.listen. NULL with a message when the address cannot be bound. */
vd_http *vd_http_start(vd_server *srv, char *err, size_t errlen);
/* The port actually bound (useful with port 0). */
int vd_http_port(const vd_http *h);
/* Stops accepting new connections; requests in flight finish. */
void vd_http_quiesce(vd_http *h);
void vd_http_stop(vd_http *h);

#endif
