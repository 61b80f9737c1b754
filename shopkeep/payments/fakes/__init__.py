"""Local fakes of the providers' HTTP APIs, on 127.0.0.1: they speak each provider's wire
format, sign the way it signs, can be told to pay (and notify, retrying), to fail or hang on
refunds, to drop a notification, and keep the refunds they made by idempotency key."""
