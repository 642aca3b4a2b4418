"""What every platform shares: requests, budgets, errors, timestamps, redaction."""
