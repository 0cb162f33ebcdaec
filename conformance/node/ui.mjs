// The admin page in a real browser: Debian's Chromium, headless, driven by playwright-core
// (driven by conformance/test_operations.py). Signs in (a token without MONITOR is refused),
// reads the overview, waits for the running statement whose SQL holds $SLUICE_MARKER to
// appear in the live list, cancels it with its button, and finds it in the history, filtered.
// Screenshots go to $SLUICE_SHOTS. Prints one JSON line with what it saw.
import { chromium } from "playwright-core";

const base = process.env.SLUICE_HTTP;
const token = process.env.SLUICE_TOKEN;
const other = process.env.SLUICE_OTHER_TOKEN;
const marker = process.env.SLUICE_MARKER;
const shots = process.env.SLUICE_SHOTS;
const seen = {};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(30000);

  await page.goto(`${base}/ui`);
  await page.waitForSelector("#token");
  await page.screenshot({ path: `${shots}/1-login.png` });

  // A principal without MONITOR gets a clear refusal.
  await page.fill("#token", other);
  await page.click("#signin");
  seen.refused = (await page.textContent("#error")).trim();

  await page.fill("#token", token);
  await page.click("#signin");
  await page.waitForSelector("#warehouses");
  seen.warehouses = await page.$$eval("#warehouses tr td:first-child", (tds) => tds.map((td) => td.textContent));
  seen.workers = await page.$$eval("#workers tr", (rows) => rows.length - 1);
  await page.screenshot({ path: `${shots}/2-overview.png`, fullPage: true });

  // The running list refreshes itself: wait for the statement, then cancel it.
  const row = `#running tr:has(td.sql:has-text("${marker}"))`;
  await page.waitForSelector(row, { timeout: 90000 });
  seen.running = (await page.textContent(`${row} td:first-child`)).trim();
  await page.screenshot({ path: `${shots}/3-running.png`, fullPage: true });
  await page.click(`${row} button.cancel`);
  await page.waitForSelector("#notice");
  seen.notice = (await page.textContent("#notice")).trim();

  // The history, filtered to cancelled statements with the marker.
  const deadline = Date.now() + 20000;
  for (;;) {
    await page.goto(`${base}/ui/history`);
    await page.selectOption("#f-state", "CANCELED");
    await page.fill("#f-text", marker);
    await page.click("#filter");
    await page.waitForSelector("#shown");
    const rows = await page.$$eval("#history tr.record", (trs) => trs.map((tr) => Array.from(tr.children, (td) => td.textContent)));
    if (rows.length > 0 || Date.now() > deadline) {
      seen.history = rows;
      break;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  seen.url = page.url();
  await page.screenshot({ path: `${shots}/4-history.png`, fullPage: true });

  await page.click("#logout");
  await page.waitForSelector("#token");
  seen.signedOut = true;
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));
