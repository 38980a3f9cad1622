"""A real browser for the integration tier: Debian's Chromium driven by Playwright, trusting
exactly the deployment's certificate, writing a screenshot of each step a person sees.

Chromium is told to accept the hub's self-signed certificate by the SHA-256 of its public
key (--ignore-certificate-errors-spki-list): any other certificate still fails, so HTTPS
is verified, only against a pin instead of a CA. The fake GitHub's host name is mapped to
127.0.0.1 with --host-resolver-rules, so one GITHUB_URL serves the browser (through the
published port) and the hub (through the Docker network alias).
"""
import base64
import functools
import hashlib
import re
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

CHROMIUM = "/usr/bin/chromium"
# What works as root on these machines (see shared MACHINE.md): no sandbox, no GPU, and no
# background traffic into a network that has none.
FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


def spki_pin(cert_path) -> str:
    cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@contextmanager
def chromium(cert_path, map_hosts=()):
    """A headless Chromium (a fresh profile) that trusts the hub's certificate by its key."""
    from playwright.sync_api import sync_playwright

    args = FLAGS + [f"--ignore-certificate-errors-spki-list={spki_pin(cert_path)}"]
    if map_hosts:
        args.append("--host-resolver-rules=" + ", ".join(f"MAP {h} 127.0.0.1" for h in map_hosts))
    with sync_playwright() as playwright:
        # Playwright gives the browser a fresh --user-data-dir of its own.
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        try:
            yield browser
        finally:
            browser.close()


NETWORK_CHANGED = "net::ERR_NETWORK_CHANGED"


def restartable(step):
    """Chromium aborts a page load with ERR_NETWORK_CHANGED whenever the host's network
    interfaces change, and Docker changes them each time a container starts or stops (a
    user's server, a hub restart, another test's deployment). A person would reload; the
    step starts over, at most twice, and says so."""
    @functools.wraps(step)
    def run(self, *args, **kwargs):
        from playwright.sync_api import Error as PlaywrightError

        for attempt in range(3):
            try:
                return step(self, *args, **kwargs)
            except PlaywrightError as error:
                if NETWORK_CHANGED not in str(error) or attempt == 2:
                    raise
                print(f"{self.name}: {step.__name__} was cut by {NETWORK_CHANGED}; again")
    return run


