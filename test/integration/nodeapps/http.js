// A server on Node's own http module.
const http = require('http');

http.createServer((req, res) => {
  const ms = Number(new URL(req.url, 'http://x').searchParams.get('ms')) || 0;
  setTimeout(() => res.end(`hello from http, pid ${process.pid}\n`), ms);
}).listen(5558, '0.0.0.0');
