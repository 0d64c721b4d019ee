#!/usr/bin/env python3
"""The web console in a real browser (headless Chromium, Debian's package, driven by
Selenium through chromedriver), logged in with each role's admin client certificate: the
certificate is in an NSS database under the role's $HOME/.pki/nssdb and the managed policy
AutoSelectCertificateForUrls (written by mdm_admin_web.sh) presents it without a dialog.

Prints one "ok - ..." / "not ok - ..." line per check (tests/lib.sh counts them).
Arguments: URL DEVICE POLICY.json HOMES_DIR SHOT_DIR."""
import json
import os
import subprocess
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

URL, DEV, POLICY, HOMES, SHOTS = sys.argv[1:6]
FAILED = 0


def ok(desc, cond, extra=""):
    global FAILED
    if cond:
        print("ok - " + desc, flush=True)
    else:
        FAILED += 1
        print("not ok - " + desc + (": " + extra if extra else ""), flush=True)


def browser(role):
    home = os.path.join(HOMES, role)
    o = webdriver.ChromeOptions()
    o.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1280,900", "--user-data-dir=" + os.path.join(home, "profile"),
              "--no-first-run", "--disable-background-networking", "--disable-sync",
              "--disable-component-update", "--disable-domain-reliability", "--no-default-browser-check",
              "--disable-client-side-phishing-detection", "--disable-features=Translate,OptimizationHints,MediaRouter",
              # the network is loopback only: no name but localhost resolves
              "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost"):
        o.add_argument(a)
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    env = dict(os.environ, HOME=home)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver", env=env), options=o)


def wait(d, fn, secs=20):
    try:
        return WebDriverWait(d, secs, poll_frequency=0.2).until(lambda _: fn())
    except TimeoutException:
        return None


def text(d, css):
    try:
        return d.find_element(By.CSS_SELECTOR, css).text
    except Exception:
        return ""


def exists(d, css):
    return len(d.find_elements(By.CSS_SELECTOR, css)) > 0


def shot(d, name):
    """The whole page (the window grown to its height for the picture)."""
    h = d.execute_script("return document.documentElement.scrollHeight")
    d.set_window_size(1280, min(max(h + 140, 700), 3000))
    time.sleep(0.3)
    d.save_screenshot(os.path.join(SHOTS, name))
    d.set_window_size(1280, 900)


def login(d, role):
    d.get(URL + "/")
    who = wait(d, lambda: text(d, "#who") if "(" in text(d, "#who") else None)
    ok(role + ": signed in by client certificate", who == "the-%s (%s)" % (role, role), repr(who))
    row = wait(d, lambda: exists(d, 'tr[data-device="%s"]' % DEV))
    ok(role + ": sees the device the agent enrolled", bool(row))
    ok(role + ": it is online", "online" in text(d, 'tr[data-device="%s"]' % DEV))


def device_page(d):
    d.get(URL + "/#/device/" + DEV)
    wait(d, lambda: exists(d, "#policy-version"))


def api_wipe_in_page(d):
    """What a role is not offered, tried anyway from the page: status and reason."""
    return d.execute_async_script("""
        const done = arguments[arguments.length - 1];
        (async () => {
          const s = await (await fetch('/api/v1/session')).json();
          const r = await fetch('/api/v1/devices/' + arguments[0] + '/wipe', {method: 'POST',
            headers: {'Content-Type': 'application/json', 'X-Cells-CSRF': s.csrf},
            body: JSON.stringify({vp: 'work'})});
          done([r.status, (await r.json()).error]);
        })().catch((e) => done([0, String(e)]));
    """, DEV)


def csp_errors(d):
    return [e["message"] for e in d.get_log("browser") if "Content Security Policy" in e["message"]]


def hostile_pages(d):
    """A page of another origin: it cannot frame the console, and a form it posts with the
    admin's certificate (the browser presents it) changes nothing."""
    d.get("data:text/html,<iframe id=f src='%s/'></iframe>" % URL)
    time.sleep(2)
    d.switch_to.frame("f")
    where = d.execute_script("return location.href")
    framed = exists(d, "#who")
    d.switch_to.default_content()
    ok("a foreign page cannot frame the console (the browser refuses: %s)" % where,
       not framed and not where.startswith(URL), where)
    form = ("data:text/html,<form id=x method=POST enctype=text/plain action='%s/api/v1/devices/%s/wipe'>"
            "<input name='{\"vp\":\"work\",\"x\":\"' value='\"}'></form>"
            "<script>document.getElementById('x').submit()</script>") % (URL, DEV)
    d.get(form)
    body = wait(d, lambda: d.find_element(By.TAG_NAME, "body").text if "error" in d.find_element(By.TAG_NAME, "body").text else None)
    ok("a cross-site form POST with the admin's certificate is refused", body and "X-Cells-CSRF" in body, repr(body))
    q = subprocess.run(["cells-mdm", "--json", "command", "list", DEV], capture_output=True, text=True, check=True)
    ok("... and queued nothing", not any(e["what"].startswith("wipe") for e in json.loads(q.stdout)))


