// The default alert receiver of the Compose stack: Alertmanager posts every
// notification here (webhook), and this prints one JSON line per alert on
// stdout, so `docker compose logs -f alert-logger` shows what would have paged
// someone. Plain JavaScript on node:http: it runs from the stock node image
// without a build. Replace it with a real receiver (alertmanager.yml has
// examples for email, Slack and PagerDuty).
// PORT (default 9095): where Alertmanager's webhook_configs point.
import { createServer } from 'node:http';

const port = Number(process.env.PORT ?? 9095);
// Alertmanager sends a whole group at once; a body this size holds hundreds.
const MAX_BODY = 1 << 20;

/** One line per alert: what a person needs to see it and act on it. */
function lines(notification) {
  return (notification.alerts ?? []).map((alert) =>
    JSON.stringify({
      receiver: notification.receiver,
      status: alert.status,
      alertname: alert.labels?.alertname,
      severity: alert.labels?.severity,
      instance: alert.labels?.instance,
      summary: alert.annotations?.summary,
      description: alert.annotations?.description,
      runbook_url: alert.annotations?.runbook_url,
      startsAt: alert.startsAt,
      endsAt: alert.endsAt,
      labels: alert.labels,
    }),
  );
}

const server = createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/health') return void res.writeHead(200).end('ok\n');
  if (req.method !== 'POST') return void res.writeHead(405, { allow: 'GET, POST' }).end();
  const chunks = [];
  let size = 0;
  req.on('data', (chunk) => {
    size += chunk.length;
    if (size > MAX_BODY) {
      res.writeHead(413).end();
      req.destroy();
    } else chunks.push(chunk);
  });
  req.on('end', () => {
    let notification;
    try {
      notification = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      return void res.writeHead(400).end('not JSON\n');
    }
    for (const line of lines(notification)) process.stdout.write(`${line}\n`);
    res.writeHead(200).end();
  });
});
server.listen(port, () => process.stderr.write(`alert-logger listening on :${port}\n`));
// PID 1 in its container: stop on SIGTERM rather than wait for SIGKILL.
process.on('SIGTERM', () => server.close(() => process.exit(0)));
