"""tel_policy.py RUN_DIR SIM_DIR - after tel_scenario.py (work is in the foreground) and a
policy where work may not receive or place calls and personal's calls do not switch the
foreground: the proxy follows the policy. Prints "ok - ..." / "not ok - ..."."""
import json, os, subprocess, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tel_vp import Vp, sim

run, simdir = sys.argv[1], sys.argv[2]
fails = 0


def check(desc, cond, extra=""):
    global fails
    print(("ok - " if cond else "not ok - ") + desc + ("" if cond else "  [%s]" % extra), flush=True)
    fails += not cond


def status():
    return json.loads(subprocess.check_output(["cellctl", "--json", "tel", "status"]))


# work and personal are real running VPs: their modems, opened from the host through
# /proc/PID/root (tel_proxy.sh sets TEL_WORK / TEL_PERSONAL)
work, pers = Vp(os.environ["TEL_WORK"]), Vp(os.environ["TEL_PERSONAL"])
for v in (work, pers):
    v.cmd("ATE0")
    v.cmd("AT+CLIP=1")
check("work is in the foreground", status()["foreground"] == "work", status())
rep = sim(simdir, "call +15550101 +15557770000")
check("a call to work (policy: no incoming) is rejected: nobody rings",
      work.lines(1) == [] and pers.lines(0.2) == [], rep)
ok = False
for _ in range(40):
    if sim(simdir, "state") == "ok idle":
        ok = True
        break
    time.sleep(0.05)
check("the proxy hung the rejected call up", ok)
sim(simdir, "call +15550102 +15558880000")
got = pers.lines(3, lambda l: l.startswith("+CLIP"))
check("personal rings", "RING" in got, got)
check("personal's call does not take the foreground (policy)", status()["foreground"] == "work", status())
pers.cmd("ATH")
r = work.cmd("ATD+15553334444;")
check("foreground work may not dial (policy: no outgoing)", r == ["ERROR"], r)
sys.exit(1 if fails else 0)
