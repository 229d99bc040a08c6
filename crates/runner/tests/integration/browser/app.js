// The page's script, bundled by esbuild from @segment/analytics-next as a web app would bundle it.
import { AnalyticsBrowser } from '@segment/analytics-next';

async function main() {
  const params = new URLSearchParams(location.search);
  const writeKey = params.get('writeKey');
  const prefix = params.get('prefix');
  const strategy = params.get('strategy');
  // The one line a web app changes: where the settings come from. They point analytics.js at Tributary.
  const settings = { writeKey, cdnURL: params.get('cdnURL') };
  const segmentio = strategy === 'batching'
    ? { deliveryStrategy: { strategy: 'batching', config: { size: 10, timeout: 500 } } }
    : {};
  const analytics = AnalyticsBrowser.load(settings, {
    disableClientPersistence: true,
    integrations: { 'Segment.io': segmentio },
  });
  await analytics.identify(`${prefix}_user`, { plan: 'pro', strategy });
  await analytics.track(`${prefix} Clicked`, { n: 1 });
  await analytics.page('Docs', `${prefix} Home`, { path: '/' });
  await analytics.group(`${prefix}_group`, { name: 'Browser Inc' });
  await analytics.alias(`${prefix}_alias`, `${prefix}_user`);
  window.__sent = true;
}

main().catch((error) => {
  window.__error = String(error && error.stack ? error.stack : error);
});
