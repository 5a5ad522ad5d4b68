'use strict';
// gRPC client of the sidecar's end-to-end tests (GrpcNodeClientTests): runs every call kind of ../echo.proto with
// @grpc/grpc-js against the address on argv and prints one JSON object, a key per case: what came back, or
// { "error": ... } when the case failed. Exit code 0 when it could run at all (the test judges the results),
// 2 for a usage or installation problem (node_modules missing: run `npm ci` in this folder).
//
//   node client.js 127.0.0.1:50051

const path = require('path');
const crypto = require('crypto');

let grpc;
let protoLoader;
try {
  grpc = require('@grpc/grpc-js');
  protoLoader = require('@grpc/proto-loader');
} catch (e) {
  process.stderr.write(`client.js: @grpc/grpc-js or @grpc/proto-loader is not installed (run 'npm ci' in ${__dirname}): ${e.message}\n`);
  process.exit(2);
}

const target = process.argv[2];
if (!target) {
  process.stderr.write('usage: node client.js HOST:PORT\n');
  process.exit(2);
}

const MAX_MESSAGE = 16 * 1024 * 1024;
// Every call has a deadline, so the script ends even if the proxy loses a stream.
const CALL_SECONDS = 20;
const NON_ASCII = 'nicht gefunden: Größe 100% – ✓ 日本';

const definition = protoLoader.loadSync(path.join(__dirname, '..', 'echo.proto'), { keepCase: true, defaults: true });
const echo = grpc.loadPackageDefinition(definition).proxy.tests.echo;
const client = new echo.Echo(target, grpc.credentials.createInsecure(), {
  'grpc.max_receive_message_length': MAX_MESSAGE,
  'grpc.max_send_message_length': MAX_MESSAGE,
});

function deadline(ms = CALL_SECONDS * 1000) {
  return new Date(Date.now() + ms);
}

function describe(err) {
  return { error: err.message, code: err.code, details: err.details };
}

function unary() {
  return new Promise((resolve) => {
    const metadata = new grpc.Metadata();
    metadata.set('x-tenant', 'acme');
    const result = {};
    const call = client.Unary(
      { payload: Buffer.from('hello'), text: 'grüße ✓', response_headers: { 'x-head': 'early' }, response_trailers: { 'x-tail': 'late' } },
      metadata,
      { deadline: deadline() },
      (err, reply) => {
        if (err) {
          resolve(describe(err));
          return;
        }
        result.payload = reply.payload.toString('utf8');
        result.text = reply.text;
        result.tenant = reply.request_headers['x-tenant'] ?? null;
      });
    call.on('metadata', (m) => { result.header = m.get('x-head')[0] ?? null; });
    call.on('status', (s) => {
      result.code = s.code;
      result.trailer = s.metadata.get('x-tail')[0] ?? null;
      // 'status' comes after the callback has run.
      setImmediate(() => resolve(result));
    });
  });
}

function serverStream() {
  return new Promise((resolve) => {
    const indexes = [];
    const call = client.ServerStream({ payload: Buffer.from('s'), count: 100 }, { deadline: deadline() });
    call.on('data', (reply) => indexes.push(reply.index));
    call.on('error', (err) => resolve({ ...describe(err), count: indexes.length }));
    call.on('status', (s) => {
      if (s.code === grpc.status.OK) {
        resolve({ count: indexes.length, inOrder: indexes.every((v, i) => v === i), code: s.code });
      }
    });
  });
}

function clientStream() {
  return new Promise((resolve) => {
    let expected = '';
    const call = client.ClientStream({ deadline: deadline() }, (err, reply) => {
      if (err) {
        resolve(describe(err));
        return;
      }
      resolve({ received: reply.received, payloadMatches: reply.payload.toString('utf8') === expected });
    });
    for (let i = 0; i < 50; i++) {
      const piece = `[${i}]`;
      expected += piece;
      call.write({ payload: Buffer.from(piece) });
    }
    call.end();
  });
}

function bidi() {
  // Ping-pong: the next request is written only when the previous reply has arrived.
  return new Promise((resolve) => {
    const rounds = 20;
    const replies = [];
    const call = client.Bidi({ deadline: deadline() });
    call.on('data', (reply) => {
      replies.push(reply.payload.toString('utf8'));
      if (replies.length < rounds) {
        call.write({ payload: Buffer.from(`ping ${replies.length}`) });
      } else {
        call.end();
      }
    });
    call.on('error', (err) => resolve({ ...describe(err), rounds: replies.length }));
    call.on('status', (s) => {
      if (s.code === grpc.status.OK) {
        resolve({ rounds: replies.length, inOrder: replies.every((r, i) => r === `ping ${i}`), code: s.code });
      }
    });
    call.write({ payload: Buffer.from('ping 0') });
  });
}

function large() {
  return new Promise((resolve) => {
    const payload = crypto.randomBytes(3 * 1024 * 1024);
    client.Unary({ payload }, { deadline: deadline() }, (err, reply) => {
      if (err) {
        resolve(describe(err));
        return;
      }
      resolve({ size: reply.payload.length, equal: Buffer.compare(payload, reply.payload) === 0 });
    });
  });
}

function serverError() {
  return new Promise((resolve) => {
    client.Unary({ fail_code: grpc.status.NOT_FOUND, fail_message: NON_ASCII }, { deadline: deadline() }, (err) => {
      resolve(err ? { code: err.code, details: err.details, detailsMatch: err.details === NON_ASCII } : { error: 'the call succeeded' });
    });
  });
}

function deadlineExceeded() {
  return new Promise((resolve) => {
    client.Unary({ delay_ms: 20000 }, { deadline: deadline(500) }, (err) => {
      resolve(err ? { code: err.code } : { error: 'the call succeeded' });
    });
  });
}

async function main() {
  const cases = { unary, serverStream, clientStream, bidi, large, serverError, deadlineExceeded };
  const results = {};
  for (const [name, run] of Object.entries(cases)) {
    try {
      results[name] = await run();
    } catch (e) {
      results[name] = { error: String(e && e.stack ? e.stack : e) };
    }
  }
  client.close();
  process.stdout.write(JSON.stringify(results) + '\n');
}

main();
