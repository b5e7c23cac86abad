#!/usr/bin/env bash
# test/bench/run.sh: side-by-side DNS benchmark of gslbd, gdnsd and Knot DNS.
#
# Every server answers the same generated zone on 127.0.0.1 (a free high
# port, never 53), pinned to one CPU with one worker; dnsperf runs pinned to
# another CPU. Two runs per server: as fast as dnsperf can go (QPS, server
# CPU%, QPS per busy core) and a fixed rate (server CPU% at BENCH_RATE qps).
# Two query mixes: "static" (plain authoritative answers, all three servers)
# and "gslb" (ECS queries from ten client networks for a geo and a weighted
# GSLB name: gslbd's gslb.yaml against gdnsd's geoip/weighted DYNA records).
# See test/bench/README.md for what the numbers mean.
#
# Usage (from the repository root; `make bench` does this after building
# bin/gslbd):   bash test/bench/run.sh
#
# Environment (all optional):
#   BIN                  directory holding gslbd            (./bin)
#   BENCH_DURATION       seconds per measured run, >= 4     (10; DURATION also works)
#   BENCH_WARMUP         seconds of unmeasured warm-up      (2)
#   BENCH_RATE           qps of the fixed-rate run          (20000)
#   BENCH_OUTSTANDING    dnsperf -q, queries in flight      (100)
#   BENCH_PORT           first port to try                  (25353)
#   BENCH_SERVER_CPU     CPU the servers are pinned to      (1)
#   BENCH_CLIENT_CPU     CPU dnsperf is pinned to           (0)
#   BENCH_SERVERS        servers to run, in order           ("gslbd gdnsd knot")
#   BENCH_MIXES          query mixes to run, in order       ("static gslb")
#   BENCH_ALLOW_MISSING  1: skip a server whose binary is missing instead of failing
#   BENCH_OUT            summary file                       (bench-results.txt)
#
# Exit status: non-zero only when the benchmark could not be set up or run
# (missing tools, a server that does not start or answers wrongly). Slow
# results never fail the script.

set -euo pipefail

export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
export LC_ALL=C

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/../.." && pwd)

BIN=${BIN:-./bin}
DURATION=${BENCH_DURATION:-${DURATION:-10}}
WARMUP=${BENCH_WARMUP:-2}
RATE=${BENCH_RATE:-20000}
OUTSTANDING=${BENCH_OUTSTANDING:-100}
BASE_PORT=${BENCH_PORT:-25353}
SERVER_CPU=${BENCH_SERVER_CPU:-1}
CLIENT_CPU=${BENCH_CLIENT_CPU:-0}
ALLOW_MISSING=${BENCH_ALLOW_MISSING:-0}
BENCH_OUT=${BENCH_OUT:-bench-results.txt}
read -r -a SERVERS <<<"${BENCH_SERVERS:-gslbd gdnsd knot}"
read -r -a WANT_MIXES <<<"${BENCH_MIXES:-static gslb}"

# dnsperf reply timeout (s). Also bounds how long dnsperf lingers after -l.
DNSPERF_TIMEOUT=2
# Extra dnsperf arguments for the mix being run (run_mix callers may set it,
# e.g. an ECS option with -E); reset by run_mix when it returns.
MIX_DNSPERF_ARGS=()
# Number of queries in the mix's query file, for the summary; empty = its
# line count (set it for a binary -B file). Reset by run_mix.
MIX_QUERY_COUNT=""

# --- state -----------------------------------------------------------------
WORK=""             # temp dir, removed on exit
PIDS=()             # processes this script started and has not reaped yet
CREATED_POLICY_RC=0 # 1 while a policy-rc.d we created is in place
NEXT_PORT=$BASE_PORT
PICKED_PORT=""
SERVER_PID=""
CLK_TCK=100
GSLBD=""
GSLBCTL=""
MIXES=()
declare -A RES=() # "mix|server|key" -> value

# --- small helpers -----------------------------------------------------------
log() { printf '%s\n' "$*"; }
warn() { printf 'bench: warning: %s\n' "$*" >&2; }
die() {
	printf 'bench: FATAL: %s\n' "$*" >&2
	exit 1
}

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

now_ns() { date +%s%N; }

# alive PID: the process exists and is not a zombie.
alive() {
	local st
	[[ -r /proc/$1/stat ]] || return 1
	st=$(sed -e 's/^.*) //' -e 's/ .*//' "/proc/$1/stat" 2>/dev/null) || return 1
	[[ -n $st && $st != Z ]]
}

# cpu_ticks PID: utime+stime of the whole process (all threads), in clock ticks.
cpu_ticks() {
	local s
	s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	s=${s##*) }
	# After "pid (comm) ", field 1 is the state; utime and stime are 12 and 13.
	awk '{ print $12 + $13 }' <<<"$s"
}

forget_pid() {
	local p keep=()
	for p in "${PIDS[@]}"; do
		[[ $p == "$1" ]] || keep+=("$p")
	done
	PIDS=("${keep[@]}")
}

# stop_pid PID: TERM, up to 5 s grace, then KILL; reaps it. Only ever called
# with PIDs this script started.
stop_pid() {
	local pid=$1 i
	if alive "$pid"; then
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 50; i++)); do
			alive "$pid" || break
			sleep 0.1
		done
		if alive "$pid"; then
			warn "PID $pid ignored SIGTERM for 5 s; sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	wait "$pid" 2>/dev/null || true
	forget_pid "$pid"
}

cleanup() {
	local rc=$? pid
	trap - EXIT INT TERM
	for pid in "${PIDS[@]}"; do
		stop_pid "$pid"
	done
	if ((CREATED_POLICY_RC)); then
		rm -f /usr/sbin/policy-rc.d
	fi
	if [[ -n $WORK && -d $WORK ]]; then
		rm -rf -- "$WORK"
	fi
	exit "$rc"
}

# --- setup: tools ------------------------------------------------------------
port53_listeners() {
	{
		ss -Hlnup 'sport = :53' 2>/dev/null || true
		ss -Hlntp 'sport = :53' 2>/dev/null || true
	} | sort
}

