#!/bin/busybox sh
# /init of the `cargo xtask vm-test` initramfs: load tsusen on this kernel,
# attach it to one end of a veth pair, send a TCP SYN and an ICMP echo request
# from the other end (in its own network namespace) and check the day file.
# Everything it prints goes to the serial console, which the host parses.
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

echo "VM-TEST kernel $(uname -r) ($(uname -v))"
for module in /lib/modules/*.ko; do
    insmod "$module" || echo "VM-TEST insmod $module failed"
done

# busybox `ip` ignores `peer name`: the peer gets the kernel's name, veth0.
ip link add xdp0 type veth || finish "FAIL: ip link add veth"
ip link set veth0 name peer0
ip link set lo up
ip addr add 198.18.0.1/24 dev xdp0
ip link set xdp0 up

# The peer end lives in a new network namespace, so that packets between the
# two addresses cross the veth instead of going over lo.
unshare -n sh -c 'sleep 120' &
ns=$!
sleep 1
ip link set peer0 netns "$ns" || finish "FAIL: moving peer0 to a namespace"
nsenter -t "$ns" -n sh -c '
    ip link set lo up
    ip addr add 198.18.0.2/24 dev peer0
    ip link set peer0 up
' || finish "FAIL: configuring peer0"

# One round: run tsusen with --xdp-mode MODE (expecting it to attach in
# ATTACHED mode), wait for `ready`, send a TCP SYN to
# 198.18.0.1:PORT (nothing listens there: the answer is a RST) and an ICMP
# echo request, both from 198.18.0.2 across the veth, stop tsusen (which
# detaches and unpins) and print its day file and log.
round() {
    mode=$1 port=$2 attached=$3 out=/out/$1
    RUST_LOG=info tsusen run --iface xdp0 --out-dir "$out" --pin-dir /sys/fs/bpf/tsusen \
        --flush-interval 1s --xdp-mode "$mode" >/tmp/tsusen.log 2>&1 &
    tsusen=$!
    ready=
    for _ in $(seq 1 100); do
        if grep -q ' ready$' /tmp/tsusen.log; then ready=1; break; fi
        kill -0 "$tsusen" 2>/dev/null || break
        sleep 0.2
    done
    if [ -z "$ready" ]; then
        sed 's/^/VM-TEST tsusen: /' /tmp/tsusen.log
        finish "FAIL: tsusen --xdp-mode $mode did not become ready"
    fi
    nsenter -t "$ns" -n sh -c "
        nc -w 2 198.18.0.1 $port </dev/null
        ping -c 1 -W 2 198.18.0.1 >/dev/null
    "
    sleep 3
    kill "$tsusen"
    wait "$tsusen"
    sed 's/^/VM-TEST tsusen: /' /tmp/tsusen.log
    cat "$out"/*.csv | sed "s/^/VM-TEST csv: /"
    grep -q "watching xdp0 ($attached)" /tmp/tsusen.log ||
        finish "FAIL: tsusen --xdp-mode $mode did not attach in $attached mode"
    grep -q "^TCP $port 198.18.0.2 198.18.0.1 [0-9]*$" "$out"/*.csv ||
        finish "FAIL: no TCP $port row in the day file (--xdp-mode $mode)"
    grep -q '^ICMP - 198.18.0.2 198.18.0.1 [0-9]*$' "$out"/*.csv ||
        finish "FAIL: no ICMP row in the day file (--xdp-mode $mode)"
    echo "VM-TEST round $mode ok"
}

# auto takes native XDP on veth; then the generic (skb) path.
round auto 4242 native
round generic 4243 generic
finish PASS
