// A plain Node.js HTTP server that listens on its own port, as most Node
// apps do (app.listen(PORT)): no fd 3, no readiness message. It closes
// its server on SIGTERM, as a server behind any process manager should.
// The generation in its answers is only for the tests.
const http = require('http');

const server = http.createServer((req, res) => {
  res.end(`hello pid=${process.pid} gen=${process.env.HOTCLUSTER_GENERATION}\n`);
});
server.listen(Number(process.env.PORT));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
