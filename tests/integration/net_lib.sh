# net_lib.sh - helpers of the hostile-network-process tests (after mgmt_lib.sh).
# relay_setup: $T/relay (world-writable) with a copy of cellsd-net and of net_relay.py
# (and pbwire.py, which it imports)
# that the helper's uid can execute even when the build lives under a 0700 directory.
relay_setup() {
	chmod 711 "$T"
	mkdir -p "$T/relay" && chmod 777 "$T/relay"
	if [ ! -e "$T/relay/cellsd-net" ]; then
		cp "$CELLS_BUILD/agent/cellsd-net" "$T/relay/cellsd-net"
		chmod 755 "$T/relay/cellsd-net"
	fi
	sed -e "s|@DIR@|$T/relay|" -e "s|@NET@|$T/relay/cellsd-net|" -e "s|@DEV@|${DEV:-}|" \
		"$CELLS_SRC/tests/integration/net_relay.py" >"$T/relay/net_relay.py"
	chmod 755 "$T/relay/net_relay.py"
	install -m 644 "$CELLS_SRC/tests/integration/pbwire.py" "$T/relay/pbwire.py"
	[ -e "$T/relay/mode" ] || echo relay >"$T/relay/mode"
}
relay_mode() { echo "$1" >"$T/relay/mode"; }
# ping_ms N: N `cellctl ping` wall times in ms, one a line
ping_ms() {
	local i s e
	for i in $(seq 1 "$1"); do
		s=$(date +%s%N)
		cellctl ping >/dev/null 2>&1 || echo 99999
		e=$(date +%s%N)
		echo $(((e - s) / 1000000))
	done
}
# pct P < numbers: the P-th percentile
pct() { sort -n | awk -v p="$1" '{a[NR]=$1} END {i=int((NR*p+99)/100); if(i<1)i=1; print a[i]}'; }
rows() { sqlite3 "$CELLS_STATE/state.db" "select count(*) from $1"; }
audit_rows() { sqlite3 "$CELLS_STATE/audit.db" "select count(*) from audit"; }
export -f rows audit_rows
