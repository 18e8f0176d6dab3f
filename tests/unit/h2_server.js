// An HTTPS server that speaks only HTTP/2, for test_outbound: node
// h2_server.js CERT KEY. Listens on 127.0.0.1 (a free port), writes the
// port and a newline on stdout, answers every request 200 with the HTTP
// version it saw in the body, and exits when its stdin closes.
'use strict';
const fs = require('fs');
const http2 = require('http2');

const server = http2.createSecureServer({
  cert: fs.readFileSync(process.argv[2]),
  key: fs.readFileSync(process.argv[3]),
  allowHTTP1: false, // a client that does not offer h2 fails its handshake
});
server.on('request', (req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.end('HTTP/' + req.httpVersion);
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(server.address().port + '\n');
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