# install_packages PKG...: apt-get install without starting any service, then
# make sure the install did not leave a DNS daemon on port 53.
install_packages() {
	local before after pkg unit
	[[ $EUID -eq 0 ]] || die "missing packages: $*; run as root or install them: apt-get install -y $*"
	command -v apt-get >/dev/null || die "missing packages: $* and no apt-get on this machine"
	before=$(port53_listeners)
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		printf '#!/bin/sh\n# temporary, from test/bench/run.sh: start no services\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		CREATED_POLICY_RC=1
	fi
	log "bench: installing from Debian: $*"
	DEBIAN_FRONTEND=noninteractive apt-get update -qq || warn "apt-get update failed; trying the install anyway"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" ||
		die "apt-get install $* failed"
	if ((CREATED_POLICY_RC)); then
		rm -f /usr/sbin/policy-rc.d
		CREATED_POLICY_RC=0
	fi
	# The packages' units get enabled even though policy-rc.d kept them from
	# starting: disable them so the host does not serve :53 after a reboot.
	for pkg in "$@"; do
		case $pkg in
		gdnsd) unit=gdnsd.service ;;
		knot) unit=knot.service ;;
		*) continue ;;
		esac
		if command -v systemctl >/dev/null; then
			if [[ -d /run/systemd/system ]]; then
				systemctl disable --now --quiet "$unit" 2>/dev/null || true
			else
				systemctl disable --quiet "$unit" 2>/dev/null || true
			fi
		fi
	done
	after=$(port53_listeners)
	if [[ -n $(comm -13 <(printf '%s\n' "$before") <(printf '%s\n' "$after")) ]]; then
		die "a listener on port 53 appeared during the install; stop it before benchmarking:
$after"
	fi
}

