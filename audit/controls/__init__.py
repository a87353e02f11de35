"""Controls and the policy that judges them: each control a named check over the bundle's evidence
(metric, value, interval, threshold, status, clauses it evidences); the policy sets thresholds and gives the
verdict and the exit code.
"""
