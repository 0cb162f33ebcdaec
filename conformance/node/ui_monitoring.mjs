// The admin page's charts and query profile in a real browser: Debian's Chromium,
// headless, driven by playwright-core (from conformance/test_monitoring.py). Signs in, reads
// the charts of the default warehouse over the last 15 minutes (the points of every series,
// the scaling marks), switches the window to an hour, then opens the profile of the
// statement whose SQL holds $SLUICE_MARKER from the history. Screenshots go to
// $SLUICE_SHOTS. Prints one JSON line with what it saw.
import { chromium } from "playwright-core";

const base = process.env.SLUICE_HTTP;
const token = process.env.SLUICE_TOKEN;
const marker = process.env.SLUICE_MARKER;
const shots = process.env.SLUICE_SHOTS;
const seen = {};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
const series = (page) =>
  page.$$eval("#charts figure.chart", (figs) =>
    Object.fromEntries(
      figs.map((f) => [
        f.id,
        Object.fromEntries(
          Array.from(f.querySelectorAll("g.series"), (g) => [g.dataset.series, Number(g.dataset.points)]),
        ),
      ]),
    ),
  );
try {
  // A laptop screen.
  const page = await browser.newPage({ viewport: { width: 1366, height: 768 } });
  page.setDefaultTimeout(30000);

  await page.goto(`${base}/ui`);
  await page.fill("#token", token);
  await page.click("#signin");
  await page.waitForSelector("#warehouses");

  const started = Date.now();
  await page.goto(`${base}/ui?window=15m`);
  await page.waitForSelector("#charts figure.chart");
  seen.renderMs = Date.now() - started;
  seen.window = await page.getAttribute("#charts", "data-window");
  seen.warehouse = await page.getAttribute("#charts", "data-warehouse");
  seen.series = await series(page);
  seen.scaleMarks = await page.$$eval("#chart-workers line.scale-event", (ls) =>
    ls.map((l) => ({ up: l.classList.contains("up"), title: l.textContent })),
  );
  seen.legend = await page.textContent("#chart-workers .legend");
  seen.cacheBudget = await page.textContent("#cache tr:nth-child(2) td:nth-child(3)");
  await page.screenshot({ path: `${shots}/1-charts-15m.png`, fullPage: true });

  // The window switch.
  await page.click("#window-1h");
  await page.waitForSelector('#charts[data-window="1h"]');
  seen.switched = await page.getAttribute("#charts", "data-window");
  seen.switchedSeries = await series(page);
  seen.url = page.url();
  await page.screenshot({ path: `${shots}/2-charts-1h.png`, fullPage: true });
  await page.click("#window-7d");
  await page.waitForSelector('#charts[data-window="7d"]');
  seen.week = await page.getAttribute("#charts", "data-resolution");

  // From the history to a statement's profile.
  await page.goto(`${base}/ui/history?text=${encodeURIComponent(marker)}`);
  await page.waitForSelector("#shown");
  seen.historyEnded = await page.textContent("#history tr.record td:first-child");
  await page.click("#history tr.record a.profile");
  await page.waitForSelector("#plan");
  seen.profileUrl = page.url();
  seen.ranOn = (await page.textContent("#ran-on")).trim();
  seen.operators = await page.$$eval("#plan tr.op", (trs) =>
    trs.map((tr) => ({
      name: tr.querySelector("td.op").textContent.replace("└", "").trim(),
      timeNs: Number(tr.dataset.timeNs),
      slowest: tr.classList.contains("slowest"),
      time: tr.children[3].textContent,
      share: tr.children[4].textContent,
    })),
  );
  await page.screenshot({ path: `${shots}/3-profile.png`, fullPage: true });
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));
