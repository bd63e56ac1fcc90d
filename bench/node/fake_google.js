// A fake Google (OAuth token endpoint and Calendar API) that answers at once, for bench/http.sh's availability
// run: what byoc-api asks to verify and use a Google Calendar credential, with the shapes of
// tests/fault/lib/fake_providers.py, from one Node.js process (the Python fake of the fault tests would be the
// bottleneck). Standard library only.
//   POST /token                             -> an access token for an hour
//   GET  /calendar/v3/users/me/calendarList -> one calendar, the primary
//   GET  /calendar/v3/calendars/{id}        -> that calendar
//   POST /calendar/v3/freeBusy              -> no busy time in the asked calendars
// Usage: node fake_google.js PORT_FILE   (binds 127.0.0.1 on a free port and writes the port to PORT_FILE)
'use strict';
const fs = require('fs');
const http = require('http');

function answer(response, status, body) {
  const data = JSON.stringify(body);
  response.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) });
  response.end(data);
}

function freeBusy(body) {
  let asked = [];
  try {
    asked = (JSON.parse(body || '{}').items || []).map((item) => item.id);
  } catch (_) {
    asked = [];
  }
  const calendars = {};
  for (const id of asked) calendars[id] = { busy: [] };
  return { kind: 'calendar#freeBusy', calendars };
}

const server = http.createServer((request, response) => {
  const path = request.url.split('?', 1)[0];
  let body = '';
  request.on('data', (chunk) => { body += chunk; });
  request.on('end', () => {
    if (request.method === 'POST' && path === '/token') {
      return answer(response, 200, { access_token: 'fake-access-token', expires_in: 3600, token_type: 'Bearer' });
    }
    if (request.method === 'POST' && path === '/calendar/v3/freeBusy') return answer(response, 200, freeBusy(body));
    if (request.method === 'GET' && path === '/calendar/v3/users/me/calendarList') {
      return answer(response, 200, { items: [{ id: 'primary', primary: true, timeZone: 'UTC' }] });
    }
    if (request.method === 'GET' && path.startsWith('/calendar/v3/calendars/')) {
      return answer(response, 200, { id: decodeURIComponent(path.split('/').pop()), timeZone: 'UTC' });
    }
    return answer(response, 404, { error: { code: 404, message: 'Not Found', errors: [{ reason: 'notFound' }] } });
  });
});
server.keepAliveTimeout = 60000;
server.listen(0, '127.0.0.1', () => fs.writeFileSync(process.argv[2], String(server.address().port)));
