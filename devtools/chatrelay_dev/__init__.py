"""Development tools for chatrelay: never shipped in the Lambda layer.

- ``chatrelay_dev.mockllm``: faithful local fakes of the vendors' wire protocols (OpenAI-compatible,
  Anthropic Messages, Baidu ERNIE, Bedrock ConverseStream) and of WeChat's server API.
- ``chatrelay_dev.local``: DynamoDB Local, the table from ``template.yaml``, and ``make dev``'s stack.
"""
