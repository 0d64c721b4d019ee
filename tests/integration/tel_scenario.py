"""tel_scenario.py RUN_DIR SIM_DIR - the telephony proxy seen from two VPs (host level:
the test opens the VP-side pty slaves directly). Prints "ok - ..." / "not ok - ..."."""
import json, os, subprocess, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tel_vp import Vp, sim

run, simdir = sys.argv[1], sys.argv[2]
WORK, PERS, GW = "+15550101", "+15550102", "+15550000"
fails = 0


def check(desc, cond, extra=""):
    global fails
    print(("ok - " if cond else "not ok - ") + desc + ("" if cond else "  [%s]" % extra), flush=True)
    fails += not cond


def status():
    return json.loads(subprocess.check_output(["cellctl", "--json", "tel", "status"]))


def modem_log_count(cmd):
    with open(os.path.join(simdir, "modem.log")) as f:
        return sum(1 for l in f if l.strip() == cmd)


def wait(pred, secs=5):
    end = time.monotonic() + secs
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


check("modem connected and SIM recorded", wait(lambda: status()["modem"]["sim_recorded"]), status())
# work and personal are real running VPs: their modems, opened from the host through
# /proc/PID/root (tel_proxy.sh sets TEL_WORK / TEL_PERSONAL)
work, pers = Vp(os.environ["TEL_WORK"]), Vp(os.environ["TEL_PERSONAL"])
for v in (work, pers):
    v.cmd("ATE0")
r = work.cmd("AT")
check("AT -> OK", r == ["OK"], r)

# --- SIM initialisation reaches the real modem once, whatever the number of VPs
rw, rp = work.cmd("AT+CIMI"), pers.cmd("AT+CIMI")
check("both VPs read the IMSI", rw == rp and rw[-1] == "OK" and rw[0].isdigit(), (rw, rp))
r = pers.cmd("AT+CPIN?")
check("AT+CPIN? replayed", r == ["+CPIN: READY", "OK"], r)
r = work.cmd("AT+CCID")
check("AT+CCID replayed", r[-1] == "OK" and r[0].startswith("+CCID:"), r)
for v in (work, pers):
    v.cmd("AT+CIMI")
    v.cmd("AT+CPIN?")
extras = [Vp(run + "/tel/extra%d.pty" % i) for i in range(3, 9)]
answers = [v.cmd("AT+CIMI") for v in extras]
check("six more VPs read the IMSI (echo on: ATE1 default)", all(a == ["AT+CIMI"] + rw for a in answers), answers)
check("real modem saw AT+CIMI once (8 VPs)", modem_log_count("AT+CIMI") == 1, modem_log_count("AT+CIMI"))
check("real modem saw AT+CPIN? once", modem_log_count("AT+CPIN?") == 1, modem_log_count("AT+CPIN?"))
check("real modem saw AT+CCID once", modem_log_count("AT+CCID") == 1, modem_log_count("AT+CCID"))
r = pers.cmd("AT+CSQ")
check("AT+CSQ forwarded to the real modem", r == ["+CSQ: 24,99", "OK"], r)
r = work.cmd("AT+CREG?")
check("AT+CREG? forwarded", r == ["+CREG: 0,1", "OK"], r)
r = work.cmd("AT+COPS?")
check("AT+COPS? forwarded", r[-1] == "OK" and r[0].startswith("+COPS:"), r)
for v in (work, pers):
    v.cmd("AT+CLIP=1")

# --- incoming call to the work number: only work rings, caller ID without the digit
check("personal (started first) is in the foreground before the call", status()["foreground"] == "personal", status())
rep = sim(simdir, "call %s +15557770000" % WORK)
check("gateway appends work's digit", rep.endswith("+155577700001"), rep)
got = work.lines(3, lambda l: l.startswith("+CLIP"))
check("work VP rings", "RING" in got, got)
check("work sees the caller ID without the digit", '+CLIP: "+15557770000",145' in got, got)
check("personal VP does not ring", pers.lines(0.5) == [])
check("the call brings work to the foreground", status()["foreground"] == "work", status())
r = work.cmd("AT+CLCC")
check("AT+CLCC shows the incoming call", r[0] == '+CLCC: 1,1,4,0,0,"+15557770000",145', r)
r = pers.cmd("ATA")
check("personal cannot answer work's call", r == ["ERROR"], r)
r = work.cmd("ATA")
check("work answers", r == ["OK"], r)
sim(simdir, "hangup")
got = work.lines(3, lambda l: l == "NO CARRIER")
check("caller hangs up: work gets NO CARRIER", "NO CARRIER" in got, got)