def run_admin():
    d = browser("admin")
    try:
        hostile_pages(d)
        login(d, "admin")
        shot(d, "console-devices.png")
        device_page(d)
        v0 = text(d, "#policy-version")
        c0 = text(d, "#compliance")
        row = wait(d, lambda: text(d, '#vps-reported tr[data-vp="work"] .vp-state') or None)
        ok("admin: the device page lists the VP the device reports (work, stopped)", row == "stopped", repr(row))
        ok("admin: the device page offers policy push, lock and wipe",
           all(exists(d, c) for c in ("#policy-json", "#btn-lock", "#btn-wipe")))
        # a policy that does not validate: the server's reason, nothing queued
        ta = d.find_element(By.ID, "policy-json")
        ta.send_keys('{"version": "seven"}')
        d.find_element(By.ID, "btn-policy").click()
        msg = wait(d, lambda: text(d, "#policy-msg") or None)
        ok("admin: an invalid policy is refused with the server's reason", msg and msg.startswith("refused:"), repr(msg))
        pol = json.load(open(POLICY))
        ta.clear()
        d.execute_script("document.getElementById('policy-json').value = arguments[0]", json.dumps(pol, indent=1))
        d.find_element(By.ID, "btn-policy").click()
        msg = wait(d, lambda: text(d, "#policy-msg") if "queued" in text(d, "#policy-msg") else None)
        ok("admin: policy push queued", bool(msg), text(d, "#policy-msg"))
        qid = msg.split(" — ")[-1].strip() if msg else ""
        acked = wait(d, lambda: "acknowledged" in text(d, 'tr[data-id="%s"] .state' % qid), 40)
        ok("admin: the device's acknowledgement shows in the queue", bool(acked))
        v1 = wait(d, lambda: text(d, "#policy-version") if text(d, "#policy-version") == str(pol["version"]) else None, 30)
        ok("admin: the device reports the new policy version (%s -> %s)" % (v0, v1), v1 == str(pol["version"]))
        c1 = wait(d, lambda: text(d, "#compliance") if text(d, "#compliance") != c0 else None, 20)
        ok("admin: the device's compliance changes with the policy (%s -> %s)" % (c0, c1), bool(c1))
        # wipe with its confirmation: nothing happens before the VP name is typed
        Select(d.find_element(By.ID, "vp-select")).select_by_value("work")
        d.find_element(By.ID, "btn-wipe").click()
        ok("admin: a wipe asks for confirmation", bool(wait(d, lambda: exists(d, "#confirm-input"))))
        shot(d, "console-wipe-confirm.png")
        d.find_element(By.ID, "confirm-yes").click()
        time.sleep(0.5)
        ok("admin: without the VP name typed nothing is sent", not text(d, "#action-msg") and exists(d, "#confirm"))
        d.find_element(By.ID, "confirm-input").send_keys("work")
        d.find_element(By.ID, "confirm-yes").click()
        msg = wait(d, lambda: text(d, "#action-msg") or None)
        ok("admin: wipe of work queued", msg and "queued wipe work" in msg, repr(msg))
        rec = wait(d, lambda: "verified" in text(d, 'tr[data-vp="work"] .verified') and
                   "NOT" not in text(d, 'tr[data-vp="work"] .verified'), 90)
        ok("admin: the verified wipe receipt of work shows", bool(rec), text(d, "#receipts"))
        shot(d, "console-device-wiped.png")
        d.get(URL + "/#/admin-audit")
        wait(d, lambda: exists(d, "#admin-audit-table"))
        chain = wait(d, lambda: text(d, "#chain") or None)
        ok("admin: the admin audit log verifies", chain and "chain verifies" in chain, repr(chain))
        ok("admin: no Content Security Policy violation on the pages", not csp_errors(d), repr(csp_errors(d))[:300])
    finally:
        d.quit()


