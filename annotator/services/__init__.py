"""Business rules, one place each: views and consumers call these, never the other way round."""
