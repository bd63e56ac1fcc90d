#!/usr/bin/env node
// The original plan's credential read (docs: /backend/src/services/credential-encryption.ts): every
// getCredential call decrypts the stored row with AES-256-GCM and JSON-parses it; there is no cache.
// `decryptCredential` below is the plan's function with the types removed. Only the decrypt + parse is timed
// (the plan's Supabase select comes on top of it), so this is the cheapest the plan's design can be.
//
// Usage: node bench/node/plan_get_credential.js [iterations]   (default 200000, after 20000 warm-up calls)
// Prints one JSON object: per-call p50/p90/p99 in nanoseconds (each call timed alone with
// process.hrtime.bigint, the timer included, as the Rust bench times its calls) and the mean of a
// back-to-back loop.
'use strict';

const crypto = require('crypto');

function decryptCredential(encryptedData, iv, authTag) {
  const key = Buffer.from(process.env.CREDENTIAL_ENCRYPTION_KEY, 'hex');

  const decipher = crypto.createDecipheriv('aes-256-gcm', key, iv);
  decipher.setAuthTag(authTag);

  const decrypted = Buffer.concat([
    decipher.update(encryptedData),
    decipher.final()
  ]);

  return JSON.parse(decrypted.toString('utf8'));
}

// The plan's encryptCredential, used once to produce the stored row.
function encryptCredential(data) {
  const key = Buffer.from(process.env.CREDENTIAL_ENCRYPTION_KEY, 'hex');
  const iv = crypto.randomBytes(16);
  const cipher = crypto.createCipheriv('aes-256-gcm', key, iv);
  const encrypted = Buffer.concat([
    cipher.update(JSON.stringify(data), 'utf8'),
    cipher.final()
  ]);
  return { encryptedData: encrypted, iv, authTag: cipher.getAuthTag() };
}

function main() {
  const iterations = Number.parseInt(process.argv[2] || '200000', 10);
  if (!Number.isInteger(iterations) || iterations < 1000) {
    process.stderr.write('plan_get_credential.js: iterations must be an integer >= 1000\n');
    process.exit(2);
  }
  if (!process.env.CREDENTIAL_ENCRYPTION_KEY) {
    process.env.CREDENTIAL_ENCRYPTION_KEY = crypto.randomBytes(32).toString('hex');
  }
  // The same Twilio payload the Rust bench seals.
  const credential = {
    accountSid: 'AC0123456789abcdef0123456789abcdef',
    authToken: '0123456789abcdef0123456789abcdef',
    phoneNumber: '+14155550123'
  };
  const row = encryptCredential(credential);
  let sink = 0;

  const warmUp = Math.max(20000, iterations / 10);
  for (let i = 0; i < warmUp; i += 1) {
    sink += decryptCredential(row.encryptedData, row.iv, row.authTag).authToken.length;
  }

  const samples = new Float64Array(iterations);
  for (let i = 0; i < iterations; i += 1) {
    const start = process.hrtime.bigint();
    const parsed = decryptCredential(row.encryptedData, row.iv, row.authTag);
    samples[i] = Number(process.hrtime.bigint() - start);
    sink += parsed.authToken.length;
  }
  samples.sort();

  const loopStart = process.hrtime.bigint();
  for (let i = 0; i < iterations; i += 1) {
    sink += decryptCredential(row.encryptedData, row.iv, row.authTag).authToken.length;
  }
  const loopNs = Number(process.hrtime.bigint() - loopStart);

  if (sink === 0) {
    throw new Error('decryption produced nothing');
  }
  const at = (q) => samples[Math.min(iterations - 1, Math.floor(iterations * q))];
  process.stdout.write(JSON.stringify({
    benchmark: 'plan_get_credential',
    node: process.version,
    iterations,
    warm_up: warmUp,
    p50_ns: at(0.5),
    p90_ns: at(0.9),
    p99_ns: at(0.99),
    loop_mean_ns: loopNs / iterations
  }) + '\n');
}

main();
