// The analysts' view of ClickHouse in a real browser: Debian's Chromium (playwright-core, never
// a downloaded browser) logs in as the analyst on the server's own /dashboard, loads the e-HAC
// charts from ehac.dashboards and checks that they drew data; then, in /play, asks for an
// identity column and sees ClickHouse's access error. Run by
// tests/tests/personal_data.rs after a small load, which passes the server and the password:
//   EHAC_CLICKHOUSE_URL, EHAC_ANALYST_PASSWORD; EHAC_SCREENSHOT (optional): where to save the
//   dashboard as PNG; EHAC_CHROMIUM (default /usr/bin/chromium).
import { test } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const URL = process.env.EHAC_CLICKHOUSE_URL;
const PASSWORD = process.env.EHAC_ANALYST_PASSWORD;
const CHROMIUM = process.env.EHAC_CHROMIUM ?? "/usr/bin/chromium";
const SCREENSHOT = process.env.EHAC_SCREENSHOT;
const CHARTS = "SELECT title, query FROM ehac.dashboards WHERE dashboard = 'e-HAC'";
const PATIENCE = 30_000;

async function withPage(body) {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
    await body(page);
  } finally {
    await browser.close();
  }
}

test("the analyst's dashboard draws every e-HAC chart with data", { skip: !URL && "EHAC_CLICKHOUSE_URL is not set" }, async () => {
  await withPage(async (page) => {
    await page.goto(`${URL}/dashboard`);
    await page.fill("#url", URL);
    await page.fill("#user", "analyst");
    await page.fill("#password", PASSWORD);
    // Two days either side of now, by the hour: the arrivals the load declared.
    await page.fill("#search-query", CHARTS);
    await page.click("#search");
    await page.waitForFunction(() => document.querySelectorAll("#charts .chart").length === 7, null, { timeout: PATIENCE });
    for (const [name, value] of [["seconds", "172800"], ["rounding", "3600"]]) {
      await page.fill(`#chart-params input[name="${name}"]`, value);
    }
    await page.press('#chart-params input[name="rounding"]', "Enter");
    // A chart whose query returned rows has its plot; the arrivals chart must (the load's).
    const arrivalsDrawn = () => {
      const titles = [...document.querySelectorAll("#charts .chart .title")].map((t) => t.innerText.trim());
      return plots[titles.indexOf("Arrivals per hour by airport")];
    };
    await page.waitForFunction(arrivalsDrawn, null, { timeout: PATIENCE });
    await page.waitForTimeout(2000);
    // No chart failed; one may be empty (this load may have had no rejection).
    const errors = await page.locator(".query-error").evaluateAll((divs) => divs.map((d) => d.innerText.trim()).filter((t) => t));
    assert.deepEqual(errors.filter((e) => e !== "Query returned empty result."), [], "no chart failed");
    assert.ok(errors.length <= 1, `at most one empty chart: ${errors}`);
    const global = (await page.locator("#global-error").innerText()).trim();
    assert.equal(global, "", "no error for the whole dashboard");
    // Each chart's uPlot data: the time column, then one array per series.
    const charts = await page.evaluate(() =>
      plots.map((p, i) => ({
        title: document.querySelectorAll("#charts .chart .title")[i]?.innerText.trim(),
        points: p ? p.data.slice(1).flat().filter((v) => v !== null && v !== undefined).length : 0,
      })),
    );
    console.log("charts and their data points:", JSON.stringify(charts));
    assert.equal(charts.length, 7);
    const arrivals = charts.find((c) => c.title === "Arrivals per hour by airport");
    assert.ok(arrivals && arrivals.points > 0, `the arrivals chart has data: ${JSON.stringify(charts)}`);
    assert.ok(charts.filter((c) => c.points > 0).length >= 5, `most charts have data: ${JSON.stringify(charts)}`);
    if (SCREENSHOT) await page.screenshot({ path: SCREENSHOT, fullPage: true });
  });
});

test("in /play the analyst gets ClickHouse's access error for identity", { skip: !URL && "EHAC_CLICKHOUSE_URL is not set" }, async () => {
  await withPage(async (page) => {
    await page.goto(`${URL}/play`);
    await page.fill("#url", URL);
    await page.fill("#user", "analyst");
    await page.fill("#password", PASSWORD);
    for (const sql of ["SELECT nik, full_name FROM ehac_pii.identities LIMIT 5", "SELECT traveller_key, flight_number FROM ehac.declarations LIMIT 5"]) {
      await page.fill("#query", sql);
      await page.click("#run");
      const denied = page.getByText(/Code: 497.*ACCESS_DENIED/s).first();
      await denied.waitFor({ timeout: PATIENCE });
      assert.match(await denied.innerText(), /analyst: Not enough privileges/);
      // What the analyst may read runs in the same page.
      await page.fill("#query", "SELECT count() FROM ehac.arrivals_microdata");
      await page.click("#run");
      await page.locator("#data-table").first().waitFor({ timeout: PATIENCE });
    }
  });
});
