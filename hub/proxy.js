#!/usr/bin/env node
// configurable-http-proxy (CHP) 5, with a certificate that can change while it runs
// (--follow-ssl-cert, below). hub/Dockerfile installs CHP with npm into /opt/proxy, and this
// file as /usr/local/bin/configurable-http-proxy, the command JupyterHub starts; every other
// option is CHP's own.
//
// CHP 5 pools its connections to the hub and the user servers itself (Debian's 4.5 did not,
// which is what this file first added); it reads its certificate once, at start, and a
// restart would cut every open connection. CHP 5 is an ES module whose https server comes
// from Node's `https` module, the same object as require("https") here: replacing its
// createServer before CHP is imported is how the server is found, whatever proxy library
// CHP uses inside (http-proxy-3 since 5.0).
"use strict";

const CHP = "/opt/proxy/node_modules/configurable-http-proxy";

// --follow-ssl-cert FILE (ours: taken out before CHP reads its options). With ACME on, the
// hub's ACME service (hubacme.py) replaces FILE, one PEM with the key and the certificate
// chain, when it gets a certificate; the proxy then serves it at once through
// server.setSecureContext, without a restart: TLS connections already open (a user's kernel
// websocket) keep the context they began with, new ones get the new certificate. FILE is
// followed from the start even when it is not there yet (the first certificate), and a file
// that cannot be used (unreadable, key and certificate that do not match) changes nothing.
async function main() {
  const at = process.argv.indexOf("--follow-ssl-cert");
  if (at !== -1) {
    const followed = process.argv[at + 1];
    process.argv.splice(at, 2);
    const { defaultLogger } = await import(`${CHP}/lib/log.js`);
    followCertificate(followed, defaultLogger());
  }
  await import(`${CHP}/bin/configurable-http-proxy`);
}

function followCertificate(file, log) {
  const crypto = require("crypto");
  const fs = require("fs");
  const https = require("https");
  const tls = require("tls");
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

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
