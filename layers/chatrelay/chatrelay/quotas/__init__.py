"""Per-user quotas and rate limits, kept in DynamoDB with atomic conditional writes."""

from chatrelay.quotas.guard import Admission, QuotaGuard, estimate_tokens
from chatrelay.quotas.store import LeaseResult, QuotaStore

__all__ = ["Admission", "LeaseResult", "QuotaGuard", "QuotaStore", "estimate_tokens"]
