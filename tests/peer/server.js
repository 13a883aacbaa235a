// Test peer for coretraffic's Coreflow connector: a real TypedSocket server (the Coreflow side of the
// wire), built from the npm packages Coreflow uses, driven by the Python tests over stdin/stdout.
//
// Usage: node server.js [--host ADDRESS] [--port N] [--ping-interval-ms N] [--ping-timeout-ms N]
//   Listens on ADDRESS (default 127.0.0.1; 0.0.0.0 in a container, as Coreflow's stand-in) port N (0 = free). stdout carries only newline-delimited JSON:
//   first {"event":"listening","port":N}, then one {"id":…,"result":{…}} (or {"id":…,"error":"…"}) per
//   command read from stdin as {"id":…,"cmd":…}. Commands:
//     call    {method, request, waitMs, timeoutMs}: fire a typed request at the connection tagged
//             "coretraffic" (waiting up to waitMs for one) -> {outcome:"response",response} |
//             {outcome:"typedError",text,data} | {outcome:"exception",message} | {outcome:"noTarget"} |
//             {outcome:"timeout"} | {outcome:"disconnected"}
//     status  {untilTagged?, waitMs?}: (first waiting up to waitMs until a connection tagged
//             "coretraffic" exists, or no longer exists, as untilTagged says)
//             -> {connections:[{alias,tags,pongs}], tagged, disconnectReasons}
//     waitPongs {count, waitMs}: wait until the connection tagged "coretraffic" has sent `count` pongs
//             -> {pongs} (what it has when done waiting)
//     answers -> {answers:[{shortId,funcName,method,phase,requestBytes,response,error}]}, every
//             functionResponse received so far, in arrival order
//     stop    polite server stop (smartsocket waits 1 s, then sends 41), replies {stopped:true}, exits
//   End of stdin exits at once.
import http from 'node:http';
import readline from 'node:readline';
import { parseArgs } from 'node:util';
import { TypedRouter } from '@apiglobal/typedrequest';
import { TypedSocket } from '@apiglobal/typedsocket';

const TAG = 'coretraffic';

// The libraries log with console.log; keep stdout for the control protocol.
console.log = console.error;
console.info = console.error;
console.warn = console.error;
console.debug = console.error;

const { values: options } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '0' },
    'ping-interval-ms': { type: 'string' },
    'ping-timeout-ms': { type: 'string' },
  },
});

const reply = (message) => process.stdout.write(`${JSON.stringify(message)}\n`);

// createServer hard-codes port 3000 unless given a server; an object shaped like smartexpress's lets us
// choose the address (loopback) and the port (0 = free).
const httpServer = http.createServer();
await new Promise((resolve, reject) => {
  httpServer.once('error', reject);
  httpServer.listen(Number(options.port), options.host, resolve);
});
const typedsocket = await TypedSocket.createServer(new TypedRouter(), {
  startedPromise: Promise.resolve(),
  httpServer,
});
const smartsocket = typedsocket.socketServerOrClient;

// Engine.IO reads these options for every new connection, so tests can shorten the heartbeat.
if (options['ping-interval-ms']) smartsocket.io.engine.opts.pingInterval = Number(options['ping-interval-ms']);
if (options['ping-timeout-ms']) smartsocket.io.engine.opts.pingTimeout = Number(options['ping-timeout-ms']);

// Observe what the client sends, before smartsocket's own handlers run (onAny listeners go first), so
// a reply that would crash the server is still on record.
const answers = [];
const pongsByEngineSocket = new WeakMap();
const pongListeners = new Set();
const disconnectReasons = []; // socket.io's words: "client namespace disconnect" means the client sent 41
smartsocket.io.on('connection', (socket) => {
  pongsByEngineSocket.set(socket.conn, 0);
  socket.conn.on('packet', (packet) => {
    if (packet.type !== 'pong') return;
    pongsByEngineSocket.set(socket.conn, pongsByEngineSocket.get(socket.conn) + 1);
    for (const listener of pongListeners) listener();
  });
  socket.on('disconnect', (reason) => disconnectReasons.push(reason));
  socket.onAny((event, arg) => {
    if (event !== 'functionResponse') return;
    const envelope = arg?.funcCallData?.funcDataArg;
    answers.push({
      shortId: arg?.shortId,
      funcName: arg?.funcCallData?.funcName,
      method: envelope?.method,
      phase: envelope?.correlation?.phase,
      requestBytes: JSON.stringify(envelope?.request ?? null).length,
      response: envelope?.response ?? null,
      error: envelope?.error ?? null,
    });
  });
});

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitForTagged(waitMs, tagged = true) {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const connection = await typedsocket.findTargetConnectionByTag(TAG);
    if (!!connection === tagged || Date.now() >= deadline) return connection;
    await delay(10);
  }
}

