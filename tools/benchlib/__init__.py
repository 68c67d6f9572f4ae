"""benchlib: the modules of tools/bench, rtu's benchmark (tools/bench's
docstring says what it measures and how to read it).

  proc         processes: spawn, reap, /proc readings (CPU time, RSS, threads)
  scenarios    the basic and food messages, their configuration, the checks
  servers      the mock Kafka cluster and the MongoDB test server; produce,
               offsets, waiting for a group's commits
  contenders   rtu's build, a contender and its run, the Node.js peer, --baseline
  throughput   the default mode: everything produced first, runs and medians
  freshness    --rate
  scale        --scale (rebalances)
  report       printed figures, ratios, --plot
"""
