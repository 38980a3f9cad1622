#!/usr/bin/env node
// configurable-http-proxy, with HTTP keep-alive towards the hub and the user servers.
// hub/Dockerfile installs it as /usr/local/bin/configurable-http-proxy, which comes before
// Debian's /usr/bin one in PATH, so JupyterHub starts this one with its usual options.
//
// Debian's configurable-http-proxy 4.5 proxies without a connection pool, so http-proxy
// asks each backend for `Connection: close` and relays that answer to the browser: every
// request through the proxy then costs a new TCP connection and TLS handshake (bench/, P4).
// Upstream added a keep-alive agent in 4.6; this gives 4.5 the same, and changes nothing
// else: the same program, options and routes.
"use strict";

const http = require("http");
const httpProxy = require("http-proxy");

// One pool for every backend; idle sockets are dropped before any backend would drop them
// (Tornado keeps idle connections for an hour), so a reused socket is never a dead one.
const agent = new http.Agent({ keepAlive: true, timeout: 60000 });

const createProxyServer = httpProxy.createProxyServer;
httpProxy.createProxyServer = function (options) {
  return createProxyServer.call(this, Object.assign({ agent: agent }, options));
};

require("configurable-http-proxy/bin/configurable-http-proxy");