# --- incoming call to the personal number
sim(simdir, "call %s +15558880000" % PERS)
got = pers.lines(3, lambda l: l.startswith("+CLIP"))
check("personal VP rings", "RING" in got and '+CLIP: "+15558880000",145' in got, got)
check("work VP does not ring", work.lines(0.5) == [])
check("personal is now in the foreground", status()["foreground"] == "personal")
r = pers.cmd("ATH")
check("personal hangs up", r == ["OK"], r)
check("real modem call ended", wait(lambda: sim(simdir, "state") == "ok idle"))

# --- outgoing: only the foreground VP may dial; the callee sees the VP's number
r = work.cmd("ATD+15553334444;")
check("background VP's ATD is refused", r == ["ERROR"], r)
r = pers.cmd("ATD+15553334444;", 10)
check("foreground VP's ATD succeeds", r == ["OK"], r)
calls = open(os.path.join(simdir, "calls.log")).read()
check("gateway got DTMF; callee sees personal's number", "from=%s to=+15553334444" % PERS in calls, calls)
check("real modem dialled the gateway", modem_log_count("ATD%s;" % GW) == 1)
r = pers.cmd("AT+CLCC")
check("AT+CLCC shows the outgoing call", r[0] == '+CLCC: 1,0,0,0,0,"+15553334444",145', r)
r = pers.cmd("AT+VTS=5")
check("AT+VTS in an active call", r == ["OK"], r)
r = work.cmd("AT+VTS=5")
check("AT+VTS without a call is refused", r == ["ERROR"], r)
r = pers.cmd("AT+CHUP")
check("AT+CHUP ends the call", r == ["OK"], r)

# --- bad input from one VP: ERROR for it, the other is unaffected
for bad, what in ((b"AT+FOO\r", "unknown command"), (b"A" * 300 + b"\r", "overlong line"),
                  (b"\x00\xffAT\x01\r", "binary input"), (b"ATD12345\r", "data call"),
                  (b"AT+CLIP=1;+CSQ\r", "chained commands")):
    work.send(bad)
    r = work.lines(2, lambda l: l in ("OK", "ERROR"))
    check("%s -> ERROR" % what, r == ["ERROR"], r)
r = pers.cmd("AT+CSQ")
check("the other VP is unaffected", r == ["+CSQ: 24,99", "OK"], r)
r = work.cmd("AT")
check("the offending VP still works after bad input", r == ["OK"], r)
work.send(os.urandom(4096))
work.send(b"\r")
work.lines(0.5)
r = work.cmd("AT")
check("4 KiB of random bytes: still answers", r == ["OK"], r)

work.send("AT+CSQ\r" * 200)
got = work.lines(5, lambda l: False)
r = pers.cmd("AT+CSQ")
check("a VP flooding the modem queue: the other VP still served", r == ["+CSQ: 24,99", "OK"], r)
check("the flood is bounded (some ERROR), all answered",
      got.count("ERROR") > 0 and got.count("OK") + got.count("ERROR") == 200, (got.count("OK"), got.count("ERROR")))

# --- the real modem vanishes and returns
sim(simdir, "vanish")
check("proxy notices the modem is gone", wait(lambda: not status()["modem"]["connected"]))
r = pers.cmd("AT+CSQ")
check("without a modem: AT+CSQ -> ERROR", r == ["ERROR"], r)
r = pers.cmd("AT+CIMI")
check("without a modem: SIM data still replayed", r[-1] == "OK", r)
sim(simdir, "return")
check("proxy reconnects", wait(lambda: status()["modem"]["connected"] and status()["modem"]["connects"] == 2, 5))
r = pers.cmd("AT+CSQ")
check("after recovery: AT+CSQ works", r == ["+CSQ: 24,99", "OK"], r)
sim(simdir, "call %s +15557770000" % WORK)
got = work.lines(3, lambda l: l.startswith("+CLIP"))
check("after recovery: a call rings work", "RING" in got, got)
sim(simdir, "hangup")
work.lines(1, lambda l: l == "NO CARRIER")
check("SIM not re-initialised after recovery", modem_log_count("AT+CIMI") == 1, modem_log_count("AT+CIMI"))
sys.exit(1 if fails else 0)
