// An Express app as the cluster-module and pm2 articles write it: nothing
// in it knows about corral.
const express = require('express');

const app = express();
app.get('/', (req, res) => res.send(`hello from express, pid ${process.pid}\n`));
app.get('/slow', (req, res) => {
  setTimeout(() => res.send(`hello from express, pid ${process.pid}\n`), Number(req.query.ms) || 0);
});

// Messages as a cluster worker gets them from its master.
process.on('message', (msg) => {
  process.send(`express pid ${process.pid} got ${JSON.stringify(msg)}`);
});

app.listen(5555, () => console.log('listening on port 5555'));
