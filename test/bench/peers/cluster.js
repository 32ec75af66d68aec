// Node's cluster module running the benchmark's app in WORKERS processes
// (default 2): how a Node app uses every core without a process manager.
// The primary accepts and hands connections to the workers in turn (the
// default, round-robin scheduling); a worker that dies is replaced at once,
// as pm2 does. On SIGTERM or SIGINT the primary passes the signal on, forks
// no more, and exits when the workers have.
//
//   APP=/path/server.js PORT=18080 WORKERS=2 node cluster.js
'use strict';

const cluster = require('cluster');

if (cluster.isPrimary) {
  const workers = Number(process.env.WORKERS) || 2;
  let stopping = false;
  for (let i = 0; i < workers; i++) cluster.fork();
  cluster.on('exit', () => {
    if (!stopping) cluster.fork();
  });
  for (const sig of ['SIGTERM', 'SIGINT']) {
    process.on(sig, () => {
      stopping = true;
      for (const w of Object.values(cluster.workers)) w.process.kill(sig);
    });
  }
} else {
  require(process.env.APP);
}
