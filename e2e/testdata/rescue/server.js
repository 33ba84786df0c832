// A stock Node.js http server on hotcluster's socket, with nothing of its
// own for the drain: server.close() at SIGTERM, which (Node 19 and later)
// closes the idle keep-alive connections at once, racing the requests its
// clients are sending on them.
'use strict';
const http = require('node:http');
const server = http.createServer((req, res) => {
  res.end(`hello pid=${process.pid} gen=${process.env.HOTCLUSTER_GENERATION}\n`);
});
server.listen({ fd: 3 });
process.on('SIGTERM', () => server.close(() => process.exit(0)));
