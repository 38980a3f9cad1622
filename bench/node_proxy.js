// P4's floor for any proxy written on Node: the same proxy library (http-proxy-3) and
// keep-alive agent configurable-http-proxy 5 uses, terminating the same TLS, with one fixed
// target and nothing else (no routing table, no activity tracking, no logging).
//     node node_proxy.js CERT KEY TARGET PORT
"use strict";
const fs = require("fs");
const http = require("http");
const https = require("https");
const httpProxy = require("http-proxy-3");

const [cert, key, target, port] = process.argv.slice(2);
const proxy = httpProxy.createProxyServer({
  agent: new http.Agent({ keepAlive: true }),
  xfwd: true,
});
proxy.on("error", (error, req, res) => {
  res.writeHead(502);
  res.end(String(error));
});
https
  .createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) }, (req, res) =>
    proxy.web(req, res, { target: target }))
  .listen(Number(port), "0.0.0.0");