class Person:
    """One person at their own browser (own cookies), and the screenshots of what they saw."""

    def __init__(self, browser, base_url: str, name: str, shots: "Screenshots"):
        self.base = base_url.rstrip("/")
        self.name = name
        self.context = browser.new_context(viewport={"width": 1280, "height": 800})
        self.context.set_default_timeout(30_000)
        self.page = self.context.new_page()
        self.shots = shots
        # Loads of scripts and styles cut by a network change leave a page half-built.
        self.network_changes = 0
        self.context.on("requestfailed", self._count_network_change)

    def _count_network_change(self, request):
        if request.failure == NETWORK_CHANGED:
            self.network_changes += 1

    @restartable
    def goto(self, path: str):
        return self.page.goto(self.base + path)

    def shot(self, step: str) -> Path:
        return self.shots.take(self.page, f"{self.name}-{step}")

    def close(self):
        self.context.close()

    def wait_for(self, selector: str, what: str, reload_path: str, deadline_s: float = 120):
        """Wait until `selector` shows; when the page was cut by a network change (an error
        page, or a script that never loaded), open `reload_path` again, as a person would."""
        from playwright.sync_api import Error as PlaywrightError

        end = time.monotonic() + deadline_s
        seen = self.network_changes
        while True:
            try:
                self.page.locator(selector).first.wait_for(state="visible", timeout=2000)
                return
            except PlaywrightError as error:  # a timeout, or the page navigating away
                if "Timeout" not in str(error) and NETWORK_CHANGED not in str(error):
                    raise
            if time.monotonic() >= end:
                shot = self.shot("gave-up-waiting")
                raise AssertionError(f"{self.name}: no {what} within {deadline_s:.0f} s; the page "
                                     f"is {self.page.url} (see {shot})")
            if self.network_changes != seen or self.page.url.startswith("chrome-error://"):
                seen = self.network_changes
                print(f"{self.name}: the page was cut by a network change; opening {reload_path} again")
                self.goto(reload_path)

    # --- logging in ----------------------------------------------------------------------------
    @restartable
    def sign_in_with_github(self, login: str = "", then: str = "") -> None:
        """From the hub's login page through the GitHub authorize page and back; `then` is
        where the hub goes after the login (by default: the user's own server)."""
        self.page.goto(self.base + "/hub/login" + (f"?next={quote(then, safe='')}" if then else ""))
        self.page.get_by_text("Sign in with GitHub").wait_for()
        self.shot("hub-login-page")
        self.page.get_by_text("Sign in with GitHub").click()
        self.page.wait_for_url(re.compile(r"/login/oauth/authorize\?"))
        self.page.fill("#login_field", login or self.name)
        self.shot("github-authorize-page")
        self.page.click("#authorize")
        self.page.wait_for_url(re.compile(r"^https://"))  # back at the hub
        self.page.wait_for_load_state()

    @restartable
    def log_in_with_password(self, password: str, then: str = "") -> None:
        """The embedded login's form, as a person fills it in."""
        self.page.goto(self.base + "/hub/login" + (f"?next={quote(then, safe='')}" if then else ""))
        self.page.fill("input[name=username]", self.name)
        self.page.fill("input[name=password]", password)
        self.shot("hub-login-form")
        self.page.locator("form input[type=submit], form button[type=submit]").first.click()
        self.page.wait_for_load_state()

    def wait_for_own_server(self, deadline_s: float = 120) -> None:
        """After logging in, the hub spawns the server and opens JupyterLab: wait for it."""
        self.wait_for("#jp-main-dock-panel", "JupyterLab", f"/user/{self.name}/lab", deadline_s)
        assert f"/user/{self.name}/" in self.page.url, self.page.url

    def wait_for_hub_home(self) -> None:
        """Logged in, at the hub's home page, which names the user."""
        self.wait_for("#start", "the hub's home page", "/hub/home", 60)
        assert self.page.url.endswith("/hub/home"), self.page.url
        assert self.name in self.page.locator("nav").inner_text()

    @restartable
    def set_password_as_admin(self, name: str, password: str) -> None:
        """NativeAuthenticator's page where an admin sets anyone's password."""
        self.page.goto(f"{self.base}/hub/change-password/{name}")
        self.page.fill("#new_password_input", password)
        self.page.fill("#new_password_confirmation_input", password)
        self.page.click("#signup_submit")
        self.page.locator(".alert-success").wait_for()
        self.shot(f"admin-set-password-{name}")

    # --- the admin panel -----------------------------------------------------------------
    def nav_links(self) -> list:
        self.goto("/hub/home")
        return [a.inner_text().strip() for a in self.page.locator("nav a").all()]

    @restartable
    def admin_panel_users(self) -> list:
        """The user names the admin panel lists (JupyterHub 6's React page)."""
        response = self.page.goto(self.base + "/hub/admin")
        assert response.status == 200, f"/hub/admin answered {response.status}"
        self.page.locator("[data-testid=user-row-name]").first.wait_for()
        cells = self.page.locator("[data-testid=user-row-name]").all()
        return sorted(cell.inner_text().strip() for cell in cells)

    @restartable
    def add_user_in_admin_panel(self, name: str) -> None:
        self.page.goto(self.base + "/hub/admin")
        self.page.get_by_role("button", name="Add Users").click()
        self.page.fill("#add-user-textarea", name)
        self.shot(f"admin-add-user-{name}")
        self.page.click("#submit")
        self.page.locator("[data-testid=user-row-name]", has_text=name).first.wait_for()
        self.shot(f"admin-panel-with-{name}")

    # --- JupyterLab ---------------------------------------------------------------------------
    def run_cell_in_lab(self, code: str, deadline_s: float = 120) -> str:
        """Open JupyterLab fresh, make a notebook, wait for an idle kernel, run one cell;
        returns the cell's output text."""
        page, timeout = self.page, deadline_s * 1000
        self.goto(f"/user/{self.name}/lab?reset")
        launcher = ".jp-LauncherCard[data-category='Notebook']"
        self.wait_for(launcher, "JupyterLab's launcher", f"/user/{self.name}/lab?reset", deadline_s)
        self.shot("lab-launcher")
        page.locator(launcher).first.click()
        # Keys sent before the kernel is idle are dropped: wait until the status bar says so.
        page.get_by_text(re.compile(r"Python 3 \(ipykernel\) \| Idle")).wait_for(timeout=timeout)
        editor = page.locator(".jp-Notebook .jp-Cell .cm-content").first
        editor.click()
        page.keyboard.type(code)
        page.wait_for_function("([sel, code]) => document.querySelector(sel)?.textContent === code",
                               arg=[".jp-Notebook .jp-Cell .cm-content", code], timeout=timeout)
        self.shot("lab-cell-typed")
        page.keyboard.press("Shift+Enter")
        output = page.locator(".jp-Notebook .jp-OutputArea-output").first
        output.wait_for(timeout=timeout)
        self.shot("lab-cell-ran")
        return output.inner_text().strip()


class Screenshots:
    """Numbered PNGs in tests/artifacts/<suite>/, in the order the steps happened."""

    def __init__(self, suite: str):
        self.folder = ARTIFACTS / suite
        self.folder.mkdir(parents=True, exist_ok=True)
        for old in self.folder.glob("*.png"):
            old.unlink()
        self.count = 0

    def take(self, page, label: str) -> Path:
        self.count += 1
        path = self.folder / f"{self.count:02d}-{re.sub(r'[^a-z0-9-]+', '-', label.lower())}.png"
        page.screenshot(path=str(path), full_page=True)
        return path


def hub_api(d):
    """The hub's REST API with the tool's own token (secrets/hub-api-token), pinned to the
    deployment's certificate, as `inv up` uses it."""
    from tasks.access import TOKEN_FILE, HubAPI
    from tasks.probe import local_endpoint

    cert = x509.load_pem_x509_certificate(Path(d.cafile).read_bytes())
    token = (d.root / "secrets" / TOKEN_FILE).read_text().strip()
    sha256 = hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()
    return HubAPI(local_endpoint(d.port), sha256, token)


def wait_until(predicate, what: str, deadline_s: float = 60, every_s: float = 0.25):
    """Poll until predicate() is truthy; fail naming what was awaited and what was seen last."""
    end = time.monotonic() + deadline_s
    last = None
    while True:
        try:
            last = predicate()
        except Exception as error:  # noqa: BLE001  (what we saw last goes into the message)
            last = error
        if last and not isinstance(last, Exception):
            return last
        if time.monotonic() >= end:
            raise AssertionError(f"waited {deadline_s:.0f} s for {what}; last seen: {last!r}")
        time.sleep(every_s)
