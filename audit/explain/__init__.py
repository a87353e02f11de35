"""``audit explain``: attribute a free-form generated answer to its prompt, and render its report.
"""
