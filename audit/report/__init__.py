"""Everything rendered from a bundle alone: the HTML/PDF report (``render``; its context from ``view`` and one
context builder per section in ``sections``), the audit folder's file names (``folder``) and every artifact
(``artifacts``), JUnit XML, charts, number formatting and the diff report. Nothing here imports torch or a model.
"""
