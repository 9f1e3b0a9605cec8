"""chatrelay: streams LLM answers to mini-programs and H5 pages as SSE, and keeps every
chat turn in DynamoDB."""

__version__ = "0.1.0"
