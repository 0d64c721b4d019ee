#!/usr/bin/env bash
# cells-mdm's command line (common/cmdtab.h, the dispatcher cellctl uses too): help,
# usage errors and exit codes; DEVICE|--all targets (mdm_targets): --all with no enrolled
# device queues nothing, an unknown device is refused and queues nothing.
. "$CELLS_SRC/tests/lib.sh"
export CELLS_MDM_STATE_DIR="$T/mdm"
check "init" cells-mdm init
check "--help lists the commands" bash -c "cells-mdm --help | grep -q '^  keys rotate-root'"
check "a command's --help" bash -c "cells-mdm policy push --help | grep -q 'Usage: cells-mdm policy push DEVICE|--all'"
check_fails "an unknown command" "unknown command 'frobnicate'" cells-mdm frobnicate
cells-mdm wipe >/dev/null 2>&1
check_eq "a usage error exits 2" 2 "$?"
check_fails "wrong arguments: the usage line" "usage: cells-mdm wipe DEVICE VP" cells-mdm wipe
cells-mdm policy example >"$T/p.json"
queued() { cells-mdm --json command list | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }
check "policy push --all with no enrolled device" bash -c "cells-mdm policy push --all '$T/p.json' | grep -q 'nothing queued'"
check "keys push --all with no enrolled device" cells-mdm keys push --all
check_fails "policy push to an unknown device" "no such enrolled device" cells-mdm policy push 0123456789abcdef "$T/p.json"
check_fails "keys push to an unknown device" "no such enrolled device" cells-mdm keys push 0123456789abcdef
check_eq "nothing was queued (no entry for a device named --all)" 0 "$(queued)"
finish