ensure_tools() {
	local -a pairs=(dnsperf:dnsperf dig:dnsutils ss:iproute2 taskset:util-linux getconf:libc-bin)
	local -a missing=() server_missing=()
	local pair cmd pkg s
	for s in "${SERVERS[@]}"; do
		case $s in
		gdnsd) server_missing+=(gdnsd:gdnsd) ;;
		knot) server_missing+=(knotd:knot) ;;
		esac
	done
	for pair in "${pairs[@]}"; do
		cmd=${pair%%:*} pkg=${pair#*:}
		command -v "$cmd" >/dev/null || missing+=("$pkg")
	done
	for pair in "${server_missing[@]}"; do
		cmd=${pair%%:*} pkg=${pair#*:}
		if ! command -v "$cmd" >/dev/null; then
			# Without root a missing reference server can only be skipped.
			if [[ $EUID -ne 0 && $ALLOW_MISSING == 1 ]]; then
				warn "$cmd is missing and this is not root; it will be skipped"
			else
				missing+=("$pkg")
			fi
		fi
	done
	if ((${#missing[@]})); then
		install_packages "${missing[@]}"
	fi
	command -v go >/dev/null || die "go is not on PATH (needed to generate the data set)"
	CLK_TCK=$(getconf CLK_TCK)
	if ! is_uint "$CLK_TCK" || ((CLK_TCK == 0)); then
		die "getconf CLK_TCK gave '$CLK_TCK'"
	fi
}

check_settings() {
	local v
	for v in DURATION WARMUP RATE OUTSTANDING BASE_PORT SERVER_CPU CLIENT_CPU; do
		is_uint "${!v}" || die "$v must be a non-negative integer, got '${!v}'"
	done
	((DURATION >= 4)) || die "BENCH_DURATION must be at least 4 s (got $DURATION)"
	((RATE > 0 && OUTSTANDING > 0)) || die "BENCH_RATE and BENCH_OUTSTANDING must be positive"
	((BASE_PORT >= 1024 && BASE_PORT < 65000)) || die "BENCH_PORT must be in 1024..64999 (never 53)"
	((SERVER_CPU != CLIENT_CPU)) || die "BENCH_SERVER_CPU and BENCH_CLIENT_CPU must differ"
	((${#SERVERS[@]})) || die "BENCH_SERVERS is empty"
	for v in "${SERVERS[@]}"; do
		case $v in
		gslbd | gdnsd | knot) ;;
		*) die "unknown server '$v' in BENCH_SERVERS (gslbd, gdnsd, knot)" ;;
		esac
	done
	((${#WANT_MIXES[@]})) || die "BENCH_MIXES is empty"
	for v in "${WANT_MIXES[@]}"; do
		case $v in
		static | gslb) ;;
		*) die "unknown mix '$v' in BENCH_MIXES (static, gslb)" ;;
		esac
	done
	if ! taskset -c "$SERVER_CPU" true 2>/dev/null || ! taskset -c "$CLIENT_CPU" true 2>/dev/null; then
		die "cannot pin to CPUs $SERVER_CPU and $CLIENT_CPU (need two usable CPUs; set BENCH_SERVER_CPU/BENCH_CLIENT_CPU)"
	fi
	[[ $BENCH_OUT == /* ]] || BENCH_OUT="$PWD/$BENCH_OUT"
	GSLBD="$BIN/gslbd"
	[[ $GSLBD == /* ]] || GSLBD="$PWD/$GSLBD"
	GSLBCTL="$BIN/gslbctl"
	[[ $GSLBCTL == /* ]] || GSLBCTL="$PWD/$GSLBCTL"
}

# server_binary NAME: path of the server's executable, empty when missing.
server_binary() {
	case $1 in
	gslbd) if [[ -x $GSLBD ]]; then printf '%s\n' "$GSLBD"; fi ;;
	gdnsd) command -v gdnsd || true ;;
	knot) command -v knotd || true ;;
	esac
}

# Fail now (or announce the skip) rather than after minutes of measuring.
preflight_servers() {
	local s
	for s in "${SERVERS[@]}"; do
		if [[ -z $(server_binary "$s") ]]; then
			if [[ $ALLOW_MISSING == 1 ]]; then
				warn "$s: binary not found; SKIPPED (BENCH_ALLOW_MISSING=1)"
			elif [[ $s == gslbd ]]; then
				die "gslbd not found at $GSLBD (build it with 'make build', set BIN, or BENCH_ALLOW_MISSING=1 to skip it)"
			else
				die "$s not found (BENCH_ALLOW_MISSING=1 skips it)"
			fi
		fi
	done
}

# --- servers -----------------------------------------------------------------
port_busy() {
	[[ -n $(ss -Hanu "sport = :$1" 2>/dev/null) || -n $(ss -Hant "sport = :$1" 2>/dev/null) ]]
}

# pick_port: sets PICKED_PORT to a free UDP+TCP port >= BASE_PORT, never
# reusing one this run has handed out.
pick_port() {
	local tries p
	for ((tries = 0; tries < 500; tries++)); do
		p=$NEXT_PORT
		NEXT_PORT=$((NEXT_PORT + 1))
		((p >= 1024 && p <= 65535)) || break
		if ! port_busy "$p"; then
			PICKED_PORT=$p
			return 0
		fi
	done
	die "no free port found from $BASE_PORT upwards"
}

# zone_files DIR: the *.zone files of a zone directory, one per line.
zone_files() {
	local f found=0
	for f in "$1"/*.zone; do
		[[ -f $f ]] || continue
		printf '%s\n' "$f"
		found=1
	done
	((found)) || die "no *.zone files in $1"
}

# server_zone_dir SERVER ZONE_DIR: ZONE_DIR/SERVER when a mix ships per-server
# zone files (e.g. gdnsd DYNA records), else ZONE_DIR.
server_zone_dir() {
	if [[ -d $2/$1 ]]; then printf '%s\n' "$2/$1"; else printf '%s\n' "$2"; fi
}

write_gdnsd_config() { # ZONE_DIR PORT DIR
	local zdir=$1 port=$2 dir=$3 f
	mkdir -p "$dir/zones" "$dir/run" "$dir/state"
	while IFS= read -r f; do
		cp -- "$f" "$dir/zones/$(basename -- "$f" .zone)"
	done < <(zone_files "$zdir")
	{
		printf 'options => {\n'
		printf '  listen => [ 127.0.0.1:%s ]\n' "$port"
		printf '  udp_threads => 1\n  tcp_threads => 1\n'
		printf '  run_dir => "%s"\n  state_dir => "%s"\n' "$dir/run" "$dir/state"
		printf '}\n'
		# A mix may add plugin definitions (geoip maps and resources, ...).
		if [[ -f $zdir/gdnsd-config.inc ]]; then cat -- "$zdir/gdnsd-config.inc"; fi
	} >"$dir/config"
}

write_knot_config() { # ZONE_DIR PORT DIR
	local zdir=$1 port=$2 dir=$3 f
	mkdir -p "$dir/zones" "$dir/run" "$dir/db"
	cat >"$dir/knot.conf" <<EOF
server:
    rundir: "$dir/run"
    listen: 127.0.0.1@$port
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1

log:
  - target: stderr
    any: warning

database:
    storage: "$dir/db"

template:
  - id: default
    storage: "$dir/zones"
    file: "%s.zone"
    zonefile-sync: -1
    journal-content: none

zone:
EOF
	while IFS= read -r f; do
		cp -- "$f" "$dir/zones/"
		printf '  - domain: %s.\n' "$(basename -- "$f" .zone)" >>"$dir/knot.conf"
	done < <(zone_files "$zdir")
}

# start_server NAME ZONE_DIR PORT DIR: starts the server in the background,
# pinned to SERVER_CPU; sets SERVER_PID. Output goes to DIR/NAME.log.
start_server() {
	local name=$1 zdir=$2 port=$3 dir=$4
	local logf="$dir/$name.log"
	mkdir -p "$dir"
	case $name in
	gslbd)
		# A mix may give gslbd a config file (gslb: {geoip: ...}); *.yaml
		# files in a zones directory are never read as zones.
		local -a conf=()
		if [[ -f $zdir/gslbd-config.yaml ]]; then conf=(-config "$zdir/gslbd-config.yaml"); fi
		GOMAXPROCS=1 taskset -c "$SERVER_CPU" "$GSLBD" "${conf[@]}" -listen "127.0.0.1:$port" -zones "$zdir" \
			-workers 1 -metrics "" >"$logf" 2>&1 &
		;;
	gdnsd)
		write_gdnsd_config "$zdir" "$port" "$dir/gdnsd"
		taskset -c "$SERVER_CPU" gdnsd -c "$dir/gdnsd" start >"$logf" 2>&1 &
		;;
	knot)
		write_knot_config "$zdir" "$port" "$dir/knot"
		taskset -c "$SERVER_CPU" knotd -c "$dir/knot/knot.conf" >"$logf" 2>&1 &
		;;
	esac
	SERVER_PID=$!
	PIDS+=("$SERVER_PID")
}

server_log_tail() {
	if [[ -f $1 ]]; then
		printf -- '--- last lines of %s ---\n' "$1"
		tail -n 20 -- "$1"
	fi
}

# wait_ready NAME PID PORT ZONE LOG: bounded polling (100 x 0.1 s plus dig's
# own 1 s timeout) until the server answers the zone's SOA.
wait_ready() {
	local name=$1 pid=$2 port=$3 zone=$4 logf=$5 i out
	for ((i = 0; i < 100; i++)); do
		alive "$pid" || die "$name exited during startup
$(server_log_tail "$logf")"
		out=$(dig +time=1 +tries=1 +short -p "$port" @127.0.0.1 "$zone" SOA 2>/dev/null) || out=""
		if [[ -n $out ]]; then
			# The socket must belong to the process we measure.
			ss -Hlnup "sport = :$port" 2>/dev/null | grep -q "pid=$pid," ||
				die "$name: port $port answers but is not held by PID $pid
$(ss -Hlnup "sport = :$port" 2>/dev/null)"
			return 0
		fi
		sleep 0.1
	done
	die "$name did not answer $zone SOA on 127.0.0.1:$port within ~10 s
$(server_log_tail "$logf")"
}

# pin_all PID: pin every thread to SERVER_CPU and check it. Knot pins its
# UDP worker i to CPU i by itself, which would put it on the client's CPU.
pin_all() {
	local pid=$1 name=$2 t bad=""
	taskset -a -p -c "$SERVER_CPU" "$pid" >/dev/null || die "$name: taskset -a -p failed"
	for t in /proc/"$pid"/task/*; do
		[[ -r $t/status ]] || continue
		if ! grep -Eq "^Cpus_allowed_list:[[:space:]]+$SERVER_CPU\$" "$t/status"; then
			bad+=" ${t##*/}"
		fi
	done
	[[ -z $bad ]] || die "$name: threads not pinned to CPU $SERVER_CPU:$bad"
}

# --- verification ------------------------------------------------------------
q() { # PORT NAME TYPE [dig options...]
	local port=$1 name=$2 type=$3
	shift 3
	dig +time=2 +tries=2 +norecurse -p "$port" @127.0.0.1 "$@" "$name" "$type" 2>&1 || true
}

# expect_answer SERVER PORT NAME TYPE WANT [soft]: +short output must equal WANT.
expect_answer() {
	local server=$1 port=$2 name=$3 type=$4 want=$5 soft=${6:-}
	local got
	got=$(q "$port" "$name" "$type" +short)
	if [[ $got != "$want" ]]; then
		local msg="$server: $name $type answered '${got//$'\n'/ | }', want '${want//$'\n'/ | }'"
		if [[ -n $soft ]]; then
			warn "$msg (not in the query mix; measuring anyway)"
			return 0
		fi
		die "$msg
$(q "$port" "$name" "$type")"
	fi
}

expect_status() { # SERVER PORT NAME TYPE STATUS
	local out
	out=$(q "$2" "$3" "$4")
	grep -q "status: $5," <<<"$out" || die "$1: $3 $4: want status $5
$out"
}

expect_aa() { # SERVER PORT NAME TYPE
	local out
	out=$(q "$2" "$3" "$4")
	grep -Eq '^;; flags:[a-z ]* aa[ ;]' <<<"$out" || die "$1: $3 $4: answer lacks the AA flag
$out"
}

# verify_mix_static SERVER PORT: the answers the static mix depends on.
verify_mix_static() {
	local s=$1 p=$2 z=bench.example.
	expect_answer "$s" "$p" "h0042.$z" A 198.18.0.52
	expect_aa "$s" "$p" "h0042.$z" A
	expect_answer "$s" "$p" "h0999.$z" A 198.18.3.241
	expect_answer "$s" "$p" "a0007.$z" AAAA 2001:db8:0:1::107
	expect_status "$s" "$p" "nx-verify0.$z" A NXDOMAIN
	expect_aa "$s" "$p" "nx-verify0.$z" A
	expect_answer "$s" "$p" "$z" MX "10 mail.$z"
	expect_answer "$s" "$p" "$z" TXT '"v=spf1 mx -all"'
	expect_answer "$s" "$p" "$z" SOA "ns1.$z hostmaster.$z 2024060101 7200 1800 1209600 300"
	# In the zone but not in the query mix: a mismatch is only reported.
	expect_answer "$s" "$p" "anything.wild.$z" A 198.19.1.1 soft
	# gdnsd 3 does not chase in-zone CNAMEs, Knot does: check the CNAME only.
	expect_answer "$s" "$p" "www.$z" CNAME "h0000.$z" soft
}

# --- mix "gslb" ---------------------------------------------------------------
# Data from gen/geo: per-server zone directories, a GeoIP2-City mmdb, and
# networks.txt (CIDR, dnsperf -E value, country, continent, site, the
# site's addresses). Filled by prepare_mix_gslb.
GSLB_DIR=""
GSLB_NETS=()  # CIDRs
GSLB_WHERE=() # "GB/EU"
GSLB_SITE=()  # site geo.<zone> must answer with
GSLB_ADDRS=() # that site's addresses, sorted, comma-separated
GSLB_POOL=""  # every site's addresses (the pool wrr draws from), blank-separated

# sorted_set: stdin lines -> sorted, comma-separated.
sorted_set() { sort | paste -sd, -; }

# gslb_servers: the servers of BENCH_SERVERS that have GSLB (not Knot).
gslb_servers() {
	local s
	for s in "${SERVERS[@]}"; do
		case $s in gslbd | gdnsd) printf '%s\n' "$s" ;; esac
	done
}

prepare_mix_gslb() {
	local cidr _ecs country continent site addrs
	GSLB_DIR="$WORK/gslb"
	(cd "$REPO_ROOT" && go run ./test/bench/gen/geo -base "$WORK/static/zones/bench.example.zone" \
		-out "$GSLB_DIR" -count 1000) || die "generating the gslb data set failed"
	GSLB_NETS=() GSLB_WHERE=() GSLB_SITE=() GSLB_ADDRS=()
	while read -r cidr _ecs country continent site addrs; do
		[[ -n $cidr && $cidr != \#* ]] || continue
		GSLB_NETS+=("$cidr")
		GSLB_WHERE+=("$country/$continent")
		GSLB_SITE+=("$site")
		GSLB_ADDRS+=("$addrs")
	done <"$GSLB_DIR/networks.txt"
	((${#GSLB_NETS[@]} > 0)) || die "no client networks in $GSLB_DIR/networks.txt"
	GSLB_POOL=$(printf '%s\n' "${GSLB_ADDRS[@]}" | tr , '\n' | sort -u | paste -sd' ' -)
	# One dnsperf sends them all: queries.bin holds whole query messages,
	# each with its own ECS option (dnsperf -E would give one per run).
	MIX_DNSPERF_ARGS=(-B)
	MIX_QUERY_COUNT=$(grep -vc '^#' "$GSLB_DIR/queries.txt")
	log "bench: gslb data set in $GSLB_DIR ($MIX_QUERY_COUNT queries from ${#GSLB_NETS[@]} client networks)"
}

# check_gslb_offline: gslbctl check and explain on gslbd's directory, before
# any server starts: the config must load and every network must get its
# site from the chain.
check_gslb_offline() {
	local zdir="$GSLB_DIR/zones/gslbd" out got i
	if [[ ! -x $GSLBCTL ]]; then
		[[ $ALLOW_MISSING == 1 ]] || die "gslbctl not found at $GSLBCTL (build it with 'make build', or BENCH_ALLOW_MISSING=1)"
		warn "gslbctl not found at $GSLBCTL; skipping the offline check of the gslb config"
		return 0
	fi
	out=$("$GSLBCTL" check "$zdir" 2>&1) || die "gslbctl check $zdir failed:
$out"
	log "bench: gslbctl check: $out"
	for ((i = 0; i < ${#GSLB_NETS[@]}; i++)); do
		out=$("$GSLBCTL" explain --zones "$zdir" --geoip "$GSLB_DIR/GeoIP2-City.mmdb" --client 127.0.0.1 \
			--ecs "${GSLB_NETS[i]}" geo.bench.example 2>&1) || die "gslbctl explain failed for ${GSLB_NETS[i]}:
$out"
		got=$(sed -n 's/^answer: //p' <<<"$out" | sed 's/  .*//' | tr ' ' '\n' | sorted_set)
		[[ $got == "${GSLB_ADDRS[i]}" ]] || die "gslbctl explain: ${GSLB_NETS[i]} (${GSLB_WHERE[i]}) gets '$got', want ${GSLB_SITE[i]} (${GSLB_ADDRS[i]})
$out"
	done
	log "bench: gslbctl explain: all ${#GSLB_NETS[@]} client networks get their site"
}

# verify_mix_gslb SERVER PORT: every client network's ECS gets its site's
# two addresses for geo, wrr gets two pool addresses, ECS is echoed.
verify_mix_gslb() {
	local s=$1 p=$2 z=bench.example. i out got a k
	expect_answer "$s" "$p" "h0042.$z" A 198.18.0.52
	for ((i = 0; i < ${#GSLB_NETS[@]}; i++)); do
		out=$(q "$p" "geo.$z" A "+subnet=${GSLB_NETS[i]}")
		got=$(awk '$4 == "A" && $1 == "geo.'"$z"'" { print $5 }' <<<"$out" | sorted_set)
		[[ $got == "${GSLB_ADDRS[i]}" ]] || die "$s: geo.$z A from ${GSLB_NETS[i]} (${GSLB_WHERE[i]}): got '$got', want ${GSLB_SITE[i]} (${GSLB_ADDRS[i]})
$out"
		grep -Eq '^;; flags:[a-z ]* aa[ ;]' <<<"$out" || die "$s: geo.$z A: answer lacks the AA flag
$out"
		grep -q "CLIENT-SUBNET: ${GSLB_NETS[i]}/" <<<"$out" || die "$s: geo.$z A: ECS option not echoed
$out"
		case ${GSLB_WHERE[i]} in
		GB/* | US/*) log "[gslb] $s: ECS ${GSLB_NETS[i]} (${GSLB_WHERE[i]}) -> geo ${got//,/ } (${GSLB_SITE[i]}), $(grep -o 'CLIENT-SUBNET: [^ ]*' <<<"$out")" ;;
		esac
	done
	for ((k = 0; k < 5; k++)); do
		out=$(q "$p" "wrr.$z" A "+subnet=${GSLB_NETS[k % ${#GSLB_NETS[@]}]}")
		got=$(awk '$4 == "A" && $1 == "wrr.'"$z"'" { print $5 }' <<<"$out" | sort -u)
		[[ $(wc -l <<<"$got") -eq 2 ]] || die "$s: wrr.$z A: want 2 distinct addresses, got '${got//$'\n'/ }'
$out"
		for a in $got; do
			[[ " $GSLB_POOL " == *" $a "* ]] || die "$s: wrr.$z A: $a is not in the pool
$out"
		done
	done
}

# --- measurement -------------------------------------------------------------
pct() { # TICKS_DELTA NS_DELTA -> percent of one CPU
	awk -v d="$1" -v ns="$2" -v hz="$CLK_TCK" 'BEGIN { if (ns <= 0) { print "0.0" } else { printf "%.1f", d / hz / (ns / 1e9) * 100 } }'
}

# dnsperf_start OUT PORT QUERYFILE SECONDS QPS [dnsperf args...]
# Starts dnsperf pinned to CLIENT_CPU in the background, output to OUT;
# QPS 0 = as fast as it goes. Sets DP_PID.
dnsperf_start() {
	local out=$1 port=$2 qf=$3 dur=$4 qps=$5
	shift 5
	local -a rate=()
	if ((qps > 0)); then rate=(-Q "$qps"); fi
	taskset -c "$CLIENT_CPU" dnsperf -s 127.0.0.1 -p "$port" -d "$qf" -l "$dur" -c 1 -T 1 \
		-q "$OUTSTANDING" -t "$DNSPERF_TIMEOUT" "${rate[@]}" "$@" >"$out" 2>&1 &
	DP_PID=$!
	DP_OUT=$out
	PIDS+=("$DP_PID")
}

# dnsperf_wait LABEL: waits for DP_PID; dies when it failed.
dnsperf_wait() {
	local label=$1 rc=0
	wait "$DP_PID" || rc=$?
	forget_pid "$DP_PID"
	((rc == 0)) || die "dnsperf failed ($label):
$(grep -v '^\[Timeout\]' "$DP_OUT" | tail -n 20)"
}

# dnsperf_run LABEL SERVER_PID PORT QUERYFILE SECONDS QPS [dnsperf args...]
# Runs dnsperf (dnsperf_start; QPS 0 = as fast as it goes) and samples CPU
# of server and client over the run minus its first and last second. Sets
# M_QPS M_CPU M_CLI M_OTHER M_LOST M_RESP M_RCODES.
dnsperf_run() {
	local label=$1 spid=$2 port=$3 qf=$4 dur=$5 qps=$6
	shift 6
	local c0 c1 d0 d1 b0 b1 t0 t1
	dnsperf_start "$WORK/dnsperf-$label.txt" "$port" "$qf" "$dur" "$qps" "$@"
	sleep 1
	c0=$(cpu_ticks "$spid") || die "server PID $spid vanished during $label"
	d0=$(cpu_ticks "$DP_PID") || d0=""
	b0=$(all_ticks)
	t0=$(now_ns)
	sleep $((dur - 2))
	c1=$(cpu_ticks "$spid") || die "server PID $spid vanished during $label"
	d1=$(cpu_ticks "$DP_PID") || d1=""
	b1=$(all_ticks)
	t1=$(now_ns)
	dnsperf_wait "$label"
	alive "$spid" || die "server exited during $label"
	M_CPU=$(pct $((c1 - c0)) $((t1 - t0)))
	if [[ -n $d0 && -n $d1 ]]; then
		M_CLI=$(pct $((d1 - d0)) $((t1 - t0)))
		# CPU used by every other process on the machine meanwhile: it
		# competes with the pinned pair. High = noisy run.
		# (Tick rounding can make it slightly negative on an idle machine.)
		M_OTHER=$(pct $(((b1 - b0) - (c1 - c0) - (d1 - d0))) $((t1 - t0)) | sed 's/^-.*/0.0/')
		if awk -v o="$M_OTHER" 'BEGIN { exit !(o + 0 > 10) }'; then
			warn "$label: other processes used ${M_OTHER}% of a CPU during the run; results are noisy"
		fi
	else
		M_CLI="n/a" M_OTHER="n/a"
	fi
	local parsed
	parsed=$(dnsperf_parse "$DP_OUT")
	IFS=$'\t' read -r M_QPS M_LOST M_RESP M_RCODES <<<"$parsed"
	[[ -n $M_QPS && -n $M_LOST ]] || die "cannot parse dnsperf output ($label):
$(grep -v '^\[Timeout\]' "$DP_OUT" | tail -n 20)"
	local timeouts
	timeouts=$(grep -c '^\[Timeout\]' "$DP_OUT" || true)
	((timeouts == 0)) || warn "$label: $timeouts queries timed out"
}

# dnsperf_parse FILE...: "qps<TAB>lost%<TAB>avg response size<TAB>rcodes"
# of dnsperf's statistics, summed when there are several files (lost% and
# response size weighted by the queries); all fields are empty when a file
# lacks its statistics.
dnsperf_parse() {
	awk '
	/Queries sent:/ { sent += $3 }
	/Queries completed:/ { done_ += $3; cur_done = $3 }
	/Queries lost:/ { lost += $3 }
	/Average packet size:/ { resp += $NF * cur_done }
	/Queries per second:/ { qps += $4; nqps++ }
	/^ *Response codes:/ {
		sub(/^ *Response codes: */, "")
		n = split($0, parts, /, /)
		for (i = 1; i <= n; i++) {
			split(parts[i], f, " ")
			if (f[1] == "") continue
			if (!(f[1] in rc)) order[++nrc] = f[1]
			rc[f[1]] += f[2]
		}
	}
	END {
		if (nqps != ARGC - 1) { printf "\t\t\t\n"; exit }
		codes = ""
		for (i = 1; i <= nrc; i++) {
			c = order[i]
			codes = codes (i > 1 ? ", " : "") sprintf("%s %d (%.2f%%)", c, rc[c], rc[c] * 100 / (done_ > 0 ? done_ : 1))
		}
		lostpct = (sent > 0) ? lost * 100 / sent : 0
		avgresp = (done_ > 0) ? resp / done_ + 0.5 : 0
		printf "%.0f\t%.2f\t%d\t%s\n", qps, lostpct, avgresp, codes
	}' "$@"
}

# all_ticks: CPU ticks of every process on the machine (utime+stime plus the
# children it has reaped, so that short-lived jobs such as compilers are
# counted through their parents).
all_ticks() {
	# Processes come and go while cat reads: ignore its complaints.
	{ cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk '{ sub(/^.*\) /, ""); t += $12 + $13 + $14 + $15 } END { printf "%d\n", t }'
}

# ratio A B -> "0.93x" (A/B), or n/a.
ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || a == "n/a" || b == "n/a" || b + 0 <= 0) print "n/a"; else printf "%.2fx", a / b }'
}

# bench_server MIX SERVER ZONE_DIR QUERYFILE
bench_server() {
	local mix=$1 s=$2 zdir=$3 qf=$4 dir port zone logf k
	dir="$WORK/run-$mix-$s"
	zdir=$(server_zone_dir "$s" "$zdir")
	compgen -G "$zdir/*.zone" >/dev/null || die "$s: no *.zone files in $zdir"
	zone=$(zone_files "$zdir" | head -n 1)
	zone=$(basename -- "$zone" .zone).
	pick_port
	port=$PICKED_PORT
	log ""
	log "[$mix] $s: starting on 127.0.0.1:$port (CPU $SERVER_CPU, 1 worker)"
	start_server "$s" "$zdir" "$port" "$dir"
	logf="$dir/$s.log"
	wait_ready "$s" "$SERVER_PID" "$port" "$zone" "$logf"
	pin_all "$SERVER_PID" "$s"
	if declare -F "verify_mix_$mix" >/dev/null; then
		"verify_mix_$mix" "$s" "$port"
	fi
	log "[$mix] $s: answers verified (PID $SERVER_PID)"

	if ((WARMUP > 0)); then
		dnsperf_start "$WORK/warmup-$mix-$s.txt" "$port" "$qf" "$WARMUP" 0 "${MIX_DNSPERF_ARGS[@]}"
		dnsperf_wait "$s: warm-up"
		pin_all "$SERVER_PID" "$s"
	fi

	dnsperf_run "$mix-$s-max" "$SERVER_PID" "$port" "$qf" "$DURATION" 0 "${MIX_DNSPERF_ARGS[@]}"
	k="$mix|$s"
	RES[$k|qps]=$M_QPS
	RES[$k|cpu]=$M_CPU
	RES[$k|cli]=$M_CLI
	RES[$k|lost]=$M_LOST
	RES[$k|resp]=$M_RESP
	RES[$k|rcodes]=$M_RCODES
	RES[$k|other]=$M_OTHER
	RES[$k|qpc]=$(awk -v q="$M_QPS" -v c="$M_CPU" 'BEGIN { if (c + 0 <= 0) print "n/a"; else printf "%.0f", q / (c / 100) }')
	RES[$k|bound]=$(awk -v s="$M_CPU" -v c="$M_CLI" 'BEGIN { if (s + 0 >= 95) print "server"; else if (c != "n/a" && c + 0 >= 95) print "client"; else print "-" }')
	log "[$mix] $s: max rate: ${M_QPS} qps, server CPU ${M_CPU}%, client CPU ${M_CLI}% => ${RES[$k|qpc]} qps per busy core (lost ${M_LOST}%, avg response ${M_RESP} B, bound: ${RES[$k|bound]}, other ${M_OTHER}%)"
	log "[$mix] $s:   response codes: $M_RCODES"

	dnsperf_run "$mix-$s-rate" "$SERVER_PID" "$port" "$qf" "$DURATION" "$RATE" "${MIX_DNSPERF_ARGS[@]}"
	RES[$k|rcpu]=$M_CPU
	RES[$k|rqps]=$M_QPS
	RES[$k|rlost]=$M_LOST
	RES[$k|rother]=$M_OTHER
	log "[$mix] $s: fixed ${RATE} qps: server CPU ${M_CPU}% (achieved ${M_QPS} qps, lost ${M_LOST}%, other ${M_OTHER}%)"

	stop_server "$s" "$SERVER_PID"
	RES[$k|status]=ok
}

stop_server() { # NAME PID
	stop_pid "$2"
}

# run_mix NAME ZONE_DIR QUERYFILE SERVERS...
# Benchmarks each server in turn on the zones in ZONE_DIR (files <zone>.zone;
# a subdirectory ZONE_DIR/<server>/ overrides them for that server) with the
# dnsperf query file. If a function verify_mix_NAME exists it is called with
# (SERVER PORT) before measuring and must fail loudly on a wrong answer.
# Extra dnsperf arguments (e.g. -E for ECS, -B for a binary query file) go
# in MIX_DNSPERF_ARGS; MIX_QUERY_COUNT is the query count the summary shows
# for a binary file.
run_mix() {
	local mix=$1 zdir=$2 qf=$3 s
	shift 3
	[[ -d $zdir && -f $qf ]] || die "run_mix $mix: missing $zdir or $qf"
	MIXES+=("$mix")
	RES[$mix|queries]=${MIX_QUERY_COUNT:-$(wc -l <"$qf")}
	RES[$mix|servers]="$*"
	for s in "$@"; do
		if [[ -z $(server_binary "$s") ]]; then
			RES[$mix|$s|status]=skipped
			log ""
			log "[$mix] $s: SKIPPED: binary not found"
			continue
		fi
		bench_server "$mix" "$s" "$zdir" "$qf"
	done
	MIX_DNSPERF_ARGS=()
	MIX_QUERY_COUNT=""
}

# --- report ------------------------------------------------------------------
# rate_reached QPS: true when QPS is within 2% of RATE (or unknown).
rate_reached() {
	[[ -z ${1:-} ]] || awk -v q="$1" -v r="$RATE" 'BEGIN { exit !(q + 0 >= 0.98 * r) }'
}

# noisy_runs: how many measured runs had other processes above 10% of a CPU.
noisy_runs() {
	local key n=0
	for key in "${!RES[@]}"; do
		case $key in
		*'|other' | *'|rother')
			if awk -v o="${RES[$key]}" 'BEGIN { exit !(o != "n/a" && o + 0 > 10) }'; then
				n=$((n + 1))
			fi
			;;
		esac
	done
	printf '%d\n' "$n"
}

versions() {
	local v
	printf 'host:     %s, kernel %s, %s CPUs, %s\n' "$(hostname 2>/dev/null || echo '?')" "$(uname -r)" "$(nproc)" \
		"$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
	v=$({ dnsperf -h 2>&1 || true; } | sed -n 's/^Version //p' | head -n 1)
	printf 'dnsperf:  %s\n' "${v:-?}"
	if command -v gdnsd >/dev/null; then
		v=$({ gdnsd -h 2>&1 || true; } | sed -n 's/^gdnsd version //p' | head -n 1)
		printf 'gdnsd:    %s\n' "${v:-?}"
	fi
	if command -v knotd >/dev/null; then
		v=$({ knotd -V 2>&1 || true; } | head -n 1)
		printf 'knotd:    %s\n' "${v:-?}"
	fi
	if [[ -x $GSLBD ]]; then
		v=$(git -C "$REPO_ROOT" describe --always --dirty 2>/dev/null || echo '?')
		printf 'gslbd:    %s (tree %s)\n' "$GSLBD" "$v"
	fi
}

summary() {
	local mix s k
	printf '=== gslbd side-by-side DNS benchmark (%s) ===\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
	versions
	printf 'settings: server pinned to CPU %s with 1 worker; dnsperf -c 1 -T 1 -q %s pinned to CPU %s;\n' \
		"$SERVER_CPU" "$OUTSTANDING" "$CLIENT_CPU"
	printf '          %s s per run (CPU sampled over the middle %s s), fixed-rate run at %s qps\n' \
		"$DURATION" "$((DURATION - 2))" "$RATE"
	for mix in "${MIXES[@]}"; do
		printf '\nmix "%s" (%s queries%s):\n' "$mix" "${RES[$mix|queries]}" "${RES[$mix|note]:+; ${RES[$mix|note]}}"
		printf '%-7s %9s %7s %7s %10s %6s %5s %7s %6s | %9s %9s %6s\n' \
			server qps srv-cpu cli-cpu qps/core lost% resp bound other "cpu@$RATE" "qps@$RATE" other
		for s in ${RES[$mix|servers]}; do
			k="$mix|$s"
			if [[ ${RES[$k|status]:-} != ok ]]; then
				printf '%-7s %s\n' "$s" "skipped (binary not found)"
				continue
			fi
			printf '%-7s %9s %6s%% %6s%% %10s %6s %5s %7s %5s%% | %8s%% %9s %5s%%\n' "$s" \
				"${RES[$k|qps]}" "${RES[$k|cpu]}" "${RES[$k|cli]}" "${RES[$k|qpc]}" "${RES[$k|lost]}" \
				"${RES[$k|resp]}" "${RES[$k|bound]}" "${RES[$k|other]}" \
				"${RES[$k|rcpu]}" "${RES[$k|rqps]}" "${RES[$k|rother]}"
		done
		for s in ${RES[$mix|servers]}; do
			[[ ${RES[$mix|$s|status]:-} == ok ]] || continue
			printf '  %-6s rcodes: %s\n' "$s" "${RES[$mix|$s|rcodes]}"
		done
		printf 'ratios (mix "%s"):\n' "$mix"
		local g="$mix|gslbd" ref refs=()
		for ref in gdnsd knot; do
			if [[ " ${RES[$mix|servers]} " == *" $ref "* ]]; then refs+=("$ref"); fi
		done
		for ref in "${refs[@]}"; do
			printf '  gslbd/%-5s qps per busy core: %-6s (higher is better)\n' "$ref" \
				"$(ratio "${RES[$g|qpc]:-}" "${RES[$mix|$ref|qpc]:-}")"
		done
		for ref in "${refs[@]}"; do
			local r
			r=$(ratio "${RES[$g|rcpu]:-}" "${RES[$mix|$ref|rcpu]:-}")
			if [[ $r != n/a ]] && { ! rate_reached "${RES[$g|rqps]:-}" || ! rate_reached "${RES[$mix|$ref|rqps]:-}"; }; then
				r="n/a (a server did not reach $RATE qps)"
			fi
			printf '  gslbd/%-5s CPU%% at %s qps: %-6s (lower is better)\n' "$ref" "$RATE" "$r"
		done
		# What this mix costs a server compared with plain static answers.
		if [[ $mix != static && " ${MIXES[*]} " == *" static "* ]]; then
			for s in ${RES[$mix|servers]}; do
				[[ ${RES[$mix|$s|status]:-} == ok && ${RES[static|$s|status]:-} == ok ]] || continue
				local r
				r=$(ratio "${RES[$mix|$s|rcpu]:-}" "${RES[static|$s|rcpu]:-}")
				if [[ $r != n/a ]] && { ! rate_reached "${RES[$mix|$s|rqps]:-}" || ! rate_reached "${RES[static|$s|rqps]:-}"; }; then
					r="n/a"
				fi
				printf '  %-6s %s/static qps per busy core: %-6s CPU%% at %s qps: %s\n' "$s" "$mix" \
					"$(ratio "${RES[$mix|$s|qpc]:-}" "${RES[static|$s|qpc]:-}")" "$RATE" "$r"
			done
		fi
	done
	printf '\nqps/core = qps / (server CPU%%/100). bound: which side was at >=95%% of its CPU\n'
	printf '(client = dnsperf could not push harder, so compare qps/core, not qps). other: CPU used by\n'
	printf 'all other processes during the run, in %% of one CPU; over 10%% the run was noisy: rerun it.\n'
	local noisy
	noisy=$(noisy_runs)
	if ((noisy > 0)); then
		printf '\nWARNING: %s run(s) shared the machine with other work (other > 10%%); the figures\n' "$noisy"
		printf 'above are not reliable. Rerun on a quiet machine.\n'
	fi
}

# --- main --------------------------------------------------------------------
main() {
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM

	check_settings
	ensure_tools
	preflight_servers

	WORK=$(mktemp -d "${TMPDIR:-/tmp}/gslbd-bench.XXXXXX")

	# Mix "static": one zone, the brief's query mix (see gen/main.go). Its
	# zone is also the base of the gslb mix, so it is always generated.
	mkdir -p "$WORK/static/zones"
	(cd "$REPO_ROOT" && go run ./test/bench/gen -zone bench.example. \
		-zonedir "$WORK/static/zones" -queries "$WORK/static/queries.txt" -count 10000 -seed 20240601) ||
		die "generating the data set failed"
	log "bench: data set in $WORK/static ($(wc -l <"$WORK/static/queries.txt") queries)"

	local mix
	local -a gservers
	for mix in "${WANT_MIXES[@]}"; do
		case $mix in
		static)
			run_mix static "$WORK/static/zones" "$WORK/static/queries.txt" "${SERVERS[@]}"
			;;
		gslb)
			# Mix "gslb": ECS queries from ten client networks (one dnsperf
			# each, concurrently) for geo.bench.example (geoip map) and
			# wrr.bench.example (weighted); Knot has no GSLB and sits out.
			mapfile -t gservers < <(gslb_servers)
			if ((${#gservers[@]} == 0)); then
				warn "mix gslb: none of BENCH_SERVERS has GSLB (gslbd, gdnsd); skipped"
				continue
			fi
			prepare_mix_gslb
			if [[ " ${gservers[*]} " == *" gslbd "* && -n $(server_binary gslbd) ]]; then
				check_gslb_offline
			fi
			RES[gslb|note]="80% geo A, 20% wrr A, ECS from ${#GSLB_NETS[@]} networks"
			run_mix gslb "$GSLB_DIR/zones" "$GSLB_DIR/queries.bin" "${gservers[@]}"
			;;
		esac
	done

	log ""
	summary | tee "$BENCH_OUT"
	log ""
	log "bench: summary written to $BENCH_OUT"
}

# Sourcing the file (for testing its functions) does not run the benchmark.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
	main "$@"
fi
