// Express on hotcluster's socket: listen({fd: 3}) and process.send('ready')
// (hotcluster gives node a message channel, as cluster does). On SIGTERM:
// stop accepting, answer with "Connection: close", close idle keep-alive
// connections only after 2s, exit once every connection has ended.
'use strict';
const net = require('node:net');
const express = require('express');

const app = express();
let stopping = false;
app.get('/', (req, res) => {
  if (stopping) res.set('Connection', 'close');
  res.type('text/plain').send(`hello pid=${process.pid} gen=${process.env.HOTCLUSTER_GENERATION} worker=${process.env.HOTCLUSTER_WORKER_ID}\n`);
});
const server = app.listen({ fd: 3 }, () => process.send('ready'));
process.on('SIGTERM', () => {
  stopping = true;
  // net.Server's close: http.Server's (Node 19 and later) also closes idle
  // keep-alive connections at once, racing a request a client is sending.
  net.Server.prototype.close.call(server, () => process.exit(0));
  setTimeout(() => server.closeIdleConnections(), 2000).unref();
});
