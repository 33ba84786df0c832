// A plain Node.js http server that runs under hotcluster unchanged: it
// serves the listening socket it inherits on fd 3 (systemd's socket
// activation: LISTEN_FDS, LISTEN_PID) or, run by hand, 127.0.0.1:8080 ($PORT). Under
// hotcluster it has a message channel (process.send) and says 'ready' on it,
// as PM2 apps do, so a reload cuts over as soon as the new workers serve.
//
// The inherited socket is non-blocking and its O_NONBLOCK flag is shared with
// the master and every other worker, so nothing here may make it blocking.
// libuv keeps listening sockets non-blocking and closes them with close(2),
// never shutdown(2), so server.listen({fd: 3}) and server.close() are safe.
'use strict';

const http = require('node:http');
const net = require('node:net');

const DRAIN_IDLE_MS = 2000; // wait for idle keep-alive clients to come back
const DRAIN_MAX_MS = 25000; // then give up on running requests

const gen = process.env.HOTCLUSTER_GENERATION || '0';
const worker = process.env.HOTCLUSTER_WORKER_ID || '-1';
const line = `hello pid=${process.pid} gen=${gen} worker=${worker}\n`;

// inheritedFd returns the descriptor of the socket named "web", or of the
// first one, when the sockets are meant for this process; else null.
function inheritedFd() {
  const n = parseInt(process.env.LISTEN_FDS || '', 10);
  const forUs = process.env.LISTEN_PID === String(process.pid);
  const names = (process.env.LISTEN_FDNAMES || '').split(':');
  // Our own subprocesses must not take the sockets for theirs.
  for (const k of ['LISTEN_FDS', 'LISTEN_FDNAMES', 'LISTEN_PID', 'NOTIFY_SOCKET']) {
    delete process.env[k];
  }
  if (!forUs || !(n > 0)) {
    return null;
  }
  const i = names.indexOf('web');
  return 3 + (i >= 0 && i < n ? i : 0);
}

let draining = false;

let requests = 0;

const server = http.createServer((req, res) => {
  requests++;
  if (draining) {
    // Every answer during the drain closes its connection, so clients move
    // to a new one, which another worker accepts.
    res.setHeader('Connection', 'close');
  }
  const url = new URL(req.url, 'http://localhost');
  if (url.pathname === '/slow') {
    const ms = parseInt(url.searchParams.get('ms') || '', 10);
    if (!(ms >= 0 && ms <= 60000)) {
      res.writeHead(400, { 'Content-Type': 'text/plain' });
      res.end('want ms=0…60000\n');
      return;
    }
    setTimeout(() => {
      if (draining) {
        res.setHeader('Connection', 'close');
      }
      res.end(line);
    }, ms);
    return;
  }
  res.end(line);
});

function stop(signal) {
  if (draining) {
    process.exit(1); // a second signal: stop at once
  }
  draining = true;
  process.stderr.write(`node: ${signal}, draining pid=${process.pid}\n`);
  // net.Server's close stops accepting and calls back once every connection
  // ended. http.Server's own close() would also close idle keep-alive
  // connections at once, racing a request their client may be sending.
  net.Server.prototype.close.call(server, () => {
    process.stderr.write(`node: stopped pid=${process.pid}\n`);
    process.exit(0);
  });
  // Idle keep-alive connections close after the answer to their next
  // request; those whose client sends none are closed after a grace.
  setTimeout(() => server.closeIdleConnections(), DRAIN_IDLE_MS).unref();
  setTimeout(() => {
    process.stderr.write(`node: drain timed out pid=${process.pid}\n`);
    server.closeAllConnections();
    process.exit(1);
  }, DRAIN_MAX_MS).unref();
}

process.on('SIGTERM', stop);
process.on('SIGINT', stop);

const fd = inheritedFd();
const port = parseInt(process.env.PORT || '8080', 10); // run by hand
server.listen(fd === null ? { host: '127.0.0.1', port } : { fd }, () => {
  const where = fd === null ? `127.0.0.1:${port}` : `fd ${fd}`;
  process.stderr.write(`node: serving on ${where}, ${line}`);
  // Under hotcluster (as under cluster or PM2) process.send exists: say
  // 'ready' now that we serve, PM2's convention, which hotcluster takes as
  // READY=1. Run by hand there is no channel and nothing to say.
  if (process.send) {
    process.send('ready');
  }
});

// Messages from the master (`hotcluster send`), as under cluster:
//   {"cmd":"stats"}            answers {"stats":{pid, gen, worker, requests}}
//   {"cmd":"tell-all","data":X} asks the master to broadcast {"cmd":"told","data":X}
//                              to every worker of this generation
//   {"cmd":"told","data":X}    is logged
// The answers reach the operator as `message` events (`hotcluster events`).
// A 'message' listener keeps the channel referenced, so stop() exits
// explicitly.
process.on('message', (msg) => {
  switch (msg && msg.cmd) {
    case 'stats':
      process.send({ stats: { pid: process.pid, gen, worker, requests } });
      break;
    case 'tell-all':
      process.send({ cmd: 'hotcluster:broadcast', data: { cmd: 'told', data: msg.data } });
      break;
    case 'told':
      process.stderr.write(`node: told ${JSON.stringify(msg.data)} pid=${process.pid}\n`);
      break;
    default:
      process.stderr.write(`node: message ${JSON.stringify(msg)}\n`);
  }
});
