"""Everything rendered from a bundle alone: the HTML/PDF report (one context builder per section in
``sections``), JUnit XML, charts, number formatting and the diff report. Nothing here imports torch or a model.
"""
