// A koa app as its documentation writes it.
const Koa = require('koa');

const app = new Koa();
app.use(async (ctx) => {
  if (ctx.path === '/slow') await new Promise((resolve) => setTimeout(resolve, Number(ctx.query.ms) || 0));
  ctx.body = `hello from koa, pid ${process.pid}\n`;
});

app.listen(5557);
console.log('listening on port 5557');
