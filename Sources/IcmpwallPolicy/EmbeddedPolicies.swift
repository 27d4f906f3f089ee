// The built-in default policy: the text of Policies/edge-default.yaml, byte for byte.
// Embedded as source so a copied binary needs no files beside it. When you edit the YAML file, paste it here
// again (between the delimiters, unindented); the test `embeddedDefaultMatchesFile` fails until you do.

enum EmbeddedPolicies {
    static let edgeDefault = #"""
# icmpwall policy: edge-default
#
# The policy icmpwall applies when none is given (it is built into the binary). It suits a host or router
# facing the Internet: ICMP keeps working for diagnostics and error reporting, the messages that are only
# ever used for attacks or reconnaissance are dropped, and floods are capped.
#
# Reference: docs/policy.md. Rules are tried top to bottom; the first that matches decides.

version: 1
name: edge-default
mode: enforce            # set to monitor to see (in the counters) what this policy would do, dropping nothing
default: pass            # ICMP that no rule below matches is passed
allow-unsafe: false      # refuse any change below that would break path-MTU discovery, NDP or MLD

# Checked before the rules, in this order; no rule can let through what a guard drops.
guards:
  malformed: drop        # truncated ICMP or IP headers, bad IHL: never sent by a working stack
  fragments: drop        # fragmented ICMP: ping-of-death style attacks; real ICMP is never this large
  bogus-errors: drop     # errors about errors or about non-first fragments: forged (RFC 1122 3.2.2)
  broadcast-echo: drop   # echo requests to broadcast or multicast addresses: Smurf amplification
  max-echo-payload: 1472 # the largest echo that fits a 1500-byte IPv4 packet; bigger ones carry tunnels

rules:
  # --- What the network cannot work without: passed first, so no later rule can catch it. -----------------
  - name: pmtud-v4
    # Path-MTU discovery: without it TCP connections over smaller-MTU paths hang ("black holes").
    family: ipv4
    type: destination-unreachable
    code: fragmentation-needed
    action: pass
  - name: pmtud-v6
    # IPv6 routers never fragment: packet-too-big is the only way a sender learns the path MTU.
    type: packet-too-big
    action: pass
  - name: neighbor-discovery
    # Router and neighbor discovery (RFC 4861): IPv6's ARP and DHCP-less configuration.
    # family: ipv6 because router-solicitation/advertisement also name ICMPv4 types 10 and 9.
    family: ipv6
    type: [router-solicitation, router-advertisement, neighbor-solicitation, neighbor-advertisement]
    action: pass
  - name: multicast-listener-discovery
    # MLD (RFC 2710, 3810): IPv6 multicast, and neighbor discovery behind MLD-snooping switches.
    type: [mld-query, mld-report, mld-done, mld2-report]
    action: pass
  - name: icmpv6-errors
    # RFC 4890 4.4.1: ICMPv6 errors must not be dropped (they carry the failures of IPv6 itself).
    family: ipv6
    type: [destination-unreachable, time-exceeded, parameter-problem]
    action: pass

  # --- Messages with no legitimate use on an edge: dropped. ----------------------------------------------
  - name: address-mask
    # RFC 6918: obsolete; answers leak the netmask.
    type: [address-mask-request, address-mask-reply]
    action: drop
  - name: source-quench
    # RFC 6633: deprecated; a forged one slows TCP down.
    type: source-quench
    action: drop
  - name: redirects
    # ICMPv4 type 5 and ICMPv6 type 137: forged redirects divert traffic; edge hosts should not take them.
    type: redirect
    action: drop
  - name: timestamp
    # Timestamp requests leak the clock (CVE-1999-0524) and are not needed by anything current.
    type: [timestamp-request, timestamp-reply]
    action: drop
  - name: deprecated
    # Every other type RFC 6918 deprecates: information request/reply, alternate host address, 30-39.
    class: deprecated
    action: drop

  # --- Useful but floodable: rate-limited. ---------------------------------------------------------------
  - name: echo-request
    # Ping (ICMPv4 8, ICMPv6 128): 20 per second per source with bursts of 50 is plenty for any
    # monitoring; the backstop (by default 100 times that, for the rule as a whole) caps floods from
    # spoofed sources that each stay under the per-source limit.
    type: echo-request
    action: limit
    limit: { rate: 20/s, burst: 50, per: source }
  - name: ipv4-unreachable
    # BlackNurse-style floods of destination-unreachable (fragmentation-needed is passed above).
    family: ipv4
    type: destination-unreachable
    action: limit
    limit: { rate: 500/s, burst: 1000, per: global }
  - name: ipv4-time-exceeded
    # Traceroute answers: a burst per probe round, rarely more.
    family: ipv4
    type: time-exceeded
    action: limit
    limit: { rate: 200/s, burst: 400, per: global }
  - name: ipv4-parameter-problem
    family: ipv4
    type: parameter-problem
    action: limit
    limit: { rate: 50/s, burst: 100, per: global }

# The ICMP errors this host itself sends (tc egress): UDP scans and BlackNurse-style traffic must not turn
# the host into a reflector. The kernel's own limits (icmp_ratelimit, icmp_msgs_per_sec) stay in place;
# see docs/egress.md for how the two combine.
egress:
  errors:
    limit: { rate: 1000/s, burst: 200 }            # the whole host
    per-destination: { rate: 20/s, burst: 20 }     # each /32 or /64: one noisy peer cannot use it all
    exempt: [fragmentation-needed, packet-too-big] # path-MTU discovery is never throttled

"""#
}
