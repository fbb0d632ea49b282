#!/usr/bin/env bash
# Makes scan.pcap (tcpdump, Ethernet), scan-any.pcap (tcpdump -i any, Linux
# cooked SLL2) and scan.pcapng (tshark) of a small, known scan,
# for the replay test. Run as root; the files are committed, so tests don't
# need to run this. Traffic stays inside two namespaces this script creates.
set -euo pipefail
out=$(cd "$(dirname "$0")" && pwd)
s=tscap-s$$ p=tscap-p$$
cleanup() { ip netns del $s 2>/dev/null || true; ip netns del $p 2>/dev/null || true; }
trap cleanup EXIT
ip netns add $s; ip netns add $p
ip link add vs$$ netns $s type veth peer name vp$$ netns $p
ip -n $s addr add 198.18.0.1/24 dev vs$$; ip -n $s -6 addr add 2001:db8:7:1::1/64 dev vs$$ nodad
ip -n $p addr add 198.18.0.2/24 dev vp$$; ip -n $p -6 addr add 2001:db8:7:1::2/64 dev vp$$ nodad
for ns in $s $p; do ip -n $ns link set lo up; done
ip -n $s link set vs$$ up; ip -n $p link set vp$$ up
sleep 1

ip netns exec $s tcpdump -i vs$$ -U -w "$out/scan.pcap" 2>/dev/null & dump=$!
# -i any writes Linux cooked headers (SLL2) instead of Ethernet.
ip netns exec $s tcpdump -i any -U -w "$out/scan-any.pcap" 2>/dev/null & any=$!
ip netns exec $s tshark -q -i vs$$ -w /tmp/scan$$.pcapng 2>/dev/null & shark=$!
sleep 2

# Inbound attempts: a SYN scan of three ports, two pings, a UDP datagram, an IPv6 SYN.
ip netns exec $p nmap -n -Pn -sS --max-retries 0 -p 22,80,443 198.18.0.1 >/dev/null
ip netns exec $p ping -c 2 -i 0.2 198.18.0.1 >/dev/null
ip netns exec $p bash -c 'echo probe > /dev/udp/198.18.0.1/5353'
ip netns exec $p bash -c 'exec 3<>/dev/tcp/2001:db8:7:1::1/8080' 2>/dev/null || true
# The sensor asks the peer a UDP question from port 40001; the peer's answer
# from port 53 is a reply, not an attempt.
ip netns exec $s python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("198.18.0.1", 40001)); s.sendto(b"q", ("198.18.0.2", 53))'
sleep 0.2
ip netns exec $p python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("198.18.0.2", 53)); s.sendto(b"a", ("198.18.0.1", 40001))'
# The sensor connects out (its own SYN is outbound; the peer's RST is not an attempt).
ip netns exec $s bash -c 'exec 3<>/dev/tcp/198.18.0.2/9' 2>/dev/null || true
sleep 2
kill -INT $dump $any $shark; wait $dump $any $shark 2>/dev/null || true
chmod 644 "$out"/scan*
mv /tmp/scan$$.pcapng "$out/scan.pcapng"
echo "wrote $out/scan.pcap, scan-any.pcap and scan.pcapng"
