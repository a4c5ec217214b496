"""Development-only tools: the dev CA, the demo, the local cluster, `proofless dev`.

Production code never imports this package (a lint contract checks it); only the CLI's
development commands do, when they run.
"""