def run_helpdesk():
    d = browser("helpdesk")
    try:
        login(d, "helpdesk")
        device_page(d)
        ok("helpdesk: lock and unlock are offered", exists(d, "#btn-lock") and exists(d, "#btn-unlock"))
        ok("helpdesk: wipe and policy push are not offered", not exists(d, "#btn-wipe") and not exists(d, "#policy-json"))
        Select(d.find_element(By.ID, "vp-select")).select_by_value("work")
        d.find_element(By.ID, "btn-lock").click()
        wait(d, lambda: exists(d, "#confirm-yes"))
        d.find_element(By.ID, "confirm-yes").click()
        msg = wait(d, lambda: text(d, "#action-msg") or None)
        ok("helpdesk: lock of work queued", msg and "queued lock work" in msg, repr(msg))
        st, why = api_wipe_in_page(d)
        ok("helpdesk: a wipe from the page anyway is refused 403", st == 403, "%s %s" % (st, why))
        d.get(URL + "/#/token")
        wait(d, lambda: exists(d, "#btn-token"))
        d.find_element(By.ID, "btn-token").click()
        tok = wait(d, lambda: text(d, "#token-out") or None)
        ok("helpdesk: makes an enrollment token", tok and "expires" in tok, repr(tok))
    finally:
        d.quit()


def run_auditor():
    # the device uploads its audit log (the wipe's records included)
    subprocess.run(["cells-mdm", "audit", "request", DEV], check=True, stdout=subprocess.DEVNULL)
    d = browser("auditor")
    try:
        login(d, "auditor")
        ok("auditor: no enrollment tokens offered", not d.find_element(By.ID, "nav-token").is_displayed())
        device_page(d)
        wait(d, lambda: exists(d, 'tr[data-vp="work"]'))
        ok("auditor: no action and no policy push offered", not exists(d, "#actions") and not exists(d, "#policy-json"))
        ok("auditor: sees the verified receipt", "verified" in text(d, 'tr[data-vp="work"] .verified'))
        st, why = api_wipe_in_page(d)
        ok("auditor: a wipe is refused 403 with a reason", st == 403 and bool(why), "%s %s" % (st, why))
        # the signed image pushed before the browser started: its delivery to the device
        d.get(URL + "/#/images")
        sel = 'section[data-image="base@1"] tr[data-device="%s"] .state' % DEV
        st = wait(d, lambda: text(d, sel) if text(d, sel) == "done" else None, 60)
        ok("auditor: the images page shows base@1 delivered to the device (done)", st == "done", repr(text(d, sel)))
        shot(d, "console-images.png")
        d.get(URL + "/#/audit/" + DEV)
        n = wait(d, lambda: text(d, "#audit-count") if text(d, "#audit-count") not in ("", "0 records") else None, 30)
        ok("auditor: the uploaded audit log is listed", bool(n), repr(n))
        f = d.find_element(By.CSS_SELECTOR, '#audit-filters input[name="type"]')
        f.send_keys("wipe")
        d.find_element(By.ID, "btn-search").click()
        time.sleep(1)
        events = [e.text for e in d.find_elements(By.CSS_SELECTOR, "#audit-table tbody td:nth-child(5)")]
        ok("auditor: filter by event type", events and all(e.startswith("wipe") for e in events), repr(events[:5]))
        href = d.find_element(By.ID, "export-csv").get_attribute("href")
        csv = d.execute_async_script("""
            const done = arguments[arguments.length - 1];
            fetch(arguments[0]).then((r) => r.text()).then(done, (e) => done(String(e)));""", href)
        ok("auditor: CSV export of the filtered records", csv.startswith('"seq","time_us"') and
           len(csv.strip().split("\n")) == len(events) + 1, repr(csv[:80]))
        shot(d, "console-audit.png")
        d.get(URL + "/#/admin-audit")
        wait(d, lambda: exists(d, "#admin-audit-table"))
        chain = wait(d, lambda: text(d, "#chain") or None)
        ok("auditor: reads and verifies the admin audit log", chain and "chain verifies" in chain, repr(chain))
        rows = text(d, "#admin-audit-table")
        ok("auditor: it records the refused wipe", "the-auditor" in rows and "refused 403" in rows)
        shot(d, "console-admin-audit.png")
        ok("auditor: no Content Security Policy violation on the pages", not csp_errors(d))
    finally:
        d.quit()


run_admin()
run_helpdesk()
run_auditor()
sys.exit(1 if FAILED else 0)
