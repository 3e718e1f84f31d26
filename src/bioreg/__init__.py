"""bioreg."""
