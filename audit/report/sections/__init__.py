"""One context builder per section of the report, named after its partial in
``report_templates/partials``: each turns the bundle into the values its partial shows.
"""
