// Opens the test page in headless Chromium through playwright-core, prints every request the page makes as
// `request METHOD URL`, `sent` once analytics.js has taken every call, and keeps the page open until standard input
// closes, so that a batching strategy can flush.
const { chromium } = require('playwright-core');

const [executablePath, pageUrl] = process.argv.slice(2);

(async () => {
  const browser = await chromium.launch({
    executablePath,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage',
    ],
  });
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on('request', (request) => console.log(`request ${request.method()} ${request.url()}`));
  page.on('console', (message) => console.error(`console: ${message.text()}`));
  page.on('pageerror', (error) => console.error(`page error: ${error}`));
  await page.goto(pageUrl);
  await page.waitForFunction(() => window.__sent === true || window.__error !== undefined, null, { timeout: 60000 });
  const error = await page.evaluate(() => window.__error);
  if (error) {
    console.error(`the page failed: ${error}`);
    process.exitCode = 1;
  } else {
    console.log('sent');
  }
  await new Promise((resolve) => {
    process.stdin.on('end', resolve);
    process.stdin.on('close', resolve);
    process.stdin.resume();
  });
  await browser.close();
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
