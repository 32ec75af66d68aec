// A fastify app as its documentation writes it.
const fastify = require('fastify')({ logger: false });

fastify.get('/', async () => `hello from fastify, pid ${process.pid}\n`);
fastify.get('/slow', async (request) => {
  await new Promise((resolve) => setTimeout(resolve, Number(request.query.ms) || 0));
  return `hello from fastify, pid ${process.pid}\n`;
});

fastify.listen({ port: 5556 }, (err, address) => {
  if (err) {
    console.error(err);
    process.exit(1);
  }
  console.log(`listening on ${address}`);
});
