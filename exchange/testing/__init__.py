"""What tests, soak, fuzz, bench and scripts use to run a real mesh: one harness that starts
it on free loopback ports and stops it (mesh), the soak, the gateway fuzzer and a fault-injecting
TCP proxy (fault_proxy). May import anything in the package; nothing in a role imports it.
"""
