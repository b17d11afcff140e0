"""The admin in a real browser, as support staff use it: Debian's Chromium, headless, driven by Selenium.

The provider runs for real (pytest-django's ``live_server``: Django's own threaded HTTP server on loopback, with
the test database). The browser logs in through the login form, revokes a user through the confirmation page,
reads the audit trail, and measures that the users list and the audit trail do not scroll sideways at 1280 px.

Chromium and chromedriver come from Debian's packages (``scripts/test.sh`` installs them); Selenium is pointed
at ``/usr/bin/chromedriver`` so Selenium Manager never downloads a browser or driver. When they are missing
this test fails: it never skips.

``TOKENVERSION_SCREENSHOTS=docs/img`` saves the screenshots shown in docs/revocation.md (otherwise they go to
the test's temporary directory).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from accounts.models import KeycloakUser
from tokenversion.conf import get_settings
from tokenversion_server import services
from tokenversion_server.models import RevocationEvent, SubjectVersion

pytestmark = pytest.mark.django_db(transaction=True)

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WIDTH, HEIGHT = 1280, 860
ALICE = "5b7f0b36-8d0e-4a35-9f49-7a5ad1b0c0a1"
BOB = "5b7f0b36-8d0e-4a35-9f49-7a5ad1b0c0b2"
CAROL = "5b7f0b36-8d0e-4a35-9f49-7a5ad1b0c0c3"
PASSWORD = "support-pw-for-the-browser-test"


@pytest.fixture
def browser():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    assert not missing, f"{', '.join(missing)} missing: apt-get install chromium chromium-driver (scripts/test.sh does)"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={WIDTH},{HEIGHT}", "--lang=en-US", "--hide-scrollbars"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        # The layout viewport exactly 1280 px wide, whatever the window decorations.
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False})
        driver.implicitly_wait(5)
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def shots(tmp_path) -> Path:
    target = Path(os.environ.get("TOKENVERSION_SCREENSHOTS") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    return target


@pytest.fixture
def people():
    issuer = get_settings().issuer
    alice = KeycloakUser.objects.create(issuer=issuer, subject=ALICE, username="alice",
                                        email="alice.wonderland@example.com")
    bob = KeycloakUser.objects.create(issuer=issuer, subject=BOB, username="bob", email="bob@example.com")
    KeycloakUser.objects.create(issuer=issuer, subject=CAROL, username="carol.with.a.rather.long.username",
                                email="carol.with.a.rather.long.address@subsidiary.example.com")
    SubjectVersion.objects.create(issuer=issuer, subject=ALICE, token_version=3)
    # Some history, as Keycloak writes it: a back-channel logout of one session, a password change.
    services.revoke_session("0d9f6c52-1b7e-4c1a-9a57-3f0e2b7c8d41", subject=CAROL, reason="logout",
                            actor=services.Actor.keycloak("backchannel-logout 6a1f0c7e-2d94-4b8e-a1c3-5e7d9f0b2a64"))
    services.revoke_user(BOB, reason="password_change", actor=services.Actor.keycloak(
        "UPDATE_PASSWORD 3c8e1f2a-7b6d-4e5f-9a0b-1c2d3e4f5a6b"), note="Keycloak event")
    return alice, bob


@pytest.fixture
def support():
    user = User.objects.create_user("support", "support@staff.example", PASSWORD, is_staff=True)
    for app_label, codename in (("accounts", "view_keycloakuser"), ("tokenversion_server", "revoke_tokens"),
                                ("tokenversion_server", "view_revocationevent"),
                                ("tokenversion_server", "view_subjectversion"),
                                ("tokenversion_server", "view_revokedsession")):
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return user


def click_and_load(driver, element) -> None:
    """Click something that loads a page, and wait until the new page has replaced the old one."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    old = driver.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(driver, 10).until(expected_conditions.staleness_of(old))


def no_sideways_scroll(driver) -> tuple[int, int]:
    """(scroll width, visible width) of the page, and of the list's own box, which scrolls by itself."""
    page = driver.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    box = driver.execute_script(
        "const r = document.querySelector('#changelist-form .results'); return [r.scrollWidth, r.clientWidth]")
    assert box[0] <= box[1], f"the list scrolls sideways inside its box: {box[0]} > {box[1]} px"
    return page


