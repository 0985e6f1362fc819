"""Analytics: the figures an owner looks at first, computed set-wise in the database."""
