"""The dashboard in a real Chromium (Debian's, driven by Playwright): sign in, submit the demo's court order through
the form; an approver, in a browser of their own, approves its preview; watch it reach its certificate, download the
bundle, verify it on the auditor's page in a third browser; then scan the server's logs, the ledger and the browsers'
profile folders for the child.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from playwright.async_api import BrowserContext, Page, Playwright, async_playwright, expect

from erasure.demo import dated_copy
from examples.estate import CHILD
from tests.integration.web.conftest import REPO, Served

SCREENSHOTS = REPO / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"


def chromium() -> str:
    found = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    assert found, "chromium is missing: `make test` installs it as root, else run `apt-get install chromium`"
    return found


async def browser_of(playwright: Playwright, profile: Path) -> BrowserContext:
    """A persistent profile on disk, so the leak scan reads what the browser kept: history, cache, form data."""
    return await playwright.chromium.launch_persistent_context(
        str(profile),
        executable_path=chromium(),
        headless=True,
        args=["--no-sandbox"],  # the tests run as root, where Chromium's sandbox cannot start
        viewport={"width": 1280, "height": 900},
        accept_downloads=True,
    )


async def sign_in(page: Page, url: str, token: str) -> None:
    await page.goto(f"{url}/sign-in")
    await page.get_by_label("Operator token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Requests")).to_be_visible()


async def test_submit_watch_download_and_verify_in_chromium(served: Served, tmp_path: Path) -> None:
    order_text = dated_copy(REPO / "examples" / "court-order.yaml", tmp_path / "order.yaml", datetime.now(UTC).date())
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    profiles = [tmp_path / "profile-submitter", tmp_path / "profile-approver", tmp_path / "profile-auditor"]
    async with served.harness.worker(), async_playwright() as playwright:
        submitter = await browser_of(playwright, profiles[0])
        page = await submitter.new_page()
        await sign_in(page, served.url, served.tokens["sam"])
        await page.get_by_role("link", name="Submit an order").click()
        await page.get_by_label("The order").fill(order_text.read_text())
        await page.get_by_role("button", name="Submit").click()
        await expect(page.locator("#state")).to_have_text("awaiting_approval", timeout=120_000)
        request_url = page.url

        approver = await browser_of(playwright, profiles[1])
        approval = await approver.new_page()
        await sign_in(approval, served.url, served.tokens["ada"])
        await approval.goto(request_url)
        await expect(approval.get_by_role("heading", name="Preview: awaiting approval")).to_be_visible()
        await expect(approval.locator("#submitted-by")).to_contain_text("Submitted by sam")
        await approval.screenshot(path=SCREENSHOTS / "approval.png", full_page=True)
        await approval.get_by_role("button", name="Approve").click()
        await expect(approval.locator("#state")).not_to_have_text("awaiting_approval", timeout=60_000)
        await approver.close()

        await page.reload()
        await expect(page.locator("#state")).to_have_text("certified", timeout=120_000)
        await expect(page.locator("#outcome")).to_have_text("complete")
        await expect(page.locator("ol.events")).to_contain_text("approved · by ada")
        assert "/requests/" in page.url
        await page.screenshot(path=SCREENSHOTS / "request.png", full_page=True)
        async with page.expect_download() as bundle_download:
            await page.locator("#bundle").click()
        bundle = tmp_path / "bundle.zip"
        await (await bundle_download.value).save_as(bundle)
        async with page.expect_download() as key_download:
            await page.get_by_role("link", name="the signing public key").click()
        key = tmp_path / "signing-key.pem"
        await (await key_download.value).save_as(key)
        await page.get_by_role("link", name="Requests").click()
        await expect(page.get_by_role("cell", name="certified")).to_be_visible()
        await page.screenshot(path=SCREENSHOTS / "requests.png", full_page=True)
        await assert_usable(page)
        await page.set_viewport_size({"width": 390, "height": 844})  # a phone
        await assert_usable(page)
        await page.goto(request_url)
        await assert_usable(page)
        await submitter.close()

        auditor = await browser_of(playwright, profiles[2])
        page = await auditor.new_page()
        await page.goto(f"{served.url}/sign-in")  # by keyboard alone: the token field, then Enter
        for _ in range(20):
            await page.keyboard.press("Tab")
            if await page.evaluate("document.activeElement.id === 'token'"):
                break
        assert await page.evaluate("document.activeElement.id === 'token'"), "the token field is not reached by Tab"
        await page.keyboard.type(served.tokens["aud"])
        await page.keyboard.press("Enter")
        await expect(page.get_by_role("heading", name="Requests")).to_be_visible()
        await page.get_by_role("link", name="Verify a bundle").click()
        await assert_usable(page)
        await page.get_by_label("Bundle (.zip)").set_input_files(bundle)
        await page.get_by_label("Trusted public key (PEM)").set_input_files(key)
        await page.get_by_role("button", name="Verify").click()
        await expect(page.locator("#verdict")).to_contain_text("Verified")
        await expect(page.locator("#verdict")).to_contain_text("outcome complete")
        assert await page.locator("ol.steps li").count() >= 8
        await page.screenshot(path=SCREENSHOTS / "verify.png", full_page=True)
        await auditor.close()

    found = leaks(served, profiles)
    assert found == [], found


async def assert_usable(page: Page) -> None:
    """Every visible control has a label a screen reader names, and the page needs no sideways scrolling."""
    unlabelled = await page.evaluate(
        """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
            .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
            .map(e => e.name || e.id || e.tagName)"""
    )
    assert unlabelled == [], unlabelled
    width = await page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"{page.url}: {width[0]} px wide in a {width[1]} px window"


def leaks(served: Served, profiles: list[Path]) -> list[str]:
    """Where the child's email or phone appears, as written or in the forms a URL or a store would hold them."""
    needles = _forms(CHILD.email or "") + _forms(CHILD.phone or "")
    places: dict[str, bytes] = {"serve output": served.log.read_bytes()}
    for path in [*served.harness.config.logs_dir.glob("*"), *(p for d in profiles for p in d.rglob("*"))]:
        if path.is_file():
            places[str(path)] = path.read_bytes()
    places["ledger"] = _ledger_text(served).encode()
    return [f"{where}: {needle!r}" for where, data in places.items() for needle in needles if needle in data]


def _forms(value: str) -> list[bytes]:
    from urllib.parse import quote, quote_plus

    forms = {value, value.lower(), quote(value), quote_plus(value), quote(value.lower())}
    return sorted({f.encode() for f in forms} | {f.encode("utf-16-le") for f in forms})


def _ledger_text(served: Served) -> str:
    schema: Any = served.harness.config.ledger_schema
    rows: list[str] = []
    with served.harness.services.pool.connection() as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", [schema]
        ).fetchall()
        for (table,) in tables:
            rows += [repr(row) for row in conn.execute(f'SELECT * FROM "{table}"').fetchall()]
    return "\n".join(rows)
