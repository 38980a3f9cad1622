#!/usr/bin/env node
// configurable-http-proxy, with HTTP keep-alive towards the hub and the user servers, and
// with a certificate that can change while it runs (--follow-ssl-cert, below).
// hub/Dockerfile installs it as /usr/local/bin/configurable-http-proxy, which comes before
// Debian's /usr/bin one in PATH, so JupyterHub starts this one with its usual options.
//
// Debian's configurable-http-proxy 4.5 proxies without a connection pool, so http-proxy
// asks each backend for `Connection: close` and relays that answer to the browser: every
// request through the proxy then costs a new TCP connection and TLS handshake (bench/, P4).
// Upstream added a keep-alive agent in 4.6; this gives 4.5 the same, and changes nothing
// else: the same program, options and routes.
// CHP reads its certificate once, at start; a restart would cut every open connection.
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

// --follow-ssl-cert FILE (ours: taken out before CHP reads its options). With ACME on, the
// hub's ACME service (hubacme.py) replaces FILE, one PEM with the key and the certificate
// chain, when it gets a certificate; the proxy then serves it at once through
// server.setSecureContext, without a restart: TLS connections already open (a user's kernel
// websocket) keep the context they began with, new ones get the new certificate. FILE is
// followed from the start even when it is not there yet (the first certificate), and a file
// that cannot be used (unreadable, key and certificate that do not match) changes nothing.
const at = process.argv.indexOf("--follow-ssl-cert");
if (at !== -1) {
  const followed = process.argv[at + 1];
  process.argv.splice(at, 2);
  followCertificate(followed);
}

function followCertificate(file) {
  const crypto = require("crypto");
  const fs = require("fs");
  const https = require("https");
  const tls = require("tls");
  const log = require("configurable-http-proxy/lib/log.js").defaultLogger();
  const sslCert = process.argv[process.argv.indexOf("--ssl-cert") + 1];
  const servers = []; // [server, the options it was made with]
  let served = null; // sha256 of the certificate last served from `file`

  function fingerprint(pem) {
    return new crypto.X509Certificate(pem).fingerprint256.replace(/:/g, "").toLowerCase();
  }

  function reload() {
    let pem, sha;
    try {
      pem = fs.readFileSync(file);
      sha = fingerprint(pem);
    } catch (error) {
      if (error.code !== "ENOENT") log.error("tls: %s cannot be used: %s", file, error.message);
      return;
    }
    if (sha === served || servers.length === 0) return;
    try {
      // Only key and certificate change: ciphers, protocols and the rest stay as CHP set them.
      // Each is made (and so checked) before any is used.
      const contexts = servers.map(([, options]) => Object.assign({}, options, { key: pem, cert: pem }));
      contexts.forEach((options) => tls.createSecureContext(options));
      servers.forEach(([server], i) => server.setSecureContext(contexts[i]));
    } catch (error) {
      log.error("tls: %s cannot be served (%s); still serving the certificate before it", file, error.message);
      return;
    }
    served = sha;
    log.info("tls: serving the certificate in %s (sha256 %s)", file, sha);
  }

  // The proxy's HTTPS server is the one made with the certificate CHP read from --ssl-cert;
  // no other server of this deployment serves it (the API server is plain HTTP).
  const createServer = https.createServer;
  https.createServer = function (options, ...rest) {
    const server = createServer.call(this, options, ...rest);
    let started = null;
    try {
      started = sslCert && fs.readFileSync(sslCert);
    } catch (error) {
      started = null;
    }
    if (options && options.cert && started && Buffer.compare(Buffer.from(options.cert), started) === 0) {
      servers.push([server, options]);
      if (sslCert === file) served = fingerprint(started);
      reload(); // issued between the hub's start and now: serve it already
    }
    return server;
  };
  // Polling (stat once a second) follows a file replaced by rename, which a watch on the old
  // inode would miss, and one that does not exist yet.
  fs.watchFile(file, { interval: 1000, persistent: false }, reload);
}

require("configurable-http-proxy/bin/configurable-http-proxy");