def test_support_revokes_a_user_through_the_confirmation_page_and_reads_the_audit_trail(
        live_server, browser, people, support, shots):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    alice, bob = people
    base = live_server.url

    # Log in through the login form, as a person does.
    browser.get(base + reverse("admin:login") + "?next=" + reverse("admin:index"))
    assert "Django administration" not in browser.page_source
    browser.find_element(By.ID, "id_username").send_keys("support")
    browser.find_element(By.ID, "id_password").send_keys(PASSWORD)
    click_and_load(browser, browser.find_element(By.CSS_SELECTOR, "input[type=submit]"))
    assert browser.find_element(By.ID, "site-name").text == "tokenversion"
    assert browser.title == "Token revocation | tokenversion admin"

    # The users list: no "add user", no sideways scrolling.
    browser.get(base + reverse("admin:accounts_keycloakuser_changelist"))
    add_user = reverse("admin:accounts_keycloakuser_changelist") + "add/"
    assert browser.find_elements(By.CSS_SELECTOR, f"a[href='{add_user}']") == []  # not in the list, nor the nav
    browser.save_screenshot(str(shots / "admin-users.png"))
    scroll, client = no_sideways_scroll(browser)
    assert scroll <= client == WIDTH, f"users list scrolls sideways: {scroll} > {client}"

    # Select alice, choose the compromise action: a confirmation page, nothing revoked yet.
    browser.find_element(By.CSS_SELECTOR, f"input[name=_selected_action][value='{alice.pk}']").click()
    Select(browser.find_element(By.NAME, "action")).select_by_value("revoke_for_compromise")
    click_and_load(browser, browser.find_element(By.CSS_SELECTOR, "button[name=index]"))
    page = browser.find_element(By.ID, "content").text
    assert "Revoke every token of 1 user: account compromised" in page
    for shown in ("alice", "alice.wonderland@example.com", ALICE):
        assert shown in page
    assert "bob" not in page
    assert ("Keycloak sessions will not be ended: no Keycloak admin credentials: set TOKENVERSION_KEYCLOAK "
            "USERNAME/PASSWORD or CLIENT_SECRET") in page
    assert "The user must log in again." in page
    assert "Their Keycloak sessions are NOT ended, so refresh tokens of the user still work" in page
    assert SubjectVersion.objects.get(subject=ALICE).token_version == 3
    browser.find_element(By.NAME, "note").send_keys("phished, ticket 4711")
    browser.save_screenshot(str(shots / "admin-confirm-revocation.png"))

    click_and_load(browser, browser.find_element(By.NAME, "tv_confirm"))
    assert ("Revoked every token of 1 user (compromise); Keycloak sessions ended: 0."
            in browser.find_element(By.CSS_SELECTOR, "ul.messagelist").text)
    assert SubjectVersion.objects.get(subject=ALICE).token_version == 4

    # Cancel on the confirmation page revokes nothing.
    browser.find_element(By.CSS_SELECTOR, f"input[name=_selected_action][value='{bob.pk}']").click()
    Select(browser.find_element(By.NAME, "action")).select_by_value("revoke_for_logout")
    click_and_load(browser, browser.find_element(By.CSS_SELECTOR, "button[name=index]"))
    click_and_load(browser, browser.find_element(By.LINK_TEXT, "Cancel"))
    assert browser.current_url.endswith(reverse("admin:accounts_keycloakuser_changelist"))
    assert SubjectVersion.objects.get(subject=BOB).token_version == 1  # its password change only
    assert RevocationEvent.objects.count() == 3

    # The audit trail names alice (linked to her page) beside her subject, with the note; it fits 1280 px.
    browser.get(base + reverse("admin:tokenversion_server_revocationevent_changelist"))
    rows = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    assert len(rows) == 3
    assert [r.find_element(By.CSS_SELECTOR, "td.field-user .tv-user").text for r in rows] == [
        "alice", "bob", "carol.with.a.rather.long.username"]  # newest first
    link = rows[0].find_element(By.CSS_SELECTOR, "td.field-user a")
    assert link.text == "alice"
    assert link.get_attribute("href") == base + reverse("admin:accounts_keycloakuser_change", args=[alice.pk])
    note = rows[0].find_element(By.CSS_SELECTOR, "td.field-short_note span").get_attribute("title")
    assert note == ("Django admin: compromise; Keycloak sessions not ended: no Keycloak admin credentials: set "
                    "TOKENVERSION_KEYCLOAK USERNAME/PASSWORD or CLIENT_SECRET; phished, ticket 4711")
    assert rows[0].find_element(By.CSS_SELECTOR, "td.field-versions").text == "3 → 4"
    browser.save_screenshot(str(shots / "admin-audit-trail.png"))
    scroll, client = no_sideways_scroll(browser)
    assert scroll <= client == WIDTH, f"audit trail scrolls sideways: {scroll} > {client}"

    # Its detail page: the user beside the subject, and the whole note.
    click_and_load(browser, rows[0].find_element(By.CSS_SELECTOR, "th a"))
    detail = browser.find_element(By.ID, "content").text
    assert "alice" in detail and ALICE in detail and "phished, ticket 4711" in detail

    # Searching the audit trail by username finds alice's row.
    browser.get(base + reverse("admin:tokenversion_server_revocationevent_changelist") + "?q=alice")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")) == 1


def test_the_attribute_backlog_fits_1280_px_and_shows_why_writes_fail(live_server, browser, people, shots):
    """Attribute mode's *Pending attribute writes*, as an operator reads it during a Keycloak outage."""
    from selenium.webdriver.common.by import By

    from tokenversion_server.attribute_sync import enqueue
    from tokenversion_server.models import AttributeWrite

    issuer = get_settings().issuer
    enqueue(issuer, ALICE, 4)
    enqueue(issuer, CAROL, 1)
    AttributeWrite.objects.filter(subject=CAROL).update(attempts=6, last_error=(
        "Keycloak admin login at http://keycloak.internal:8080/ failed: HTTPConnectionPool(host='keycloak.internal', "
        "port=8080): Max retries exceeded with url: /realms/master/protocol/openid-connect/token"))
    User.objects.create_user("operator", "operator@staff.example", PASSWORD, is_staff=True).user_permissions.add(
        Permission.objects.get(content_type__app_label="tokenversion_server", codename="view_attributewrite"))
    browser.get(live_server.url + reverse("admin:login") + "?next="
                + reverse("admin:tokenversion_server_attributewrite_changelist"))
    browser.find_element(By.ID, "id_username").send_keys("operator")
    browser.find_element(By.ID, "id_password").send_keys(PASSWORD)
    click_and_load(browser, browser.find_element(By.CSS_SELECTOR, "input[type=submit]"))
    heading = browser.find_element(By.CSS_SELECTOR, "#content h1").text
    assert heading.startswith("Pending attribute writes: 2 pending, 1 failing, oldest ")
    rows = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    assert len(rows) == 2
    assert "carol.with.a.rather.long.username" in browser.page_source  # the user beside the subject
    scroll, visible = no_sideways_scroll(browser)
    browser.save_screenshot(str(shots / "admin-attribute-backlog.png"))
    assert scroll <= visible, f"the page scrolls sideways at {WIDTH} px: {scroll} > {visible}"
