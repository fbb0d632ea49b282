#!/bin/busybox sh
# /init of the `cargo xtask vm-test` initramfs: the sensor's life on this
# kernel. A veth pair, xdp0 here (198.18.0.1, 2001:db8::1) and peer0 in its
# own network namespace (198.18.0.2, 2001:db8::2), so packets really cross the
# veth. Then:
#   check    `tsusen check` says ready (the host checks what it says degrades)
#   native   --xdp-mode native: a SYN, a UDP probe, a ping and
#            an IPv6 SYN from the peer become rows; the host's own UDP query
#            goes out (TC egress) and its reply is not a row; /metrics
#            answers; kill -9, a SYN while no daemon runs, a restart on the
#            pins, a SYN, SIGTERM: every row there once, exit 0, pins gone
#   generic  --xdp-mode auto (generic on a veth), with the per-key drain of kernels < 5.6
#            forced: the same probes and query, SIGTERM
# Every step that passes prints `VM-TEST ok: ...`; the host checks them all.
# Everything goes to the serial console, which the host parses.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t bpf bpf /sys/fs/bpf
mount -t tmpfs tmpfs /out
mount -t tmpfs tmpfs /tmp

finish() {
    echo "VM-TEST $1"
    sync
    poweroff -f
    sleep 10
}

# Print what tsusen logged and wrote, then stop with FAIL.
fail() {
    for log in /tmp/*.log; do
        [ -f "$log" ] && sed "s|^|VM-TEST $(basename "$log" .log): |" "$log"
    done
    for csv in /out/*/*.csv; do
        [ -f "$csv" ] && sed "s|^|VM-TEST $csv: |" "$csv"
    done
    finish "FAIL: $*"
}

ok() {
    echo "VM-TEST ok: $*"
}

# wait_for SECONDS COMMAND...: run COMMAND every 0.2 s until it succeeds.
wait_for() {
    n=$(($1 * 5))
    shift
    while [ "$n" -gt 0 ]; do
        "$@" && return 0
        n=$((n - 1))
        sleep 0.2
    done
    return 1
}

