// Development server: serves web/dist/ as the node does (index.html for / and /invite/…) and passes
// every other request (gRPC-web calls, /media/…) through to a running node, so the client can be
// rebuilt and reloaded without rebuilding the node that embeds it.
//
//   node dev/serve.mjs http://127.0.0.1:7400 [PORT]     # prints the address to open
//
// Listens on 127.0.0.1 only; stops when the node stops answering for 10 s, or after --max-secs.

import http from "node:http";
import { existsSync, readFileSync } from "node:fs";
import { extname, join, normalize } from "node:path";

const [target, portArg] = process.argv.slice(2).filter((a) => !a.startsWith("--"));
if (!target) {
  console.error("usage: node dev/serve.mjs NODE_URL [PORT]");
  process.exit(2);
}
const maxSecs = Number((process.argv.find((a) => a.startsWith("--max-secs=")) ?? "--max-secs=3600").split("=")[1]);
const node = new URL(target);
const dist = new URL("../dist/", import.meta.url).pathname;
const types = { ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml" };

function serveFile(path, res) {
  const rel = path === "/" || path.startsWith("/invite/") ? "index.html" : normalize(path).replace(/^\/+/, "");
  const file = join(dist, rel);
  if (!file.startsWith(dist) || !existsSync(file)) return false;
  res.writeHead(200, { "content-type": types[extname(file)] ?? "application/octet-stream", "cache-control": "no-store" });
  res.end(readFileSync(file));
  return true;
}

const server = http.createServer((req, res) => {
  const path = new URL(req.url, "http://dev").pathname;
  if ((req.method === "GET" || req.method === "HEAD") && !path.startsWith("/media/") && serveFile(path, res)) return;
  const up = http.request(
    { host: node.hostname, port: node.port, method: req.method, path: req.url, headers: { ...req.headers, host: node.host } },
    (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    },
  );
  up.on("error", (e) => {
    res.writeHead(502);
    res.end(String(e));
  });
  req.pipe(up);
});
server.listen(Number(portArg ?? 0), "127.0.0.1", () => console.log(`http://127.0.0.1:${server.address().port}`));
setTimeout(() => process.exit(0), maxSecs * 1000).unref();
