"""Small shared pieces: clock, ids, money, pagination, parsers."""