echo "VM-TEST kernel $(uname -r) ($(uname -v))"
for module in /lib/modules/*.ko; do
    insmod "$module" || echo "VM-TEST insmod $module failed"
done

# No duplicate address detection: IPv6 addresses are usable at once.
echo 0 >/proc/sys/net/ipv6/conf/default/accept_dad
# busybox `ip` ignores `peer name`: the peer gets the kernel's name, veth0.
ip link add xdp0 type veth || fail "ip link add veth"
ip link set veth0 name peer0
ip link set lo up
ip addr add 198.18.0.1/24 dev xdp0
ip -6 addr add 2001:db8::1/64 dev xdp0
ip link set xdp0 up

unshare -n sh -c 'sleep 900' &
ns=$!
sleep 1
peer() {
    nsenter -t "$ns" -n "$@"
}
# A new namespace takes IPv6's defaults, not ours: no DAD there either.
peer sh -c 'echo 0 >/proc/sys/net/ipv6/conf/default/accept_dad'
ip link set peer0 netns "$ns" || fail "moving peer0 to a namespace"
peer sh -c '
    ip link set lo up
    ip addr add 198.18.0.2/24 dev peer0
    ip -6 addr add 2001:db8::2/64 dev peer0
    ip link set peer0 up
' || fail "configuring peer0"
wait_for 10 peer ping -c 1 -W 1 198.18.0.1 >/dev/null || fail "the veth does not carry IPv4"
wait_for 10 peer ping6 -c 1 -W 1 2001:db8::1 >/dev/null || fail "the veth does not carry IPv6"

# start NAME ARGS...: `tsusen run ARGS` in the background (pid in $daemon,
# log in /tmp/NAME.log, environment from $daemon_env), until it is ready
# (its `ready` log line).
start() {
    log=/tmp/$1.log
    shift
    env $daemon_env RUST_LOG=info tsusen run --iface xdp0 "$@" >"$log" 2>&1 &
    daemon=$!
    n=300
    until grep -qw ready "$log"; do
        kill -0 "$daemon" 2>/dev/null || fail "tsusen run $* exited before it was ready"
        n=$((n - 1))
        [ "$n" -gt 0 ] || fail "tsusen run $* was not ready after 60 s"
        sleep 0.2
    done
}

# stop SIGNAL: signal the daemon and wait for it; its exit status in $rc.
stop() {
    kill -"$1" "$daemon"
    wait "$daemon"
    rc=$?
}

# probes PORT: from the peer, a TCP SYN to PORT (answered by a RST), an IPv6
# SYN to PORT, a UDP datagram to PORT (answered by port unreachable) and a ping.
probes() {
    peer sh -c "
        nc -w 2 198.18.0.1 $1 </dev/null
        nc -w 2 2001:db8::1 $1 </dev/null
        vm-udp send 198.18.0.2:0 198.18.0.1:$1
        ping -c 1 -W 2 198.18.0.1 >/dev/null
    "
}

# query SOURCE_PORT: this host's own UDP query from SOURCE_PORT to a server on
# the peer, and its reply (in through xdp0, like any inbound packet).
query() {
    peer vm-udp serve 198.18.0.2:5300 6 &
    server=$!
    sleep 1
    vm-udp query "198.18.0.1:$1" 198.18.0.2:5300 || fail "no reply to the host's UDP query"
    wait "$server"
}

# has_row DIR ROW: the day file in DIR holds ROW (`proto port src dst`).
has_row() {
    grep -q "^$2 [0-9]*$" "$1"/*.csv 2>/dev/null
}

# probe_rows DIR PORT: the rows `probes PORT` makes.
probe_rows() {
    has_row "$1" "TCP $2 198.18.0.2 198.18.0.1" &&
        has_row "$1" "TCP $2 2001:db8::2 2001:db8::1" &&
        has_row "$1" "UDP $2 198.18.0.2 198.18.0.1" &&
        has_row "$1" "ICMP - 198.18.0.2 198.18.0.1"
}

# round_rows DIR ROUND PORT QUERY_PORT: the probes' rows are there, the
# query's reply is not, and no tuple is there twice.
round_rows() {
    probe_rows "$1" "$3" ||
        fail "$2: a row of the SYN, UDP probe, ping or IPv6 SYN to $3 is missing"
    ok "$2: a SYN, a UDP probe, a ping and an IPv6 SYN recorded"
    if grep -q "^UDP $4 " "$1"/*.csv; then
        fail "$2: the reply to the host's own UDP query (to port $4) was recorded"
    fi
    ok "$2: the reply to the host's own UDP query not recorded (TC egress)"
}

no_duplicates() {
    dups=$(tail -n +2 "$1"/*.csv | cut -d' ' -f1-4 | sort | uniq -d)
    [ -z "$dups" ] || fail "$2: rows written twice: $dups"
}

show_csv() {
    sed "s/^/VM-TEST csv $2: /" "$1"/*.csv
}

# The kernel against the Requirements table; exit 0 when `run` can start.
mkdir -p /out/check
tsusen check --iface xdp0 --out-dir /out/check --pin-dir /sys/fs/bpf/tsusen >/tmp/check.out 2>&1
rc=$?
sed 's/^/VM-TEST check: /' /tmp/check.out
[ "$rc" = 0 ] || fail "tsusen check exited $rc"
grep -q '^ready' /tmp/check.out || fail "tsusen check did not say ready"
ok "check: ready"

# Native XDP: probes, the host's query, /metrics, kill -9, restart, SIGTERM.
out=/out/native
pins=/sys/fs/bpf/native
start native --xdp-mode native --out-dir $out --pin-dir "$pins" \
    --flush-interval 1s --metrics 127.0.0.1:9339
grep -q 'xdp0 (native)' /tmp/native.log || fail "native: --xdp-mode native did not attach in native mode"
ok "native: attached in native mode"
query 40001
probes 4242
# The reply came before the probes: a flush that writes their rows would
# write its row too.
wait_for 20 probe_rows $out 4242
round_rows $out native 4242 40001
wget -q -O /tmp/metrics http://127.0.0.1:9339/metrics || fail "native: /metrics did not answer"
grep -q '^tsusen_' /tmp/metrics || fail "native: /metrics has no tsusen_ line"
ok "native: /metrics answers"

stop 9
[ -n "$(ls "$pins")" ] || fail "native: nothing pinned in $pins after kill -9"
ok "native: kill -9 leaves the pins"
# Recorded by the pinned program while no daemon runs.
peer nc -w 2 198.18.0.1 4250 </dev/null
# Restarted on the pins, with no periodic flush: what reaches the file
# now is written at start or by the drain at SIGTERM.
start restart --xdp-mode auto --out-dir $out --pin-dir "$pins" \
    --flush-interval 1h --metrics 127.0.0.1:9339
peer nc -w 2 198.18.0.1 4251 </dev/null
peer nc -w 2 2001:db8::1 4251 </dev/null
stop TERM
[ "$rc" = 0 ] || fail "native: exit status $rc after SIGTERM"
ok "native: SIGTERM exits 0"
show_csv $out native
has_row $out "TCP 4250 198.18.0.2 198.18.0.1" ||
    fail "native: the SYN sent while no daemon ran is missing after the restart"
ok "native: restart adopted the pinned program and maps (the SYN sent after kill -9 recorded)"
has_row $out "TCP 4251 198.18.0.2 198.18.0.1" && has_row $out "TCP 4251 2001:db8::2 2001:db8::1" ||
    fail "native: SIGTERM did not drain the SYNs sent after the restart"
ok "native: SIGTERM drained"
no_duplicates $out native
probe_rows $out 4242 || fail "native: rows lost across the restart"
ok "native: nothing lost or written twice across kill -9 and restart"
[ -z "$(ls "$pins" 2>/dev/null)" ] || fail "native: pins left after SIGTERM: $(ls "$pins")"
ok "native: SIGTERM unpinned"
echo "VM-TEST tc egress filters after the stop: $(tc filter show dev xdp0 parent ffff:fff3 | tr '\n' ' ')"

# Generic XDP, which --xdp-mode auto picks on a veth, with the drain's
# per-key path (kernels < 5.6) forced. It attaches without --force: the
# native round left nothing attached.
out=/out/generic
daemon_env=TSUSEN_TEST_DRAIN_PER_KEY=1
start generic --xdp-mode auto --out-dir $out \
    --pin-dir /sys/fs/bpf/generic --flush-interval 1s
grep -q 'xdp0 (generic)' /tmp/generic.log || fail "generic: --xdp-mode auto did not attach in generic mode on a veth"
ok "generic: attached in generic mode"
query 40002
probes 4243
wait_for 20 probe_rows $out 4243
round_rows $out generic 4243 40002
stop TERM
[ "$rc" = 0 ] || fail "generic: exit status $rc after SIGTERM"
show_csv $out generic
grep -q TSUSEN_TEST_DRAIN_PER_KEY /tmp/generic.log || fail "generic: the per-key drain was not forced"
no_duplicates $out generic
ok "generic: drained one key at a time"

finish PASS
