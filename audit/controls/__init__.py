"""Controls and the policy that judges them: each control a named check over the bundle's evidence (metric,
value, interval, threshold, status, clauses it evidences), one module each, registered in ``registry`` with
those a third party installs (entry-point group ``oss_model_audit.controls``); the policy (``policy``) sets
thresholds and gives the verdict and the exit code.
"""
