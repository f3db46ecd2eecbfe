"""The paper's experiments: profiles, the resumable temperature sweep, the report."""
