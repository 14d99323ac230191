"""The SIP layer: transactions wired to handlers (registrar, B2BUA...), addressing values."""
