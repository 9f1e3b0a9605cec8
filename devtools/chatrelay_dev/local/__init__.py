"""The local stack: DynamoDB Local, the chat table from ``template.yaml``, and ``make dev``.

Development and test tooling; nothing here runs on Lambda.
"""
