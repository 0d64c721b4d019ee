#!/usr/bin/env bash
# The auditor's command lines: cellctl audit query filters and formats, verify and
# export; cells-mdm audit DEVICE with the same filters over imported uploads.
. "$CELLS_SRC/tests/lib.sh"
need_root
TOOL="$CELLS_BUILD/tests/integration/audit_tool"
export CELLS_MDM_STATE_DIR="$T/mdm"
mkdir -p "$CELLS_STATE"
"$TOOL" bulk "$CELLS_STATE/audit.db" 25 >/dev/null
start_cellsd
rows() { "$@" | tail -n +2 | grep -c . ; }
check_eq "query --type test --limit 5: five rows" 5 "$(rows cellctl audit query --type test --limit 5)"
check_eq "query --vp work: the 25 bulk records" 25 "$(rows cellctl audit query --vp work --limit 1000)"
check_eq "query --outcome refused: none" 0 "$(rows cellctl audit query --outcome refused)"
check_eq "query --until 2000-01-01: none" 0 "$(rows cellctl audit query --until 2000-01-01)"
check_eq "query --since 1d --type agent: the start" 1 "$(rows cellctl audit query --since 1d --type agent)"
check_eq "query --grep '\"i\":7'" 1 "$(rows cellctl audit query --grep '"i":7')"
check_eq "--csv header" "seq,time,vp,actor,event,outcome,details" "$(cellctl audit query --csv | head -n 1)"
check "--csv quotes the JSON details" grep -q '"{""i"":0}"' <(cellctl audit query --csv --vp work --limit 100)
check "--json is a document with records" bash -c "cellctl --json audit query --limit 3 | python3 -c 'import json,sys; d=json.load(sys.stdin); assert len(d[\"records\"])==3 and \"details\" in d[\"records\"][0]'"
check_fails "a bad time is refused" "bad time" cellctl audit query --since yesterday-ish
check_fails "a bad limit is refused" "limit" cellctl audit query --limit 0
check "query --help" cellctl audit query --help
check_fails "export to an unwritable place: clear error" "No such file" cellctl audit export "$T/nope/x.bundle"
check "export" cellctl audit export "$T/a.bundle"
check "verify --json says ok" bash -c "cellctl --json audit verify | grep -q '\"ok\":true'"
DEV=$(cellctl device id)
check "cells-mdm audit import" cells-mdm audit import "$T/a.bundle"
check_eq "cells-mdm audit DEV --type test --limit 4" 4 "$(rows cells-mdm audit "$DEV" --type test --limit 4)"
check_eq "cells-mdm audit DEV --vp work" 25 "$(rows cells-mdm audit "$DEV" --vp work --limit 1000)"
check_eq "cells-mdm audit DEV --csv header" "seq,time_us,vp,actor,event,outcome,details" "$(cells-mdm audit "$DEV" --csv | head -n 1)"
check "cells-mdm --json audit verify DEV" bash -c "cells-mdm --json audit verify $DEV | grep -q '\"ok\":true'"
check_fails "cells-mdm audit verify of an unknown device" "no audit uploads" cells-mdm audit verify 0123456789abcdef0123456789abcdef
stop_cellsd
finish
