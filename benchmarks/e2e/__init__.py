"""End-to-end comparison of mss with Kamailio on the same machine, with the same load generator.

    python -m benchmarks.e2e [--quick] [--scenarios register-digest,options] [--users 10000] ...
    bash scripts/bench-e2e.sh [same options]      # installs sipp, kamailio and the extras first

One command starts Kamailio (Debian package, ``benchmarks/kamailio/kamailio.cfg``: in-memory
registrar, digest auth from an htable, tm + rr stateful proxy, pike, 2 workers) and ``mss
serve`` on separate loopback ports, provisions the same users in both, drives both with the same
sipp scenarios at stepped rates for bounded durations, stops everything it started (and checks
that nothing is left), and prints per scenario and server:

* the highest *clean* rate: 0 failed calls, < 1 % retransmissions, >= 95 % of responses in
  under 10 ms (sipp's response-time repartition, ``rtd`` on the final response);
* server CPU µs per call: utime + stime of the server's whole process tree (``/proc``) across
  the step, divided by the successful calls;
* peak memory (PSS summed over the process tree), and the mss/Kamailio ratios.

Scenarios (:mod:`benchmarks.e2e.scenarios`): REGISTER with digest; REGISTER from an
IP-authorized source; OPTIONS; calls (sipp UAC -> server -> sipp UAS; mss as B2BUA, Kamailio as
a record-routing stateful proxy); flood (mss fail-to-ban vs Kamailio pike, with
``benchmarks/flood.py``'s generator); memory with 100,000 bindings and with 10,000 concurrent
calls. The mss run of REGISTER with digest is profiled with py-spy afterwards.

Output: a markdown table (stdout and ``benchmarks/results/e2e-<stamp>.md``), the figures as
JSON (``e2e-<stamp>.json``), a PNG of achieved vs offered rate (``e2e-<stamp>.png``) and the
profile's raw stacks; ``benchmarks/results/`` is git-ignored. Loopback only; every sipp run is
bounded in calls and time, every ladder in rungs and seconds, the run by ``--budget``.
Not part of ``.ci/run``.
"""