// smartsocket has no request timeout and never settles a request whose connection dropped, so the peer
// races the call against both.
function whenDisconnected(connection) {
  return new Promise((resolve) => {
    if (connection.eventStatus === 'disconnected') resolve({ outcome: 'disconnected' });
    connection.eventSubject.subscribe((status) => {
      if (status === 'disconnected') resolve({ outcome: 'disconnected' });
    });
  });
}

async function call({ method, request, waitMs = 5000, timeoutMs = 30000 }) {
  const connection = await waitForTagged(waitMs);
  if (!connection) return { outcome: 'noTarget' };
  const fired = typedsocket
    .createTypedRequest(method, connection)
    .fire(request)
    .then(
      (response) => ({ outcome: 'response', response }),
      (error) =>
        // TypedResponseError is not an Error subclass; it carries errorText/errorData.
        typeof error?.errorText === 'string'
          ? { outcome: 'typedError', text: error.errorText, data: error.errorData }
          : { outcome: 'exception', message: String(error?.message ?? error) },
    );
  let timer;
  const timedOut = new Promise((resolve) => {
    timer = setTimeout(() => resolve({ outcome: 'timeout' }), timeoutMs);
  });
  try {
    return await Promise.race([fired, timedOut, whenDisconnected(connection)]);
  } finally {
    clearTimeout(timer);
  }
}

async function status({ untilTagged, waitMs = 5000 }) {
  if (typeof untilTagged === 'boolean') await waitForTagged(waitMs, untilTagged);
  const connections = smartsocket.socketConnections.getArray().map((connection) => ({
    alias: connection.alias ?? null,
    tags: Object.keys(connection.tagStore),
    pongs: pongsByEngineSocket.get(connection.socket.conn) ?? 0,
  }));
  return {
    connections,
    tagged: connections.some((connection) => connection.tags.includes(TAG)),
    disconnectReasons,
  };
}

async function taggedPongs() {
  const connection = await typedsocket.findTargetConnectionByTag(TAG);
  return connection ? pongsByEngineSocket.get(connection.socket.conn) ?? 0 : 0;
}

async function waitPongs({ count, waitMs = 5000 }) {
  let listener;
  let timer;
  const enough = new Promise((resolve) => {
    listener = async () => {
      if ((await taggedPongs()) >= count) resolve();
    };
    pongListeners.add(listener);
    timer = setTimeout(resolve, waitMs);
  });
  try {
    await listener();
    await enough;
  } finally {
    pongListeners.delete(listener);
    clearTimeout(timer);
  }
  return { pongs: await taggedPongs() };
}

async function stop() {
  await typedsocket.stop();
  return { stopped: true };
}

const commands = { call, status, waitPongs, answers: async () => ({ answers }), stop };

const input = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
input.on('line', async (line) => {
  let message;
  try {
    message = JSON.parse(line);
  } catch {
    reply({ id: null, error: 'command is not JSON' });
    return;
  }
  const command = commands[message.cmd];
  if (!command) {
    reply({ id: message.id, error: `unknown command ${message.cmd}` });
    return;
  }
  try {
    reply({ id: message.id, result: await command(message) });
  } catch (error) {
    reply({ id: message.id, error: String(error?.stack ?? error) });
  }
  if (message.cmd === 'stop') process.exit(0);
});
input.on('close', () => process.exit(0));

reply({ event: 'listening', port: httpServer.address().port });
